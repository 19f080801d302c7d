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
