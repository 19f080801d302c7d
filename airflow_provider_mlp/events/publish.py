"""Publish an asset event to Airflow's REST API from outside Airflow (``mlp events publish``).

``POST /api/v2/assets/events`` takes the asset's numeric id, so the URI is looked up first
(``GET /api/v2/assets?uri_pattern=...``). The token is the one given, or one from ``/auth/token``
(credentials when given, else the simple auth manager's all-admins mode). Connection failures,
429 and 502/503/504 are retried with backoff; any other error is permanent and raised with the
server's own message.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from airflow_provider_mlp.errors import MlpError

TRANSIENT_STATUS = frozenset({429, 502, 503, 504})
DEFAULT_URL = "http://127.0.0.1:8080"


class PublishError(MlpError, RuntimeError):
    """Airflow refused the event (or could not be reached in time); ``status`` is the HTTP status, if any."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _server_message(body: bytes) -> str:
    text = body.decode(errors="replace").strip()
    try:
        detail = json.loads(text).get("detail", text)
    except (ValueError, AttributeError):
        return text[:500]
    return detail if isinstance(detail, str) else json.dumps(detail)[:500]


class AirflowApi:
    """A tiny client for the few REST calls publishing needs, with retries of transient failures."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        attempts: int = 5,
        backoff: float = 0.5,
        timeout: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self.username = username
        self.password = password
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.timeout = timeout
        self.sleep = sleep

    def request(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> Any:
        data = None if body is None else json.dumps(body).encode()
        last: str = ""
        for attempt in range(self.attempts):
            headers = {"Accept": "application/json"}
            if data is not None:
                headers["Content-Type"] = "application/json"
            if auth:
                headers["Authorization"] = f"Bearer {self.token()}"
            req = urllib.request.Request(f"{self.url}{path}", data=data, headers=headers, method=method)
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as response:
                    raw = response.read()
                    return json.loads(raw) if raw else None
            except urllib.error.HTTPError as exc:
                message = _server_message(exc.read())
                if exc.code not in TRANSIENT_STATUS:
                    raise PublishError(f"{method} {path} -> HTTP {exc.code}: {message}", exc.code) from None
                last = f"HTTP {exc.code}: {message}"
            except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
                last = f"cannot reach Airflow at {self.url}: {getattr(exc, 'reason', exc)}"
            if attempt + 1 < self.attempts:
                self.sleep(self.backoff * 2**attempt)
        raise PublishError(f"{method} {path} failed after {self.attempts} attempt(s); last: {last}")

    def token(self) -> str:
        if self._token is None:
            if self.username:
                body = {"username": self.username, "password": self.password or ""}
                answer = self.request("POST", "/auth/token", body, auth=False)
            else:
                answer = self.request("GET", "/auth/token", auth=False)
            self._token = str(answer["access_token"])
        return self._token

    def asset_id(self, uri: str) -> int:
        query = urllib.parse.urlencode({"uri_pattern": uri, "limit": 100})
        answer = self.request("GET", f"/api/v2/assets?{query}")
        for asset in answer.get("assets", []):
            if asset.get("uri") == uri:
                return int(asset["id"])
        raise PublishError(
            f"asset {uri!r} is not known to Airflow at {self.url}: no DAG declares it as a schedule or outlet "
            "(or the dag-processor has not parsed it yet)",
            404,
        )


def normalize_uri(uri: str) -> str:
    """The provider's normal form of an ``iceberg://`` or ``mlp://`` URI (others unchanged)."""
    from urllib.parse import urlsplit

    from airflow_provider_mlp.assets import MLP_SCHEME, SCHEME, sanitize_mlp_uri, sanitize_uri

    parts = urlsplit(uri)
    if parts.scheme == SCHEME:
        return sanitize_uri(parts).geturl()
    if parts.scheme == MLP_SCHEME:
        return sanitize_mlp_uri(parts).geturl()
    return uri


def publish_event(
    uri: str,
    payload: Mapping[str, Any],
    *,
    api: AirflowApi,
    partition_key: str | None = None,
) -> dict[str, Any]:
    """Post one asset event for ``uri`` with ``payload`` as its extra; returns Airflow's record of it."""
    uri = normalize_uri(uri)
    body: dict[str, Any] = {"asset_id": api.asset_id(uri), "extra": dict(payload)}
    if partition_key is not None:
        body["partition_key"] = partition_key
    answer: dict[str, Any] = api.request("POST", "/api/v2/assets/events", body)
    return answer
