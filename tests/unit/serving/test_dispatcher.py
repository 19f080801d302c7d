"""The dispatcher's keep-alive cap: every Nth answer on one connection says ``connection: close``."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from airflow_provider_mlp.serving.dispatcher import Dispatcher


def _dispatcher(limit: int) -> Dispatcher:
    dispatcher = Dispatcher(inner=None)
    dispatcher.runtime = SimpleNamespace(  # type: ignore[assignment]
        config=SimpleNamespace(token="", max_requests_per_connection=limit),
        metrics=SimpleNamespace(observe=lambda *args: None),
        model=SimpleNamespace(name="m", tag="m:1"),
    )
    return dispatcher


def _answers(dispatcher: Dispatcher, client: tuple[str, int], count: int) -> list[bool]:
    """For each request on ``client``'s connection: whether the answer closed it."""
    closed: list[bool] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            closed.append((b"connection", b"close") in message["headers"])

    scope = {"type": "http", "path": "/v1/nothing", "method": "GET", "headers": [], "client": client}

    async def run() -> None:
        for _ in range(count):
            await dispatcher(scope, receive, send)

    asyncio.run(run())
    return closed


def test_every_nth_answer_on_a_connection_closes_it() -> None:
    dispatcher = _dispatcher(3)
    assert _answers(dispatcher, ("127.0.0.1", 5000), 7) == [False, False, True, False, False, True, False]
    # Another connection is counted on its own.
    assert _answers(dispatcher, ("127.0.0.1", 5001), 2) == [False, False]


def test_no_cap_when_disabled() -> None:
    assert not any(_answers(_dispatcher(0), ("127.0.0.1", 5000), 5))


# -- lookups through a lookup aggregation ---------------------------------------------------------


class FakeReader:
    """The cache reader a lookup uses: rows by key, and the version served."""

    def __init__(self, rows: dict[Any, dict[str, Any]]) -> None:
        self.rows = rows
        self.asked: list[Any] = []

    async def aget_many(self, keys: list[Any]) -> dict[Any, dict[str, Any]]:
        self.asked.append(list(keys))
        return {k: self.rows[k] for k in keys if k in self.rows}

    async def aget_many_with_version(self, keys: list[Any]) -> tuple[dict[Any, dict[str, Any]], dict[str, Any]]:
        return await self.aget_many(keys), await self.aversion()

    async def aversion(self) -> dict[str, Any]:
        return {
            "tag": "3.ab12",
            "seq": 3,
            "published_at": "2026-03-02T00:00:00Z",
            "run_id": "scheduled__x",
            "source": {"kind": "iceberg", "snapshot_id": 42},
        }


def _lookup_only(reader: FakeReader) -> Dispatcher:
    from airflow_provider_mlp.serving.aggregations import SeriesCube

    dispatcher = Dispatcher(inner=None)
    dispatcher.runtime = SimpleNamespace(  # type: ignore[assignment]
        config=SimpleNamespace(token="", max_requests_per_connection=0, lookup_namespace="perf"),
        metrics=SimpleNamespace(observe=lambda *args: None, cache_lookup=lambda *args: None),
        model=None,
        tag="lookup:perf",
        lookup_aggregation=SeriesCube(("title", "country"), ("views",)),
        lookup_reader=reader,
        cache_usable=lambda: True,
    )
    return dispatcher


def _post(dispatcher: Dispatcher, path: str, body: Any) -> tuple[int, Any]:
    import json

    answer: dict[str, Any] = {}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        else:
            answer["body"] = json.loads(message["body"])

    scope = {
        "type": "http",
        "path": path,
        "method": "POST",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
    }
    asyncio.run(dispatcher(scope, receive, send))
    return answer["status"], answer["body"]


