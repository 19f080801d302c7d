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
