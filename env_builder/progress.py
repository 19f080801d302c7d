"""Progress of long steps (standard library only: the pod side reports through it too).

Every step reports to a ``progress`` callable with one-line messages. A reporter that can also
draw bars (``mlp-env`` on a terminal) implements :class:`ByteProgress`, and the byte-heavy steps
(packing, uploading, downloading, extracting) feed it their counts; a plain callable gets the
messages only.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO, Protocol, runtime_checkable

Progress = Callable[[str], None]


@runtime_checkable
class ByteProgress(Protocol):
    """A progress reporter that also follows byte counts of one step at a time."""

    def __call__(self, message: str) -> None: ...

    def advance(self, step: str, done: int, total: int | None) -> None:
        """``done`` of ``total`` bytes (None: not known in advance) of ``step``; ``done == total`` ends it."""


def quiet(_message: str) -> None:
    return None


def byte_counter(progress: Progress | None, step: str, total: int | None) -> Callable[[int], None]:
    """A callable adding byte counts to ``step``'s progress (nothing for reporters without bars)."""
    if not isinstance(progress, ByteProgress):
        return _ignore
    bar = progress
    done = 0

    def add(count: int) -> None:
        nonlocal done
        done += count
        bar.advance(step, done, total)

    return add


def _ignore(_count: int) -> None:
    return None


class TerminalProgress:
    """Timestamped message lines on ``stream`` and, where it is a terminal, one redrawn bar per step."""

    _REDRAW_S = 0.1
    _WIDTH = 28

    def __init__(self, prog: str, stream: IO[str] | None = None, *, quiet: bool = False) -> None:
        self.prog = prog
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.bars = not quiet and self.stream.isatty()
        self.started = time.monotonic()
        self._bar_shown = False
        self._last_draw = 0.0
        self._step_started: dict[str, float] = {}

    def __call__(self, message: str) -> None:
        if self.quiet:
            return
        self._clear_bar()
        print(f"[{self.prog} {time.monotonic() - self.started:6.1f}s] {message}", file=self.stream, flush=True)

    def advance(self, step: str, done: int, total: int | None) -> None:
        if not self.bars:
            return
        now = time.monotonic()
        started = self._step_started.setdefault(step, now)
        finished = total is not None and done >= total
        if not finished and now - self._last_draw < self._REDRAW_S:
            return
        self._last_draw = now
        elapsed = now - started
        # The first count arrives with the step's start: a rate needs some time behind it.
        rate = f" {done / elapsed / 1e6:.1f} MB/s" if elapsed >= 0.2 else ""
        if total:
            shown = min(done, total)
            filled = self._WIDTH * shown // total
            bar = "#" * filled + "-" * (self._WIDTH - filled)
            line = f"{step} [{bar}] {100 * shown // total:3d}% {shown / 1e6:.1f}/{total / 1e6:.1f} MB{rate}"
        else:
            line = f"{step} {done / 1e6:.1f} MB{rate}"
        self.stream.write(f"\r\x1b[2K{line}")
        self._bar_shown = True
        if finished:
            self.stream.write("\n")
            self._bar_shown = False
            del self._step_started[step]
        self.stream.flush()

    def _clear_bar(self) -> None:
        # A message ends every step still drawn (a step without a known total never finishes
        # by itself); a later step of the same name starts its own rate anew.
        self._step_started.clear()
        if self._bar_shown:
            self.stream.write("\r\x1b[2K")
            self._bar_shown = False