def test_lookup_keys_come_from_params_and_the_answer_is_the_aggregation() -> None:
    reader = FakeReader(
        {
            ("a", "US"): {"first_day": "2026-01-01", "views": [1, 2, 3]},
            ("b", "US"): {"first_day": "2026-01-01", "views": [10, 20, 30]},
        }
    )
    status, body = _post(
        _lookup_only(reader),
        "/v1/lookup",
        {"params": {"filters": {"title": ["a", "b", "c"], "country": ["US"]}, "start": "2026-01-02"}},
    )
    assert status == 200, body
    assert reader.asked == [[("a", "US"), ("b", "US"), ("c", "US")]]
    assert body["result"] == {"dates": ["2026-01-02", "2026-01-03"], "views": [22, 33], "slices": 2}
    assert body["missing"] == [["c", "US"]]
    assert body["model"] == "lookup:perf"
    assert body["version"] == {
        "tag": "3.ab12",
        "seq": 3,
        "published_at": "2026-03-02T00:00:00Z",
        "run_id": "scheduled__x",
        "snapshot_id": 42,
    }


def test_lookup_params_the_aggregation_rejects_are_a_422_naming_params() -> None:
    status, body = _post(_lookup_only(FakeReader({})), "/v1/lookup", {"params": {"filters": {"genre": ["x"]}}})
    assert status == 422 and body["error"].startswith("field 'params': ") and "'genre'" in body["error"], body
    status, body = _post(_lookup_only(FakeReader({})), "/v1/lookup", {"params": {"start": "soon"}})
    assert status == 422 and "the lookup aggregation rejected them" in body["error"], body


class _KeysOf:
    """An aggregation whose keys are whatever it was given."""

    def __init__(self, keys: list[Any]) -> None:
        self.given = keys

    def keys(self, params: dict[str, Any]) -> list[Any]:
        return self.given

    def aggregate(self, rows: dict[Any, Any], params: dict[str, Any]) -> Any:
        return len(rows)


def test_keys_an_aggregation_derives_are_checked_like_a_clients() -> None:
    dispatcher = _lookup_only(FakeReader({}))
    dispatcher.runtime.lookup_aggregation = _KeysOf(list(range(1001)))  # type: ignore[union-attr]
    status, body = _post(dispatcher, "/v1/lookup", {"params": {}})
    assert status == 422 and "they select 1001 cache keys; at most 1000" in body["error"], body
    dispatcher.runtime.lookup_aggregation = _KeysOf([{"not": "a key"}])  # type: ignore[union-attr]
    status, body = _post(dispatcher, "/v1/lookup", {"params": {}})
    assert status == 422 and body["error"].startswith("field 'params': they give keys that are not cache keys"), body


def test_lookup_without_keys_needs_an_aggregation() -> None:
    dispatcher = _lookup_only(FakeReader({}))
    dispatcher.runtime.lookup_aggregation = None  # type: ignore[union-attr]
    status, body = _post(dispatcher, "/v1/lookup", {"params": {}})
    assert status == 422 and body["error"].startswith("field 'keys': required"), body


def test_a_lookup_only_service_refuses_predict_and_jobs() -> None:
    dispatcher = _lookup_only(FakeReader({}))
    for path, body in (("/v1/predict", {"key": 1}), ("/v1/jobs", {"features": {}})):
        status, answer = _post(dispatcher, path, body)
        assert status == 404 and "answers lookups only" in answer["error"], (path, answer)


# -- async jobs: a hit answered from the cache, a miss validated first ----------------------------


class _Counter:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def labels(self, name: str) -> _Counter:
        self.last = name
        return self

    def inc(self) -> None:
        self.counts[self.last] = self.counts.get(self.last, 0) + 1


class _Queue:
    def __init__(self) -> None:
        self.submitted: list[dict[str, Any]] = []

    def submit(self, payload: Any, *, model: str, job_id: str | None = None, result: Any = None) -> tuple[Any, bool]:
        from airflow_provider_mlp.serving.queue import Job

        self.submitted.append(payload)
        state = "done" if result is not None else "queued"
        return Job(id=job_id or f"job-{len(self.submitted)}", state=state, payload=payload, result=result), True


