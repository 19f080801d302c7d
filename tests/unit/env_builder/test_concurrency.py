from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from env_builder.concurrency import ReadAhead, file_lock


def test_read_ahead_yields_every_item_in_order_including_exception_objects() -> None:
    items = [b"a", ValueError("an item, not a failure"), b"c"]
    with ReadAhead(iter(items), 1, "test-read-ahead") as chunks:
        assert list(chunks) == items
        assert list(chunks) == []  # exhausted stays exhausted


def test_read_ahead_raises_the_producers_exception_in_the_consumer() -> None:
    def broken() -> Iterator[int]:
        yield 1
        raise OSError("disk gone")

    with ReadAhead(broken(), 4, "test-read-ahead") as chunks:
        assert next(chunks) == 1
        with pytest.raises(OSError, match="disk gone"):
            next(chunks)


def test_closing_mid_stream_stops_a_producer_blocked_on_a_full_buffer() -> None:
    produced = []

    def endless() -> Iterator[int]:
        n = 0
        while True:
            produced.append(n)
            yield n
            n += 1

    chunks = ReadAhead(endless(), 2, "test-read-ahead")
    assert next(chunks) == 0
    time.sleep(0.2)  # the producer fills the buffer and waits
    closer = threading.Thread(target=chunks.close, daemon=True)
    closer.start()
    closer.join(5)
    assert not closer.is_alive()
    assert len(produced) <= 5


def test_file_lock_serializes_processes_and_is_released_when_the_holder_dies(tmp_path: Path) -> None:
    lock = tmp_path / "locks" / "env.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from env_builder.concurrency import file_lock\n"
            "with file_lock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)",
            str(lock),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        acquired = threading.Event()

        def take() -> None:
            with file_lock(lock):
                acquired.set()

        waiter = threading.Thread(target=take, daemon=True)
        waiter.start()
        assert not acquired.wait(0.5)  # held by the other process
        holder.kill()  # a killed holder leaves no lock behind
        assert acquired.wait(5)
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def test_closing_early_closes_the_producing_generator_on_its_thread() -> None:
    closed = threading.Event()

    def holds_a_resource() -> Iterator[int]:
        try:
            yield from range(1000)
        finally:
            closed.set()  # where a generator reading a file closes it

    with ReadAhead(holds_a_resource(), 2, "test-read-ahead") as chunks:
        assert next(chunks) == 0
    assert closed.is_set()
