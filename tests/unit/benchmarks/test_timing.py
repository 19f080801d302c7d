"""benchmarks/_timing.py: contenders interleaved in a rotating order, medians, per-round ratios, spread."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest


def _load_timing() -> ModuleType:
    # benchmarks/ is a folder of scripts, not a package: load the helper from its file.
    path = Path(__file__).resolve().parents[3] / "benchmarks" / "_timing.py"
    spec = importlib.util.spec_from_file_location("benchmarks_timing", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


timing = _load_timing()


def test_every_contender_is_sampled_once_per_round_in_a_rotating_order() -> None:
    calls: list[str] = []
    seconds = {"a": iter([9.0, 1.0, 3.0, 2.0]), "b": iter([9.0, 2.0, 6.0, 4.0])}

    def sampler(name: str) -> Callable[[], float]:
        def sample() -> float:
            calls.append(name)
            return next(seconds[name])

        return sample

    samples = timing.interleaved({"a": sampler("a"), "b": sampler("b")}, rounds=3, warmup=1)
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert samples["a"].values == (1.0, 3.0, 2.0)  # the warm-up round is not kept
    assert samples["a"].median == 2.0 and (samples["a"].low, samples["a"].high) == (1.0, 3.0)
    ratio = samples["b"] / samples["a"]  # within each round
    assert ratio.values == (2.0, 2.0, 2.0) and ratio.format(2) == "2.00 (2.00-2.00)"
    assert (samples["a"] + samples["b"]).values == (3.0, 9.0, 6.0)
    assert samples["a"].map(lambda s: 6 / s).format(1, "M/s") == "3.0 M/s (2.0-6.0)"


def test_samples_of_different_rounds_are_not_paired() -> None:
    with pytest.raises(ValueError, match="3 samples against 2: not the same rounds"):
        timing.Samples((1.0, 2.0, 3.0)) / timing.Samples((1.0, 2.0))
    with pytest.raises(ValueError, match="rounds must be at least 1"):
        timing.interleaved({"a": lambda: 1.0}, rounds=0)


def test_timer_runs_the_reset_untimed_before_each_step() -> None:
    events: list[str] = []
    sample = timing.timer(lambda: events.append("step"), reset=lambda: events.append("reset"))
    assert sample() >= 0 and sample() >= 0
    assert events == ["reset", "step", "reset", "step"]