class _Model:
    name = "media-features"
    tag = "media-features:1"

    def validate(self, features: dict[str, Any]) -> None:
        from airflow_provider_mlp.demo.media_features import UnknownMediaError

        if not isinstance(features.get("media_id"), str):
            raise ValueError("features must be {'media_id': '<id>'}")
        if features["media_id"] != "m000001":
            raise UnknownMediaError(f"unknown media id {features['media_id']!r}: not in media.metadata")


def _jobs_dispatcher(cache: dict[str, Any]) -> tuple[Dispatcher, _Queue, _Counter]:
    queue, jobs = _Queue(), _Counter()
    dispatcher = Dispatcher(inner=None)
    dispatcher.runtime = SimpleNamespace(  # type: ignore[assignment]
        config=SimpleNamespace(token="", max_requests_per_connection=0),
        metrics=SimpleNamespace(observe=lambda *args: None, jobs=jobs),
        model=_Model(),
        queue=queue,
        cached_result=cache.get,
    )
    return dispatcher, queue, jobs


def _post_job(dispatcher: Dispatcher, body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    import json

    answer: dict[str, Any] = {}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
            answer["headers"] = {k.decode(): v.decode() for k, v in message["headers"]}
        else:
            answer["body"] = json.loads(message["body"])

    scope = {"type": "http", "path": "/v1/jobs", "method": "POST", "headers": [], "client": ("127.0.0.1", 1)}
    asyncio.run(dispatcher(scope, receive, send))
    return answer["status"], answer["headers"], answer["body"]


def test_a_job_whose_answer_is_cached_is_answered_at_once_without_a_job() -> None:
    from airflow_provider_mlp.serving.runtime import answer_key

    features = {"media_id": "m000001"}
    dispatcher, queue, jobs = _jobs_dispatcher({answer_key("media-features:1", features): {"vector": [1.0]}})
    status, headers, body = _post_job(dispatcher, {"features": features})
    assert status == 200 and body == {"status": "done", "result": {"vector": [1.0]}, "source": "cache"}
    assert headers["x-mlp-source"] == "cache" and queue.submitted == [] and jobs.counts == {"cached": 1}
    # With a request id the client polls that id later: it gets a done job.
    status, _, body = _post_job(dispatcher, {"features": features, "request_id": "r-1"})
    assert status == 200 and body["id"] == "r-1" and body["result"] == {"vector": [1.0]}
    assert len(queue.submitted) == 1


def test_a_miss_is_checked_by_the_model_before_it_is_queued() -> None:
    dispatcher, queue, jobs = _jobs_dispatcher({})
    status, headers, body = _post_job(dispatcher, {"features": {"media_id": "m000001"}})
    assert status == 202 and body["status"] == "queued" and headers["location"] == f"/v1/jobs/{body['id']}"
    status, _, body = _post_job(dispatcher, {"features": {"media_id": "m424242"}})
    assert status == 404, body
    assert body["error"] == "field 'features': unknown media id 'm424242': not in media.metadata"
    status, _, body = _post_job(dispatcher, {"features": {"title": "x"}})
    assert status == 422 and "the model rejected them: features must be" in body["error"]
    assert len(queue.submitted) == 1 and jobs.counts == {"accepted": 1}


def test_a_model_whose_own_data_fails_its_check_answers_503_not_a_client_error() -> None:
    from airflow_provider_mlp.fastdata.errors import FastDataError

    dispatcher, queue, _ = _jobs_dispatcher({})

    def broken(features: dict[str, Any]) -> None:
        raise FastDataError("table media.metadata: snapshot 7 has expired")

    dispatcher.runtime.model.validate = broken  # type: ignore[union-attr]
    status, _, body = _post_job(dispatcher, {"features": {"media_id": "m000001"}})
    assert status == 503 and "snapshot 7 has expired" in body["error"], body
    assert queue.submitted == []
