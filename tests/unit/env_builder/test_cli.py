"""``mlp-env`` on bad input: a clear error naming the thing, never a traceback (no builds here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from env_builder.cli import main
from env_builder.store import EnvStore
from tests.unit.env_builder.helpers import Publish


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["list", "--storage-options", "[1]"], "expected a JSON object, got list"),
        (["list", "--storage-options", "{nope"], "not JSON"),
        (["gc", "--retention-days", "nan"], "'nan': expected a number of days from 0 to 36500"),
        (["gc", "--retention-days", "-3"], "'-3': expected a number of days from 0 to 36500"),
        (["gc", "--retention-days", "1e10"], "'1e10': expected a number of days from 0 to 36500"),
        (["gc", "--retention-days", "soon"], "'soon' is not a number of days"),
    ],
)
def test_bad_options_are_refused_by_the_parser(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_a_bad_alias_is_refused_before_anything_is_built(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # No resolution or build happens: the package does not even exist.
    argv = ["build", "mlp-no-such-package-zz", "--alias", "bad!name", "--store", str(tmp_path / "s"), "--quiet"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "mlp-env: error:" in err and "bad!name" in err and "mlp-no-such-package-zz" not in err


def test_list_skips_an_unreadable_manifest_and_says_so(
    tmp_path: Path, publish: Publish, capsys: pytest.CaptureFixture[str]
) -> None:
    store = EnvStore.open(str(tmp_path / "store"))
    good, broken = publish(store), publish(store)
    (tmp_path / "store" / "envs" / f"{broken}.manifest.json").write_text(json.dumps({"archive": "oops"}))
    assert main(["list", "--store", store.url, "--json"]) == 0
    captured = capsys.readouterr()
    assert [e["env_id"] for e in json.loads(captured.out)["environments"]] == [good]
    assert f"skipping {broken}: manifest" in captured.err


def test_fetch_into_an_unusable_cache_directory_is_named(
    tmp_path: Path, publish: Publish, capsys: pytest.CaptureFixture[str]
) -> None:
    store = EnvStore.open(str(tmp_path / "store"))
    env_id = publish(store)
    assert main(["fetch", env_id, "--store", store.url, "--cache-dir", "/dev/null", "--quiet"]) == 1
    assert "environment cache directory /dev/null is not usable" in capsys.readouterr().err


def test_list_has_a_header_and_prints_small_sizes_in_kb(
    tmp_path: Path, publish: Publish, capsys: pytest.CaptureFixture[str]
) -> None:
    store = EnvStore.open(str(tmp_path / "store"))
    env_id = publish(store)
    store.set_alias("ranking/six:v1", env_id)
    size = store.manifest(env_id)["archive"]["size"]
    assert size < 100_000  # a hand-made tree: a few hundred bytes
    assert main(["list", "--store", store.url]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["ENV", "ID", "SIZE", "CREATED", "ALIASES"]
    assert row.split()[:3] == [env_id[:16], f"{size / 1e3:.1f}", "kB"] and row.endswith("ranking/default/six:v1")
    assert main(["show", env_id, "--store", store.url]) == 0
    assert f"archive    {size / 1e3:.1f} kB (sha256" in capsys.readouterr().out


def test_the_ids_list_prints_are_accepted_by_show_alias_and_fetch(
    tmp_path: Path, publish: Publish, capsys: pytest.CaptureFixture[str]
) -> None:
    store = EnvStore.open(str(tmp_path / "store"))
    env_id = publish(store)
    common = ["--store", store.url, "--json", "--quiet"]
    assert main(["list", *common]) == 0
    short = json.loads(capsys.readouterr().out)["environments"][0]["env_id"][:16]
    assert main(["show", short, *common]) == 0
    assert json.loads(capsys.readouterr().out)["env_id"] == env_id
    assert main(["alias", env_id[:6], "ranking/six:v1", *common]) == 0
    assert json.loads(capsys.readouterr().out)["env_id"] == env_id
    assert main(["fetch", short, "--cache-dir", str(tmp_path / "cache"), *common]) == 0
    assert json.loads(capsys.readouterr().out)["env_id"] == env_id


def test_unknown_and_ambiguous_id_prefixes_are_named_as_ids(
    tmp_path: Path, publish: Publish, capsys: pytest.CaptureFixture[str]
) -> None:
    store = EnvStore.open(str(tmp_path / "store"))
    first, second = publish(store, env_id="abcdef1" + "1" * 57), publish(store, env_id="abcdef2" + "2" * 57)
    assert main(["show", "e637cebd16d67d58", "--store", store.url]) == 1
    assert "mlp-env: error: no environment with id prefix e637cebd16d67d58 in store" in capsys.readouterr().err
    assert main(["show", "abcdef", "--store", store.url, "--json"]) == 1
    error = json.loads(capsys.readouterr().out)
    assert error["type"] == "AmbiguousEnvError" and f"{first}, {second}" in error["error"]


def test_run_exits_with_the_commands_status_and_125_126_127_for_its_own_failures(
    tmp_path: Path, publish: Publish, capfd: pytest.CaptureFixture[str]
) -> None:
    store = EnvStore.open(str(tmp_path / "store"))
    env_id = publish(store)
    common = ["--store", store.url, "--cache-dir", str(tmp_path / "cache"), "--quiet"]
    assert main(["run", env_id[:8], *common, "--", "greet"]) == 0  # the env's bin/ comes first on PATH
    assert capfd.readouterr().out == "hi\n"
    assert main(["run", env_id[:8], *common, "--", "sh", "-c", 'echo "$VIRTUAL_ENV"; exit 7']) == 7
    assert capfd.readouterr().out == f"{tmp_path / 'cache' / 'envs' / env_id}\n"
    assert main(["run", "e637cebd16d67d58", *common, "--", "true"]) == 125
    assert "no environment with id prefix e637cebd16d67d58" in capfd.readouterr().err
    assert main(["run", env_id, *common, "--", "mlp-no-such-command"]) == 127
    assert "mlp-no-such-command: command not found" in capfd.readouterr().err
    not_executable = tmp_path / "script.sh"
    not_executable.write_text("echo hi\n")
    assert main(["run", env_id, *common, "--", str(not_executable)]) == 126
    assert "cannot execute" in capfd.readouterr().err
    # Ended by a signal: 128 + its number, as a shell reports it.
    assert main(["run", env_id, *common, "--", "sh", "-c", "kill -TERM $$"]) == 128 + 15


@pytest.mark.parametrize("argv", [["run", "abcdef"], ["run", "abcdef", "--"]])
def test_run_without_a_command_after_the_separator_is_refused(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "run needs a command after '--': mlp-env run [options] ENV -- CMD [ARGS...]" in capsys.readouterr().err
