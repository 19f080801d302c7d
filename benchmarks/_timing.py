"""Sampling shared by the benchmarks: every contender several times, interleaved; medians with their spread.

The machine is shared, and its load changes from one second to the next. One sample of each
contender per round, taken in turn, puts every contender under the same conditions; the order is
rotated each round (A B, B A, A B, ...) so that none always runs right after another (after its
writes, say). A ratio of two contenders is taken within each round, then its median: a slow
phase slows both sides of a round and leaves their ratio alone.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Samples:
    """One contender's measurements (seconds, a rate or a ratio), in the order of the rounds."""

    values: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError("no samples")

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    def map(self, func: Callable[[float], float]) -> Samples:
        """Each sample converted, e.g. seconds to a rate: ``times.map(lambda s: n / s)``."""
        return Samples(tuple(func(value) for value in self.values))

    def per_round(self, other: Samples, func: Callable[[float, float], float]) -> Samples:
        """``func`` of this and ``other``'s samples of the same round (they must share the rounds)."""
        if len(self.values) != len(other.values):
            raise ValueError(f"{len(self.values)} samples against {len(other.values)}: not the same rounds")
        return Samples(tuple(func(a, b) for a, b in zip(self.values, other.values, strict=True)))

    def __truediv__(self, other: Samples) -> Samples:
        """The ratio within each round."""
        return self.per_round(other, lambda a, b: a / b)

    def __add__(self, other: Samples) -> Samples:
        return self.per_round(other, lambda a, b: a + b)

    def format(self, digits: int = 3, unit: str = "") -> str:
        """``0.152 s (0.140-0.171)``: the median, then the lowest and highest sample."""
        suffix = f" {unit}" if unit else ""
        return f"{self.median:.{digits}f}{suffix} ({self.low:.{digits}f}-{self.high:.{digits}f})"


def timer(step: Callable[[], object], reset: Callable[[], object] | None = None) -> Callable[[], float]:
    """A sampler: the wall seconds of one ``step()``, with ``reset()`` run untimed before it."""

    def sample() -> float:
        if reset is not None:
            reset()
        started = time.perf_counter()
        step()
        return time.perf_counter() - started

    return sample


def interleaved(samplers: Mapping[str, Callable[[], float]], rounds: int, warmup: int = 0) -> dict[str, Samples]:
    """``rounds`` samples of every sampler, one each per round in a rotating order; ``warmup`` rounds
    first, not kept (first calls load libraries, start thread pools, fill caches)."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, not {rounds}")
    names = list(samplers)
    kept: dict[str, list[float]] = {name: [] for name in names}
    for number in range(warmup + rounds):
        shift = number % len(names)
        for name in names[shift:] + names[:shift]:
            value = samplers[name]()
            if number >= warmup:
                kept[name].append(value)
    return {name: Samples(tuple(values)) for name, values in kept.items()}


def header(rounds: int, warmup: int = 0) -> str:
    """What the numbers below a section are, printed once above it."""
    skipped = f" after {warmup} warm-up round{'s' if warmup != 1 else ''}" if warmup else ""
    return f"{rounds} rounds, contenders interleaved{skipped}; median (min-max)"
