"""The same cache-hit lookup as a stock ``@bentoml.api`` endpoint: the baseline ``benchmarks/serving.py`` compares with.

``bentoml serve airflow_provider_mlp.serving.stock:StockLookupService`` (``MLP_SERVING_LOOKUP_NAMESPACE``,
``MLP_MEMCACHED_SERVERS``). It goes through BentoML's whole request path (its middlewares, input
validation and serialisation), as a service written the documented way would.
"""

from __future__ import annotations

import os
from typing import Any

import bentoml


@bentoml.service(name="mlp-stock-lookup", workers=int(os.environ.get("MLP_SERVING_WORKERS", "1")))
class StockLookupService:
    def __init__(self) -> None:
        from airflow_provider_mlp.precompute import CacheReader

        self.reader = CacheReader(
            os.environ["MLP_SERVING_LOOKUP_NAMESPACE"], os.environ.get("MLP_MEMCACHED_SERVERS") or None
        )

    @bentoml.api
    def lookup(self, keys: list[Any], weights: dict[str, float] | None = None) -> dict[str, Any]:
        rows = self.reader.get_many([tuple(k) if isinstance(k, list) else k for k in keys])
        results = []
        for key in keys:
            row = rows.get(tuple(key) if isinstance(key, list) else key)
            if row is not None:
                score = sum(w * row[c] for c, w in (weights or {}).items())
                results.append({"key": key, "values": row, "score": score})
        results.sort(key=lambda r: r["score"], reverse=True)
        return {
            "results": results,
            "missing": [k for k in keys if (tuple(k) if isinstance(k, list) else k) not in rows],
        }
