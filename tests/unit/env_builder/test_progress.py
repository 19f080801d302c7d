from __future__ import annotations

import io
import re
from pathlib import Path

from env_builder.progress import ByteProgress, TerminalProgress, byte_counter
from env_builder.rehydrate import ensure
from env_builder.store import EnvStore
from tests.unit.env_builder.helpers import RecordingProgress, host_build_output


class FakeTerminal(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_terminal_progress_draws_a_bar_per_step_on_a_terminal_and_ends_it_with_a_newline() -> None:
    terminal = FakeTerminal(tty=True)
    progress = TerminalProgress("mlp-env", terminal)
    assert isinstance(progress, ByteProgress)
    add = byte_counter(progress, "downloading", 200_000_000)
    add(50_000_000)
    assert "downloading [#######---------------------]  25% 50.0/200.0 MB" in terminal.getvalue()
    progress("a message clears the bar first")
    assert "\r\x1b[2K[mlp-env " in terminal.getvalue()
    add(150_000_000)  # done: always drawn, then a newline
    assert re.search(r"downloading \[#{28}\] 100% 200\.0/200\.0 MB( [0-9.]+ MB/s)?\n$", terminal.getvalue())
    packing = byte_counter(progress, "packing", None)
    packing(3_000_000)
    assert "packing 3.0 MB" not in terminal.getvalue()  # within 0.1 s of the last draw: skipped


def test_terminal_progress_prints_only_lines_elsewhere_and_nothing_when_quiet() -> None:
    log = FakeTerminal(tty=False)
    progress = TerminalProgress("mlp-env", log)
    byte_counter(progress, "downloading", 10)(10)
    progress("verified")
    assert log.getvalue().count("\n") == 1 and "verified" in log.getvalue() and "[#" not in log.getvalue()
    silent = FakeTerminal(tty=True)
    quiet = TerminalProgress("mlp-env", silent, quiet=True)
    byte_counter(quiet, "downloading", 10)(10)
    quiet("verified")
    assert silent.getvalue() == ""


def test_plain_callables_get_messages_and_no_byte_counts() -> None:
    messages: list[str] = []
    add = byte_counter(messages.append, "downloading", 10)
    add(10)
    assert messages == []


def test_storing_and_rehydrating_report_every_byte_of_each_step(tmp_path: Path) -> None:
    store = EnvStore.open(str(tmp_path / "store"))
    env_id = "f" * 64
    archive, manifest = host_build_output(tmp_path, env_id, "a")
    progress = RecordingProgress()
    store.put_env(env_id, str(archive), manifest, "lock\n", progress=progress)
    size = manifest["archive"]["size"]  # type: ignore[index]
    assert progress.steps == {"uploading": (size, size)}
    progress = RecordingProgress()
    ensure(env_id, store=store.url, cache_dir=tmp_path / "cache", progress=progress)
    unpacked = manifest["archive"]["unpacked_size"]  # type: ignore[index]
    assert progress.steps == {"extracting": (unpacked, unpacked)}  # a local store needs no download
    assert any("ready at" in message for message in progress.messages)


def test_a_count_past_the_total_shows_a_full_bar_not_more() -> None:
    terminal = FakeTerminal(tty=True)
    progress = TerminalProgress("mlp-env", terminal)
    progress.advance("downloading", 300_000_000, 200_000_000)
    assert "[############################] 100% 200.0/200.0 MB" in terminal.getvalue()
