"""Concurrency helpers shared by the builder and the pod side (standard library only)."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")

_DONE = object()


@contextmanager
def file_lock(path: Path, *, blocking: bool = True) -> Iterator[bool]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing): serializes processes on one node.

    Yields whether the lock is held: always True when ``blocking``; without it, False when another
    process holds the lock. The kernel drops the lock when its holder dies, so a killed builder or
    rehydration never leaves one behind.
    """
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class ReadAhead(Generic[T]):
    """Iterates ``items`` on a thread of its own, up to ``depth`` items ahead of the consumer.

    Reading files and zstd release the GIL, so producing overlaps consuming (the pipelining two
    processes joined by a pipe get). The thread starts at once; an exception in it is raised in the
    consumer; ``close()`` (or leaving the ``with`` block) stops and joins it, even mid-stream.
    """

    def __init__(self, items: Iterable[T], depth: int, name: str) -> None:
        self._items = items
        self._buffered: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._finished = False
        self._thread = threading.Thread(target=self._produce, name=name, daemon=True)
        self._thread.start()

    def _put(self, item: object) -> None:
        # A blocking put on a full queue would hang close(): poll the stop flag instead.
        while not self._stop.is_set():
            try:
                self._buffered.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _produce(self) -> None:
        try:
            for item in self._items:
                self._put(item)
                if self._stop.is_set():
                    return
            self._put(_DONE)
        except BaseException as exc:  # handed to the consumer, which raises it
            self._put(_Failure(exc))
        finally:
            # A generator stopped early still holds what it opened (a file being packed) until
            # it is closed; close it here, on the thread that ran it.
            close = getattr(self._items, "close", None)
            if close is not None:
                close()

    def __iter__(self) -> ReadAhead[T]:
        return self

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        item = self._buffered.get()
        if item is _DONE:
            self._finished = True
            raise StopIteration
        if isinstance(item, _Failure):
            self._finished = True
            raise item.exception
        return item  # type: ignore[return-value]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> ReadAhead[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _Failure:
    """The producer's exception, wrapped so that an item which is itself an exception passes through."""

    def __init__(self, exception: BaseException) -> None:
        self.exception = exception
