"""The outer ASGI dispatcher: this service's endpoints answered in front of BentoML's app.

Why in front: every request through BentoML's app pays its middleware stack (a 60 s timeout
timer per request that is never cancelled, OpenTelemetry spans, metrics labelled by raw path);
measured on a 2-core machine a cache-hit lookup through ``@bentoml.api`` does ~1.3k req/s (p99
205 ms), through this dispatcher ~20k req/s (p99 4 ms). BentoML still runs the process (workers,
model store, lifecycle, ``bentoml serve``/``bentoml containerize``); only its known static routes
(docs, BentoML's OpenAPI) are passed through, and any other path is a 404 answered here, so no
client-chosen path ever becomes a metrics label.

Endpoints: ``POST /v1/predict``, ``POST /v1/lookup``, ``POST /v1/jobs``, ``GET /v1/jobs/{id}``,
``GET /v1/jobs/{id}/result``, ``GET /healthz`` ``/livez`` ``/readyz``, ``GET /metrics``,
``GET /openapi.json``. Runtime side: no Airflow.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from airflow_provider_mlp.precompute.errors import CacheError, CacheInputError
from airflow_provider_mlp.serving.runtime import Runtime, ServingConfig, answer_key, to_jsonable

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20
PASS_THROUGH = frozenset({"/docs", "/docs.json", "/schema.json", "/"})
PASS_THROUGH_PREFIXES = ("/static_content/",)
HEALTH = frozenset({"/healthz", "/livez"})
_JSON = [(b"content-type", b"application/json")]

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


class HttpError(Exception):
    def __init__(self, status: int, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), default=str).encode()


_CLOSE = (b"connection", b"close")


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None, close: bool = False
) -> None:
    out = [*(headers or _JSON), (b"content-length", str(len(body)).encode())]
    if close:
        out.append(_CLOSE)
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HttpError(400, "client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise HttpError(413, f"request body larger than {MAX_BODY} bytes")
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


@functools.cache
def _lookup_keys() -> Any:
    from pydantic import TypeAdapter

    from airflow_provider_mlp.serving.schemas import Key

    return TypeAdapter(list[Key])


def _key_of(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


class Dispatcher:
    """ASGI app: our routes here, BentoML's static routes passed to ``inner``."""

    def __init__(self, inner: Any, runtime_factory: Callable[[], Runtime] | None = None) -> None:
        self.inner = inner
        self.runtime_factory = runtime_factory or (lambda: Runtime(ServingConfig.from_env()))
        self.runtime: Runtime | None = None
        self._openapi: bytes | None = None
        self._served: dict[Any, int] = {}

    # -- lifespan ---------------------------------------------------------------------------------

    async def _lifespan(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        failed: list[str] = []

        async def wrapped_receive() -> dict[str, Any]:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.runtime = await asyncio.to_thread(self.runtime_factory)
                except Exception as exc:
                    log.exception("serving runtime failed to start")
                    failed.append(f"{type(exc).__name__}: {exc}")
                    await send({"type": "lifespan.startup.failed", "message": failed[0]})
                    raise
            elif message["type"] == "lifespan.shutdown" and self.runtime is not None:
                # Flush the request log and stop job workers before BentoML's own shutdown.
                await asyncio.to_thread(self.runtime.close)
            return message

        try:
            await self.inner(scope, wrapped_receive, send)
        except Exception:
            if not failed:
                raise

    # -- HTTP -------------------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if kind != "http":
            await self.inner(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        started = time.perf_counter()
        endpoint = "other"
        status = 500
        try:
            if path in HEALTH:
                endpoint = "health"
                status = 200
                await _respond(send, 200, b'{"status":"ok"}')
                return
            self._authorize(scope)
            if path in PASS_THROUGH or path.startswith(PASS_THROUGH_PREFIXES):
                status = 200
                await self.inner(scope, receive, send)
                return
            endpoint, handler = self._route(method, path)
            status, body, headers = await handler(scope, receive)
            await _respond(send, status, body, headers, self._last_on_connection(scope))
        except HttpError as exc:
            status = exc.status
            payload: dict[str, Any] = {"error": exc.message}
            if exc.detail is not None:
                payload["detail"] = exc.detail
            headers = [*_JSON, (b"www-authenticate", b"Bearer")] if status == 401 else _JSON
            await _respond(send, status, _dumps(payload), headers, self._last_on_connection(scope))
        except Exception as exc:
            log.exception("%s %s failed", method, path)
            status = 500
            await _respond(send, 500, _dumps({"error": f"internal error: {type(exc).__name__}: {exc}"}))
        finally:
            if self.runtime is not None:
                self.runtime.metrics.observe(endpoint, status, time.perf_counter() - started)

    def _last_on_connection(self, scope: dict[str, Any]) -> bool:
        """Whether to close this keep-alive connection after the answer (``MLP_SERVING_MAX_REQUESTS_PER_CONNECTION``).

        The workers of a process share one listening socket and whichever wakes first accepts, so
        one worker can end up holding every connection of a client while another idles (seen: all
        32 of a load generator's); new replicas behind a Service get nothing from existing
        connections either. Closing a connection now and then makes clients reconnect, and the
        reconnects land on whichever worker or replica is free.
        """
        limit = self.runtime.config.max_requests_per_connection if self.runtime is not None else 0
        client = scope.get("client")
        if not limit or client is None:
            return False
        key = tuple(client)
        count = self._served.get(key, 0) + 1
        if count >= limit:
            self._served.pop(key, None)
            return True
        if len(self._served) >= 4096:  # connections the client closed first are never seen again
            self._served.clear()
        self._served[key] = count
        return False

    def _authorize(self, scope: dict[str, Any]) -> None:
        token = self.runtime.config.token if self.runtime is not None else ""
        if not token:
            return
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, given = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
                    return
                break
        raise HttpError(401, "missing or wrong bearer token (Authorization: Bearer <token>)")

    def _route(self, method: str, path: str) -> tuple[str, Callable[..., Awaitable[tuple[int, bytes, Any]]]]:
        routes: dict[str, tuple[str, str, Any]] = {
            "/v1/predict": ("POST", "predict", self.predict),
            "/v1/lookup": ("POST", "lookup", self.lookup),
            "/v1/jobs": ("POST", "jobs.submit", self.submit_job),
            "/readyz": ("GET", "health", self.ready),
            "/metrics": ("GET", "metrics", self.metrics),
            "/openapi.json": ("GET", "other", self.openapi),
        }
        route = routes.get(path)
        if route is None and path.startswith("/v1/jobs/"):
            rest = path[len("/v1/jobs/") :]
            if rest.endswith("/result"):
                route = ("GET", "jobs.result", self.job_result)
            else:
                route = ("GET", "jobs.status", self.job_status)
        if route is None:
            raise HttpError(404, "no such endpoint (see /openapi.json)")
        if method != route[0]:
            raise HttpError(405, f"{path} answers {route[0]} only")
        return route[1], route[2]

    def _rt(self) -> Runtime:
        if self.runtime is None:
            raise HttpError(503, "the service is starting: model not loaded yet")
        return self.runtime

    def _model(self, rt: Runtime) -> Any:
        if rt.model is None:
            raise HttpError(404, "this service answers lookups only: it serves no model (MLP_SERVING_MODEL is not set)")
        return rt.model

    async def _parse(self, scope: dict[str, Any], receive: Receive, model: Any) -> Any:
        for name, value in scope["headers"]:
            if name == b"content-type" and not value.lower().startswith(b"application/json"):
                raise HttpError(415, f"content-type must be application/json, got {value.decode('latin-1')!r}")
        body = await _read_body(receive)
        try:
            return model.model_validate_json(body)
        except Exception as exc:  # imports only on the error path: the hot path pays no import statements
            from pydantic import ValidationError

            from airflow_provider_mlp.serving.schemas import field_errors

            if not isinstance(exc, ValidationError):
                raise
            errors = field_errors(exc)
            if any(e["message"].startswith("Invalid JSON") for e in errors):
                raise HttpError(400, f"body is not valid JSON: {errors[0]['message']}") from None
            first = errors[0]
            raise HttpError(422, f"field {first['field']!r}: {first['message']}", errors) from None

    async def _model_answer(self, rt: Runtime, features: dict[str, Any]) -> Any:
        try:
            return to_jsonable(await asyncio.to_thread(self._model(rt).predict, features))
        except (ValueError, TypeError, KeyError) as exc:
            raise HttpError(422, f"field 'features': the model rejected them: {type(exc).__name__}: {exc}") from None

    # -- endpoints --------------------------------------------------------------------------------

    async def predict(self, scope: dict[str, Any], receive: Receive) -> tuple[int, bytes, Any]:
        from airflow_provider_mlp.serving.schemas import PredictRequest

        rt = self._rt()
        self._model(rt)
        started = time.perf_counter()
        req = await self._parse(scope, receive, PredictRequest)
        if req.key is None and req.features is None:
            raise HttpError(422, "field 'key': give a key, features, or both")
        reason = "no_key"
        if req.key is not None:
            if rt.cache_usable():
                try:
                    row = await rt.predict_reader.aget(_key_of(req.key))
                except CacheInputError as exc:
                    raise HttpError(422, f"field 'key': {exc}") from None
                except CacheError as exc:
                    rt.cache_failed()
                    rt.metrics.cache_lookup("predict", "error")
                    reason = "cache_unavailable"
                    log.warning("predict: cache unavailable, answering through the model: %s", exc)
                else:
                    if row is not None:
                        rt.metrics.cache_lookup("predict", "hit")
                        prediction = next(iter(row.values())) if len(row) == 1 else row
                        return self._prediction(rt, req, prediction, "cache", started)
                    rt.metrics.cache_lookup("predict", "miss")
                    reason = "miss"
            else:
                rt.metrics.cache_lookup("predict", "error")
                reason = "cache_unavailable"
        if req.features is None:
            if reason == "cache_unavailable":
                raise HttpError(503, "precompute cache unavailable and no 'features' given to compute from")
            raise HttpError(422, f"field 'features': required, key {req.key!r} is not in the precomputed cache")
        rt.metrics.fallbacks.labels(reason).inc()
        return self._prediction(rt, req, await self._model_answer(rt, req.features), "model", started)

    def _prediction(
        self, rt: Runtime, req: Any, prediction: Any, source: str, started: float
    ) -> tuple[int, bytes, Any]:
        body = {"prediction": prediction, "source": source, "model": rt.tag}
        rt.log_request(
            "predict",
            source,
            req.request_id,
            {"key": req.key, "features": req.features},
            prediction,
            time.perf_counter() - started,
        )
        return 200, _dumps(body), [*_JSON, (b"x-mlp-source", source.encode())]

    async def lookup(self, scope: dict[str, Any], receive: Receive) -> tuple[int, bytes, Any]:
        from pydantic import ValidationError

        from airflow_provider_mlp.serving.schemas import MAX_LOOKUP_KEYS, LookupRequest

        rt = self._rt()
        req = await self._parse(scope, receive, LookupRequest)
        aggregation = rt.lookup_aggregation if req.weights is None else None
        if req.keys is None:
            if aggregation is None:
                raise HttpError(422, "field 'keys': required (this service has no lookup aggregation to derive them)")
            try:
                req.keys = list(aggregation.keys(req.params or {}))
            except (ValueError, TypeError, KeyError) as exc:
                raise HttpError(422, f"field 'params': {exc}") from None
            if len(req.keys) > MAX_LOOKUP_KEYS:
                raise HttpError(
                    422, f"field 'params': they select {len(req.keys)} cache keys; at most {MAX_LOOKUP_KEYS} are read"
                )
            try:  # what an aggregation derives must be keys a client could have sent
                req.keys = _lookup_keys().validate_python(req.keys)
            except ValidationError as exc:
                raise HttpError(422, f"field 'params': they give keys that are not cache keys: {exc}") from None
        if not rt.cache_usable():
            rt.metrics.cache_lookup("lookup", "error")
            raise HttpError(
                503,
                f"precompute cache unavailable (memcached {', '.join(rt.options.server_names)}); "
                "lookups need it, retry shortly",
            )
        keys = [_key_of(k) for k in req.keys]
        version: dict[str, Any] = {}
        try:
            if aggregation is not None:
                rows, version = await rt.lookup_reader.aget_many_with_version(keys)
            else:
                rows = await rt.lookup_reader.aget_many(keys)
        except CacheInputError as exc:
            raise HttpError(422, f"field 'keys': {exc}") from None
        except CacheError as exc:
            rt.cache_failed()
            rt.metrics.cache_lookup("lookup", "error")
            raise HttpError(503, f"precompute cache unavailable: {exc}") from None
        rt.metrics.cache_lookup("lookup", "hit" if rows else "miss")
        missing = [k for k in req.keys if _key_of(k) not in rows]
        if aggregation is not None:
            from airflow_provider_mlp.serving.aggregations import CachedDataError

            try:
                result = to_jsonable(aggregation.aggregate(rows, req.params or {}))
            except CachedDataError as exc:
                raise HttpError(503, f"precompute cache holds rows the lookup cannot read: {exc}") from None
            except (ValueError, TypeError, KeyError) as exc:
                raise HttpError(422, f"field 'params': the lookup aggregation rejected them: {exc}") from None
            body = {"result": result, "missing": missing, "model": rt.tag, "version": _version_of(version)}
            return 200, _dumps(body), None
        finalize = rt.model.finalize() if rt.model is not None else None
        if finalize is not None and req.weights is None:
            try:
                result = to_jsonable(
                    finalize({k: rows[_key_of(k)] for k in req.keys if _key_of(k) in rows}, req.params or {})
                )
            except (ValueError, TypeError, KeyError) as exc:
                raise HttpError(422, f"field 'params': the model's finalize rejected them: {exc}") from None
            return 200, _dumps({"result": result, "missing": missing, "model": rt.tag}), None
        results = []
        for key in req.keys:
            row = rows.get(_key_of(key))
            if row is None:
                continue
            item: dict[str, Any] = {"key": key, "values": row}
            if req.weights:
                item["score"] = _score(row, req.weights)
            results.append(item)
        if req.weights:
            results.sort(key=lambda r: r["score"], reverse=True)
        if req.top:
            results = results[: req.top]
        return 200, _dumps({"results": results, "missing": missing, "model": rt.tag}), None

    async def submit_job(self, scope: dict[str, Any], receive: Receive) -> tuple[int, bytes, Any]:
        from airflow_provider_mlp.serving.queue import QueueError
        from airflow_provider_mlp.serving.schemas import JobRequest

        rt = self._rt()
        model = self._model(rt)
        req = await self._parse(scope, receive, JobRequest)
        cached = rt.cached_result(answer_key(model.tag, req.features))
        if cached is None:
            await self._validate(rt, req.features)
        elif req.request_id is None:
            # A hit is answered at once and leaves no job behind; with a request id the client may
            # poll that id later, so the id gets its (done) job.
            rt.metrics.jobs.labels("cached").inc()
            body = {"status": "done", "result": cached, "source": "cache"}
            return 200, _dumps(body), [*_JSON, (b"x-mlp-source", b"cache")]
        try:
            job, created = await asyncio.to_thread(
                rt.queue.submit, {"features": req.features}, model=model.tag, job_id=req.request_id, result=cached
            )
        except QueueError as exc:
            raise HttpError(503, f"job queue unavailable: {exc}") from None
        if created:
            rt.metrics.jobs.labels("cached" if cached is not None else "accepted").inc()
        body = job.to_dict()
        if job.state == "done":
            return 200, _dumps(body), None
        location = f"/v1/jobs/{job.id}".encode()
        return 202, _dumps(body), [*_JSON, (b"location", location)]

    async def _validate(self, rt: Runtime, features: dict[str, Any]) -> None:
        from airflow_provider_mlp.errors import MlpError
        from airflow_provider_mlp.serving.models import UnknownFeaturesError

        try:
            await asyncio.to_thread(self._model(rt).validate, features)
        except UnknownFeaturesError as exc:  # e.g. an id the model has no data for
            raise HttpError(404, f"field 'features': {exc}") from None
        except MlpError as exc:  # the model's own data failed it (a dropped table, an expired snapshot)
            raise HttpError(503, f"the model could not check the features: {exc}") from None
        except (ValueError, TypeError) as exc:
            raise HttpError(422, f"field 'features': the model rejected them: {exc}") from None

    def _job_id(self, scope: dict[str, Any]) -> str:
        import re

        from airflow_provider_mlp.serving.schemas import JOB_ID_PATTERN

        rest = scope["path"][len("/v1/jobs/") :]
        job_id = rest[: -len("/result")] if rest.endswith("/result") else rest
        if not re.match(JOB_ID_PATTERN, job_id):
            raise HttpError(422, "field 'job_id': must be 1-64 letters, digits, '_' or '-'")
        return job_id

    async def _job(self, scope: dict[str, Any]) -> Any:
        from airflow_provider_mlp.serving.queue import QueueError

        rt = self._rt()
        job_id = self._job_id(scope)
        try:
            job = await asyncio.to_thread(rt.queue.get, job_id)
        except QueueError as exc:
            raise HttpError(503, f"job queue unavailable: {exc}") from None
        if job is None:
            raise HttpError(404, f"no job {job_id!r}")
        return job

    async def job_status(self, scope: dict[str, Any], receive: Receive) -> tuple[int, bytes, Any]:
        return 200, _dumps((await self._job(scope)).to_dict()), None

    async def job_result(self, scope: dict[str, Any], receive: Receive) -> tuple[int, bytes, Any]:
        rt = self._rt()
        job_id = self._job_id(scope)
        cached = rt.cached_result(rt.job_key(job_id))
        if cached is not None:
            return 200, _dumps({"id": job_id, "status": "done", "result": cached}), None
        job = await self._job(scope)
        if job.state == "done":
            return 200, _dumps(job.to_dict()), None
        if job.state == "failed":
            raise HttpError(409, f"job {job_id} failed: {job.error}")
        return 202, _dumps(job.to_dict()), None

    async def ready(self, scope: dict[str, Any], receive: Receive) -> tuple[int, bytes, Any]:
        if self.runtime is None:
            return 503, _dumps({"ready": False, "reason": "model not loaded yet"}), None
        ok, checks = await asyncio.to_thread(self.runtime.ready)
        return (200 if ok else 503), _dumps({"ready": ok, **checks}), None

    async def metrics(self, scope: dict[str, Any], receive: Receive) -> tuple[int, bytes, Any]:
        from airflow_provider_mlp.serving.metrics import render

        rt = self._rt()
        lines = [
            "# HELP mlp_serving_queue_depth Async jobs waiting or running (shared queue).",
            "# TYPE mlp_serving_queue_depth gauge",
        ]
        try:
            depth = await asyncio.to_thread(rt.queue.depth)
            lines += [f'mlp_serving_queue_depth{{state="{state}"}} {count}' for state, count in sorted(depth.items())]
        except Exception as exc:
            log.warning("metrics: queue depth unavailable: %s", exc)
        body, content_type = await asyncio.to_thread(render, lines)
        return 200, body, [(b"content-type", content_type.encode())]

    async def openapi(self, scope: dict[str, Any], receive: Receive) -> tuple[int, bytes, Any]:
        if self._openapi is None:
            from airflow_provider_mlp.serving.schemas import openapi

            rt = self._rt()
            name = rt.model.name if rt.model is not None else rt.config.lookup_namespace
            self._openapi = _dumps(openapi(f"MLP model service ({name})", rt.tag))
        return 200, self._openapi, None


def _version_of(meta: dict[str, Any]) -> dict[str, Any]:
    """The served version as an answer names it (its lineage: which run published which snapshot)."""
    source = meta.get("source") or {}
    return {
        "tag": meta.get("tag"),
        "seq": meta.get("seq"),
        "published_at": meta.get("published_at"),
        "run_id": meta.get("run_id"),
        "snapshot_id": source.get("snapshot_id") if isinstance(source, dict) else None,
    }


def _score(row: dict[str, Any], weights: dict[str, float]) -> float:
    score = 0.0
    for column, weight in weights.items():
        if column not in row:
            raise HttpError(422, f"field 'weights.{column}': no aggregate column {column!r} (columns: {sorted(row)})")
        value = row[column]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise HttpError(422, f"field 'weights.{column}': aggregate column {column!r} is not numeric")
        score += weight * value
    if not math.isfinite(score):
        raise HttpError(422, "field 'weights': the weights give a score that is not a finite number")
    return score
