"""Use case 5 end to end: `airflow dags test mlp_media_features` publishes the extractor, then a real
`bentoml serve` answers feature requests through the PostgreSQL job queue and a real memcached."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_mlp.demo import media_features as media
from airflow_provider_mlp.serving.queue import queue_from_url
from airflow_provider_mlp.serving.runtime import answer_key
from tests.support.airflow_runs import airflow_env, assert_succeeded, dags_test, task_states
from tests.support.memcached import MemcachedProcess, running_memcached
from tests.support.serving import PostgresServer, ServingProcess, http

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAG_FILE = Path(media.__file__).resolve().parents[1] / "example_dags" / "mlp_media_features.py"


@pytest.fixture
def memcached() -> Iterator[MemcachedProcess]:
    with running_memcached(1) as servers:
        yield servers[0]


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


def _result(url: str, job_id: str, timeout: float = 30.0) -> tuple[int, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status, _, body = http("GET", f"{url}/v1/jobs/{job_id}/result")
        if status != 202 or time.monotonic() > deadline:
            return status, body
        time.sleep(0.05)


def test_features_on_demand_miss_is_queued_and_computed_hit_is_immediate_unknown_id_is_named(
    tmp_path: Path, mlp_home: Path, memcached: MemcachedProcess, postgres: PostgresServer
) -> None:
    from pymemcache.client.base import Client

    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(DAG_FILE, dags / DAG_FILE.name)
    bentoml_home = tmp_path / "bentoml"
    stores = {"MLP_HOME": str(mlp_home), "BENTOML_HOME": str(bentoml_home), "BENTOML_DO_NOT_TRACK": "true"}
    env = airflow_env(tmp_path, dags, **stores)
    started = time.monotonic()
    run = dags_test("mlp_media_features", env)
    dag_seconds = time.monotonic() - started
    assert_succeeded(run)
    assert task_states(env) == {
        "generate_metadata": "success",
        "build_extractor": "success",
        "publish_extractor": "success",
    }
    print(f"airflow dags test mlp_media_features: {dag_seconds:.1f}s")

    rows = {row["media_id"]: row for row in media.media_metadata(media.DEFAULT_MEDIA).to_pylist()}
    wanted = "m000042"
    expected = media.extract_features(rows[wanted])

    service_env = {
        **stores,
        "MLP_SERVING_MODEL": media.MODEL_NAME,
        "MLP_MEMCACHED_SERVERS": memcached.address,
        "MLP_SERVING_QUEUE": postgres.url,
    }
    with ServingProcess(service_env, tmp_path / "serve.log") as service:
        status, _, ready = http("GET", f"{service.url}/readyz")
        assert status == 200 and ready["model"].startswith(f"{media.MODEL_NAME}:"), ready
        tag = ready["model"]

        # A miss: queued, computed by a worker, returned on poll, equal to the extractor's own output.
        asked = time.monotonic()
        status, headers, job = http("POST", f"{service.url}/v1/jobs", {"features": {"media_id": wanted}})
        assert status == 202 and job["status"] == "queued", job
        assert headers["location"] == f"/v1/jobs/{job['id']}"
        status, body = _result(service.url, job["id"])
        miss_ms = (time.monotonic() - asked) * 1000
        assert status == 200 and body["status"] == "done", body
        assert body["result"] == expected
        assert body["result"]["names"] == list(media.FEATURE_NAMES) and len(body["result"]["vector"]) == 13

        # ... and cached in memcached under the answer key of (model, features).
        cache = Client(("127.0.0.1", memcached.port))
        try:
            raw = cache.get(answer_key(tag, {"media_id": wanted}))
        finally:
            cache.close()
        assert raw is not None and json.loads(raw) == expected

        # A hit: answered at once from the cache, no job.
        asked = time.monotonic()
        status, headers, hit = http("POST", f"{service.url}/v1/jobs", {"features": {"media_id": wanted}})
        hit_ms = (time.monotonic() - asked) * 1000
        assert status == 200 and headers["x-mlp-source"] == "cache", hit
        assert hit == {"status": "done", "result": expected, "source": "cache"}

        # An unknown media id: a clear error naming it, and nothing queued.
        status, _, refused = http("POST", f"{service.url}/v1/jobs", {"features": {"media_id": "m999999"}})
        assert status == 404, refused
        assert "unknown media id 'm999999'" in refused["error"] and media.METADATA_TABLE in refused["error"]
        status, _, refused = http("POST", f"{service.url}/v1/jobs", {"features": {"media": 42}})
        assert status == 422 and "media_id" in refused["error"], refused

        # A second miss: the service has read the metadata once, so this one is only queue + compute.
        asked = time.monotonic()
        status, _, other = http("POST", f"{service.url}/v1/jobs", {"features": {"media_id": "m000007"}})
        assert status == 202, other
        status, body = _result(service.url, other["id"])
        warm_miss_ms = (time.monotonic() - asked) * 1000
        assert status == 200 and body["result"] == media.extract_features(rows["m000007"])

        queue = queue_from_url(postgres.url)
        try:
            jobs = queue.jobs()
        finally:
            queue.close()
        assert sorted((j.id, j.state, j.payload["features"]["media_id"]) for j in jobs) == sorted(
            [(job["id"], "done", wanted), (other["id"], "done", "m000007")]
        )
    print(
        f"media features: first miss (metadata read, queued, computed, polled) {miss_ms:.0f} ms, "
        f"next miss {warm_miss_ms:.0f} ms, hit {hit_ms:.1f} ms"
    )
