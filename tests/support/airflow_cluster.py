"""A real Airflow 3 for tests: ``mlp airflow up``'s launcher in a temporary AIRFLOW_HOME, plus REST helpers.

Every listener is on 127.0.0.1 on a free port; LocalExecutor on SQLite with low parallelism; DAGs are
unpaused at creation and the DAGs folder is re-listed often, so tests wait seconds, not minutes. The
context manager stops every process it started, also when the test fails.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from airflow_provider_mlp.airflow_local import LocalAirflow

TEST_CONFIG = {
    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
    "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
    "AIRFLOW__TRIGGERER__CAPACITY": "100",
}


class AirflowCluster:
    """A running LocalAirflow and the REST calls tests make against it."""

    def __init__(self, instance: LocalAirflow) -> None:
        self.instance = instance
        self._token: str | None = None

    @property
    def url(self) -> str:
        return self.instance.url

    def token(self) -> str:
        if self._token is None:
            self._token = self.instance.token()
        return self._token

    def api(self, method: str, path: str, body: Any = None, *, token: str | None = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {token or self.token()}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return exc.code, json.loads(raw)
            except ValueError:
                return exc.code, raw.decode(errors="replace")

    def get(self, path: str) -> Any:
        status, body = self.api("GET", path)
        assert status == 200, (path, status, body)
        return body

    def wait_for_dags(self, dag_ids: list[str], timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        missing = set(dag_ids)
        while time.monotonic() < deadline:
            found = {d["dag_id"] for d in self.get("/api/v2/dags?limit=100")["dags"]}
            missing = set(dag_ids) - found
            if not missing:
                return
            time.sleep(1)
        errors = self.get("/api/v2/importErrors")
        raise AssertionError(f"DAGs {sorted(missing)} not parsed after {timeout}s; import errors: {errors}")

    def wait_for_asset(self, uri: str, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            query = urllib.parse.urlencode({"uri_pattern": uri})
            for asset in self.get(f"/api/v2/assets?{query}")["assets"]:
                if asset["uri"] == uri:
                    return int(asset["id"])
            time.sleep(1)
        raise AssertionError(f"asset {uri} not registered after {timeout}s")

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = self.get(f"/api/v2/dags/{dag_id}/dagRuns?limit=100&order_by=run_after")["dag_runs"]
        return runs

    def wait_for_runs(
        self, dag_id: str, count: int, *, timeout: float = 90, finished: bool = True
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        runs: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            runs = self.runs(dag_id)
            done = [r for r in runs if r["state"] in ("success", "failed")] if finished else runs
            if len(done) >= count:
                return runs
            time.sleep(0.5)
        raise AssertionError(f"{dag_id}: wanted {count} run(s) after {timeout}s, have {runs}")

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        run = urllib.parse.quote(run_id, safe="")
        body = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run}/taskInstances/{task_id}/xcomEntries/{key}")
        return body["value"]

    def task_log(self, dag_id: str, run_id: str, task_id: str) -> str:
        """The task's log text, read from the log folder (LocalExecutor writes files there)."""
        base = self.instance.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        return "\n".join(p.read_text(errors="replace") for p in sorted(base.rglob("*.log")))


@contextmanager
def running_airflow(
    home: Path, dags_folder: Path, *, env: Mapping[str, str] | None = None, config: Mapping[str, str] | None = None
) -> Iterator[AirflowCluster]:
    instance = LocalAirflow(
        home=home, dags_folder=dags_folder, parallelism=2, env=dict(env or {}), config={**TEST_CONFIG, **(config or {})}
    )
    try:
        instance.start(timeout=240)
        yield AirflowCluster(instance)
    finally:
        instance.stop()
