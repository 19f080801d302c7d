"""Durable async jobs through real ``bentoml serve`` processes: SIGKILL with queued work, and PostgreSQL replicas."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_mlp.serving.queue import queue_from_url
from tests.integration.serving.conftest import save, service_env
from tests.support.memcached import MemcachedProcess
from tests.support.serving import PostgresServer, ServingProcess, http
from tests.support.serving_models import RecordingModel

pytestmark = pytest.mark.integration


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


def _wait_all_done(queue_url: str, ids: list[str], timeout: float = 45.0) -> list:
    queue = queue_from_url(queue_url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            jobs = {j.id: j for j in queue.jobs()}
            if all(jobs.get(i) is not None and jobs[i].state == "done" for i in ids):
                return [jobs[i] for i in ids]
            if time.monotonic() > deadline:
                raise AssertionError(f"not all done: {Counter(j.state for j in jobs.values())}")
            time.sleep(0.1)
    finally:
        queue.close()


def _computed(path: Path) -> Counter:
    return Counter(int(line.split()[0]) for line in path.read_text().splitlines()) if path.exists() else Counter()


def test_sigkill_with_queued_work_every_accepted_request_completes_once(
    tmp_path: Path, mlp_home: Path, bentoml_home: Path, memcached: MemcachedProcess
) -> None:
    record = tmp_path / "computed.txt"
    save(RecordingModel(str(record), delay=0.25))
    queue_url = f"sqlite:///{tmp_path / 'jobs.db'}"
    env = service_env(mlp_home, memcached, bentoml_home, MLP_SERVING_QUEUE=queue_url, MLP_SERVING_QUEUE_LEASE="1.5")
    service = ServingProcess(env, tmp_path / "serve.log").start()
    try:
        ids = []
        for n in range(10):
            status, _, body = http("POST", f"{service.url}/v1/jobs", {"features": {"n": n}})
            assert status == 202, body
            ids.append(body["id"])
        while len(_computed(record)) < 2:
            time.sleep(0.05)
        service.kill()  # mid-work: one job running, the rest queued
        assert len(_computed(record)) < 10
        service = ServingProcess(env, tmp_path / "serve.log", port=service.port).start()
        jobs = _wait_all_done(queue_url, ids)
    finally:
        service.stop()
    assert [j.completions for j in jobs] == [1] * 10
    assert [j.result for j in jobs] == [{"n": n, "double": 2 * n} for n in range(10)]
    # Computed at least once each; only the job running when the process died was computed twice.
    computed = _computed(record)
    assert set(computed) == set(range(10)) and sum(computed.values()) <= 11


def test_postgres_backend_two_service_processes_compute_each_request_once(
    tmp_path: Path, mlp_home: Path, bentoml_home: Path, memcached: MemcachedProcess, postgres: PostgresServer
) -> None:
    record = tmp_path / "computed.txt"
    save(RecordingModel(str(record), delay=0.02))
    env = service_env(mlp_home, memcached, bentoml_home, MLP_SERVING_QUEUE=postgres.url, MLP_SERVING_JOB_WORKERS="2")
    with (
        ServingProcess(env, tmp_path / "a.log") as first,
        ServingProcess(env, tmp_path / "b.log") as second,
    ):
        ids = []
        for n in range(40):
            url = (first if n % 2 else second).url
            status, _, body = http("POST", f"{url}/v1/jobs", {"features": {"n": n}})
            assert status == 202, body
            ids.append(body["id"])
        jobs = _wait_all_done(postgres.url, ids)
        status, _, body = http("GET", f"{first.url}/v1/jobs/{ids[0]}/result")
        assert status == 200 and body["result"] == {"n": 0, "double": 0}
    assert [j.completions for j in jobs] == [1] * 40
    assert _computed(record) == Counter(range(40))
    pids = {line.split()[1] for line in record.read_text().splitlines()}
    assert len(pids) >= 2, "both replicas should have taken work"
