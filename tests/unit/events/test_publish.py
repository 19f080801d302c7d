"""mlp events publish against a small HTTP server on 127.0.0.1: retries, permanent errors, token use."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from airflow_provider_mlp.events.publish import AirflowApi, PublishError, publish_event


class FakeAirflow(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.failures_left = 0
        self.posted: list[dict[str, Any]] = []
        self.auth: list[str] = []


class Handler(BaseHTTPRequestHandler):
    server: FakeAirflow

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:
        if self.path == "/auth/token":
            return self._send(201, {"access_token": "tok"})
        self.server.auth.append(self.headers.get("Authorization", ""))
        if self.headers.get("Authorization") != "Bearer tok":
            return self._send(401, {"detail": "Invalid JWT token"})
        return self._send(200, {"assets": [{"id": 5, "uri": "mlp://model/ranker"}]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.server.failures_left:
            self.server.failures_left -= 1
            return self._send(503, {"detail": "busy"})
        self.server.posted.append(body)
        return self._send(200, {"id": 1, "uri": "mlp://model/ranker"})


@pytest.fixture
def fake_airflow() -> Iterator[FakeAirflow]:
    server = FakeAirflow()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _api(server: FakeAirflow, **kwargs: Any) -> AirflowApi:
    return AirflowApi(f"http://127.0.0.1:{server.server_address[1]}", sleep=lambda s: None, **kwargs)


def test_transient_failures_are_retried(fake_airflow: FakeAirflow) -> None:
    fake_airflow.failures_left = 2
    event = publish_event("mlp://model/ranker", {"version": "1"}, api=_api(fake_airflow))
    assert event["id"] == 1
    assert fake_airflow.posted == [{"asset_id": 5, "extra": {"version": "1"}}]
    assert fake_airflow.auth == ["Bearer tok"]


def test_too_many_transient_failures_and_permanent_ones_give_the_server_message(fake_airflow: FakeAirflow) -> None:
    fake_airflow.failures_left = 10
    with pytest.raises(PublishError, match="after 3 attempt.*HTTP 503: busy"):
        publish_event("mlp://model/ranker", {}, api=_api(fake_airflow, attempts=3))
    with pytest.raises(PublishError, match="HTTP 401: Invalid JWT token") as info:
        publish_event("mlp://model/ranker", {}, api=_api(fake_airflow, token="wrong"))
    assert info.value.status == 401
    with pytest.raises(PublishError, match="'mlp://model/other' is not known to Airflow"):
        publish_event("mlp://model/other", {}, api=_api(fake_airflow))
