"""What a serving process holds: the model, the cache readers, the job queue and its workers, the request log.

Configured from environment variables (read once, at start-up):

==================================  ===============================================================
``MLP_SERVING_MODEL``               model to serve: ``name`` (= ``name:latest``) or ``name:version``;
                                    may be empty when a lookup aggregation is set (a lookup-only service)
``MLP_SERVING_LOOKUP_AGGREGATION``  ``module:NAME`` of a lookup aggregation computing lookup answers
                                    from request params (see :mod:`~airflow_provider_mlp.serving.aggregations`)
``MLP_SERVING_PREDICT_NAMESPACE``   precompute namespace answering predict (default: the model name)
``MLP_SERVING_LOOKUP_NAMESPACE``    precompute namespace of lookup aggregates (default: predict's)
``MLP_MEMCACHED_SERVERS``           memcached servers (``host:port,...``)
``MLP_SERVING_TOKEN``               bearer token required on every endpoint but health (empty: none)
``MLP_SERVING_QUEUE``               ``sqlite:///path`` (default ``$MLP_HOME/serving/<model>-jobs.db``) or
                                    ``postgresql://...`` for several replicas
``MLP_SERVING_QUEUE_LEASE``         seconds a claimed job stays owned without renewal (default 30)
``MLP_SERVING_JOB_WORKERS``         job worker threads per process (default 1; 0: accept only)
``MLP_SERVING_RESULT_TTL``          seconds job results stay in memcached (default 86400)
``MLP_SERVING_REQUEST_LOG``         Iceberg table for sampled request logs (empty: off)
``MLP_SERVING_REQUEST_LOG_SAMPLE``  fraction of predictions logged (default 1.0)
``MLP_SERVING_CACHE_RETRY``         seconds the cache is skipped after it failed (default 1.0)
``MLP_SERVING_MAX_REQUESTS_PER_``   requests answered on one keep-alive connection before it is closed,
``CONNECTION``                      spreading clients over workers and replicas (default 100; 0: no limit)
==================================  ===============================================================

Runtime side: no Airflow.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from airflow_provider_mlp.errors import ConfigurationError

log = logging.getLogger(__name__)

RESULT_PREFIX = "mlp-serving"


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from None


DEFAULT_MAX_REQUESTS_PER_CONNECTION = 1000


@dataclass(frozen=True)
class ServingConfig:
    model: str
    predict_namespace: str
    lookup_namespace: str
    memcached_servers: str | None
    token: str
    queue_url: str
    lease_seconds: float
    job_workers: int
    result_ttl: int
    request_log_table: str
    request_log_sample: float
    cache_retry_seconds: float
    # Each reconnect costs its request a handshake; at 100 that was 1% of requests, exactly the
    # p99 (24.7 ms against 4.3 ms with no cap, benchmarks/serving.py). At 1,000 a connection still
    # moves to another worker or replica every second or so under load, and p99 does not see it.
    max_requests_per_connection: int = DEFAULT_MAX_REQUESTS_PER_CONNECTION
    lookup_aggregation: str = ""

    @classmethod
    def from_env(cls) -> ServingConfig:
        model = os.environ.get("MLP_SERVING_MODEL", "").strip()
        aggregation = os.environ.get("MLP_SERVING_LOOKUP_AGGREGATION", "").strip()
        lookup = os.environ.get("MLP_SERVING_LOOKUP_NAMESPACE", "").strip()
        if not model and not aggregation:
            raise ConfigurationError(
                "MLP_SERVING_MODEL is not set: name the model to serve (name or name:version, as saved by "
                "PublishModelOperator), or set MLP_SERVING_LOOKUP_AGGREGATION for a lookup-only service"
            )
        if not model and not lookup:
            raise ConfigurationError(
                "MLP_SERVING_LOOKUP_NAMESPACE is not set: a lookup-only service (no MLP_SERVING_MODEL) must name "
                "the precompute namespace it answers from"
            )
        name = model.split(":", 1)[0] if model else lookup
        predict = os.environ.get("MLP_SERVING_PREDICT_NAMESPACE", "").strip() or name
        queue_url = os.environ.get("MLP_SERVING_QUEUE", "").strip()
        if not queue_url:
            from airflow_provider_mlp.config import settings

            queue_url = f"sqlite:///{os.path.join(settings().home, 'serving', f'{name}-jobs.db')}"
        return cls(
            model=model,
            predict_namespace=predict,
            lookup_namespace=lookup or predict,
            memcached_servers=os.environ.get("MLP_MEMCACHED_SERVERS", "").strip() or None,
            token=os.environ.get("MLP_SERVING_TOKEN", "").strip(),
            queue_url=queue_url,
            lease_seconds=_env_float("MLP_SERVING_QUEUE_LEASE", 30.0),
            job_workers=int(_env_float("MLP_SERVING_JOB_WORKERS", 1)),
            result_ttl=int(_env_float("MLP_SERVING_RESULT_TTL", 86400)),
            request_log_table=os.environ.get("MLP_SERVING_REQUEST_LOG", "").strip(),
            request_log_sample=_env_float("MLP_SERVING_REQUEST_LOG_SAMPLE", 1.0),
            cache_retry_seconds=_env_float("MLP_SERVING_CACHE_RETRY", 1.0),
            max_requests_per_connection=int(
                _env_float("MLP_SERVING_MAX_REQUESTS_PER_CONNECTION", DEFAULT_MAX_REQUESTS_PER_CONNECTION)
            ),
            lookup_aggregation=aggregation,
        )


def answer_key(model_tag: str, features: Any) -> str:
    """The memcached key of a cached async answer: the same features for the same model give the same key."""
    body = json.dumps(features, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(f"{model_tag}\0{body}".encode()).hexdigest()[:40]
    return f"{RESULT_PREFIX}:answer:{digest}"


class Runtime:
    """One per serving worker process; built at start-up, closed at graceful shutdown."""

    def __init__(self, config: ServingConfig) -> None:
        from airflow_provider_mlp.precompute import CacheReader, MemcachedOptions
        from airflow_provider_mlp.serving.metrics import ServingMetrics
        from airflow_provider_mlp.serving.models import load_model
        from airflow_provider_mlp.serving.queue import queue_from_url

        self.config = config
        self.metrics = ServingMetrics()
        # A lookup-only service (no model) answers lookups through its aggregation and nothing else.
        self.model = load_model(config.model) if config.model else None
        self.lookup_aggregation: Any = None
        if config.lookup_aggregation:
            from airflow_provider_mlp.serving.aggregations import load_lookup_aggregation

            self.lookup_aggregation = load_lookup_aggregation(config.lookup_aggregation)
        # Short timeouts: a cache that stops answering must not hold requests long (predict falls back).
        options = MemcachedOptions.resolve(config.memcached_servers, connect_timeout=0.5, timeout=1.0)
        self.options = options
        self.predict_reader = CacheReader(config.predict_namespace, options=options)
        self.lookup_reader = (
            self.predict_reader
            if config.lookup_namespace == config.predict_namespace
            else CacheReader(config.lookup_namespace, options=options)
        )
        self._results: Any = None
        self._cache_down_until = 0.0
        self.queue = queue_from_url(config.queue_url)
        self.queue.setup()
        self.request_log: Any = None
        if config.request_log_table:
            from airflow_provider_mlp.serving.requestlog import RequestLog

            self.request_log = RequestLog(
                config.request_log_table, sample_rate=config.request_log_sample, metrics=self.metrics
            ).start()
        self._stop = threading.Event()
        self._workers = [
            threading.Thread(target=self._work, name=f"mlp-job-worker-{i}", daemon=True)
            for i in range(config.job_workers if self.model is not None else 0)
        ]
        for worker in self._workers:
            worker.start()
        log.info("serving %s (env %s), queue %s", self.tag, self.model.env_id if self.model else "-", self.queue.url)

    @property
    def tag(self) -> str:
        """What answers name as their source: the model's tag, or the lookup aggregation of a lookup-only service."""
        return self.model.tag if self.model is not None else f"lookup:{self.config.lookup_aggregation}"

    # -- cache state ------------------------------------------------------------------------------

    def cache_usable(self) -> bool:
        return time.monotonic() >= self._cache_down_until

    def cache_failed(self) -> None:
        self._cache_down_until = time.monotonic() + self.config.cache_retry_seconds

    @property
    def results(self) -> Any:
        """A pooled memcached client for job results (raw bytes)."""
        if self._results is None:
            self._results = self.options.hash_client(pooled=True)
        return self._results

    def cached_result(self, key: str) -> Any:
        if not self.cache_usable():
            return None
        try:
            raw = self.results.get(key)
        except Exception:
            self.cache_failed()
            return None
        return None if raw is None else json.loads(raw)

    def cache_result(self, key: str, value: Any) -> None:
        try:
            self.results.set(
                key, json.dumps(value, separators=(",", ":"), default=str).encode(), expire=self.config.result_ttl
            )
        except Exception as exc:  # the queue row holds the result too: memcached is only the fast copy
            log.warning("could not cache result %s: %s", key, exc)

    # -- async jobs -------------------------------------------------------------------------------

    def job_key(self, job_id: str) -> str:
        return f"{RESULT_PREFIX}:job:{self.model.name if self.model else self.config.lookup_namespace}:{job_id}"

    def _work(self) -> None:
        from airflow_provider_mlp.serving.queue import QueueError

        idle = 0.02
        while not self._stop.is_set():
            try:
                job = self.queue.claim(lease_seconds=self.config.lease_seconds)
            except QueueError as exc:
                log.warning("job worker: %s", exc)
                self._stop.wait(1.0)
                continue
            if job is None:
                self._stop.wait(idle)
                idle = min(idle * 2, 0.25)
                continue
            idle = 0.02
            self._run_job(job)

    def _run_job(self, job: Any) -> None:
        model = self.model
        if model is None:  # no workers are started without a model
            return
        renewing = threading.Event()

        def renew() -> None:
            while not renewing.wait(self.config.lease_seconds / 3):
                try:
                    self.queue.renew(job, lease_seconds=self.config.lease_seconds)
                except Exception as exc:
                    log.warning("job %s: lease renewal failed: %s", job.id, exc)

        renewer = threading.Thread(target=renew, daemon=True)
        renewer.start()
        started = time.perf_counter()
        try:
            try:
                result = to_jsonable(model.predict(job.payload["features"]))
            except (ValueError, TypeError, KeyError) as exc:
                self.queue.fail(job, f"features: the model rejected them: {type(exc).__name__}: {exc}")
                self.metrics.jobs.labels("failed").inc()
                return
            except Exception as exc:
                self.queue.fail(job, f"{type(exc).__name__}: {exc}")
                self.metrics.jobs.labels("retried").inc()
                return
            self.cache_result(self.job_key(job.id), result)
            self.cache_result(answer_key(model.tag, job.payload["features"]), result)
            if self.queue.complete(job, result):
                self.metrics.jobs.labels("completed").inc()
                self.log_request(
                    "jobs", "model", job.id, job.payload["features"], result, time.perf_counter() - started
                )
            else:
                self.metrics.jobs.labels("lost_claim").inc()
        finally:
            renewing.set()

    # -- request log ------------------------------------------------------------------------------

    def log_request(
        self, endpoint: str, source: str, request_id: str | None, given: Any, output: Any, seconds: float
    ) -> None:
        if self.request_log is not None and self.model is not None:
            self.request_log.record(
                model_tag=self.model.tag,
                model_name=self.model.name,
                env_id=self.model.env_id,
                endpoint=endpoint,
                source=source,
                request_id=request_id,
                input=given,
                output=output,
                latency_ms=seconds * 1000.0,
            )

    # -- lifecycle --------------------------------------------------------------------------------

    def ready(self) -> tuple[bool, dict[str, Any]]:
        checks: dict[str, Any] = {"model": self.model.tag if self.model is not None else None}
        if self.lookup_aggregation is not None:
            checks["lookup_aggregation"] = self.config.lookup_aggregation
        try:
            checks["queue"] = self.queue.depth()
            ok = True
        except Exception as exc:
            checks["queue"] = f"unavailable: {exc}"
            ok = False
        checks["cache"] = "ok" if self.cache_usable() else "unavailable (predict answers through the model)"
        return ok, checks

    def close(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=30)
        if self.request_log is not None:
            self.request_log.close()
        self.predict_reader.close()
        if self.lookup_reader is not self.predict_reader:
            self.lookup_reader.close()
        if self._results is not None:
            self._results.close()
        self.queue.close()


def to_jsonable(value: Any) -> Any:
    """Model outputs as JSON values (numpy scalars and arrays included)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    return value
