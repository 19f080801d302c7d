"""Small models for the serving tests, saved to a BentoML store by the tests (pickled by value)."""

from __future__ import annotations

import os
import time
from typing import Any


class LinearScorer:
    """score = sum of weight * feature over the features it knows; a non-numeric feature is a ValueError."""

    def __init__(self, weights: dict[str, float]) -> None:
        self.weights = weights

    def predict(self, features: dict[str, Any]) -> dict[str, float]:
        score = 0.0
        for name, weight in self.weights.items():
            value = features.get(name, 0)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"feature {name!r} must be a number, got {type(value).__name__}")
            score += weight * value
        if score != score or score in (float("inf"), float("-inf")):
            raise ValueError("features give a score that is not a finite number")
        return {"score": score}


class RecordingModel:
    """Appends ``features['n']`` and the pid to a file for each computation (exactly-once checks), after a delay."""

    def __init__(self, path: str, delay: float) -> None:
        self.path = path
        self.delay = delay

    def predict(self, features: dict[str, Any]) -> dict[str, Any]:
        time.sleep(self.delay)
        with open(self.path, "a") as handle:
            handle.write(f"{features.get('n')} {os.getpid()}\n")
        return {"n": features.get("n"), "double": 2 * int(features.get("n", 0))}
