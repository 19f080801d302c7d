"""Prometheus metrics of the serving process, with low-cardinality labels only.

Labels are the endpoint *name* (``predict``, ``lookup``, ``jobs.submit``, ...), never a path, key
or id, so the series count is fixed whatever clients send. Under ``bentoml serve`` each worker
writes its values to ``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` aggregates every worker (and
BentoML's own metrics). The cache hit ratio and queue depth are computed when scraped.
"""

from __future__ import annotations

import os
from typing import Any

ENDPOINTS = ("predict", "lookup", "jobs.submit", "jobs.status", "jobs.result", "health", "metrics", "other")
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServingMetrics:
    """The collectors; created once per process."""

    def __init__(self, registry: Any = None) -> None:
        from prometheus_client import REGISTRY, Counter, Histogram

        registry = REGISTRY if registry is None else registry
        self.registry = registry
        self.requests = Counter(
            "mlp_serving_requests",
            "Requests answered, by endpoint and status code.",
            ["endpoint", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "mlp_serving_request_duration_seconds",
            "Time to answer a request, by endpoint.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.cache = Counter(
            "mlp_serving_cache_lookups",
            "Precompute cache lookups by endpoint and result (hit, miss, error).",
            ["endpoint", "result"],
            registry=registry,
        )
        self.fallbacks = Counter(
            "mlp_serving_fallbacks",
            "Predictions answered by the model instead of the cache, by reason.",
            ["reason"],
            registry=registry,
        )
        self.jobs = Counter(
            "mlp_serving_jobs",
            "Async jobs by outcome (accepted, cached, completed, failed, retried, lost_claim).",
            ["outcome"],
            registry=registry,
        )
        self.request_log = Counter(
            "mlp_serving_request_log_rows",
            "Sampled request log rows by outcome (written, dropped, failed).",
            ["outcome"],
            registry=registry,
        )
        # Bound children: the hot path does no label lookups.
        self._latency = {e: self.latency.labels(e) for e in ENDPOINTS}
        self._requests: dict[tuple[str, int], Any] = {}
        self._cache = {(e, r): self.cache.labels(e, r) for e in ("predict", "lookup") for r in ("hit", "miss", "error")}

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        child = self._requests.get((endpoint, status))
        if child is None:
            child = self._requests[(endpoint, status)] = self.requests.labels(endpoint, str(status))
        child.inc()
        self._latency[endpoint].observe(seconds)

    def cache_lookup(self, endpoint: str, result: str) -> None:
        """One cache lookup of ``endpoint`` (predict, lookup) with its result (hit, miss, error)."""
        self._cache[(endpoint, result)].inc()


def render(extra_lines: list[str]) -> tuple[bytes, str]:
    """The exposition text of every worker (multiprocess mode) or of this process, plus ``extra_lines``."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    text = generate_latest(registry)
    families = {m.name: m for m in registry.collect()}
    hits = misses = 0.0
    family = families.get("mlp_serving_cache_lookups")
    if family is not None:
        for sample in family.samples:
            if sample.name.endswith("_total"):
                if sample.labels.get("result") == "hit":
                    hits += sample.value
                else:
                    misses += sample.value
    lines = [
        "# HELP mlp_serving_cache_hit_ratio Cache hits over cache lookups since start (all workers).",
        "# TYPE mlp_serving_cache_hit_ratio gauge",
        f"mlp_serving_cache_hit_ratio {hits / (hits + misses) if hits + misses else 0.0}",
        *extra_lines,
    ]
    return text + ("\n".join(lines) + "\n").encode(), CONTENT_TYPE_LATEST
