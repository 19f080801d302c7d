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
