"""The model service through a real ``bentoml serve`` on 127.0.0.1 and a real memcached."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.integration.serving.conftest import publish_aggregates, publish_predictions, save, service_env
from tests.support.memcached import MemcachedProcess
from tests.support.serving import ServingProcess, http
from tests.support.serving_models import LinearScorer

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token"


def _wait_job(url: str, job_id: str, token: str | None = None, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, _, body = http("GET", f"{url}/v1/jobs/{job_id}/result", token=token)
        if status == 200:
            return body
        assert status == 202, body
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} not done after {timeout}s")


def test_endpoints_auth_validation_metrics_and_request_log(
    tmp_path: Path, mlp_home: Path, bentoml_home: Path, memcached: MemcachedProcess
) -> None:
    tag = save(LinearScorer({"a": 2.0, "b": 1.0}))
    publish_predictions(memcached.address)
    publish_aggregates(memcached.address)
    env = service_env(
        mlp_home, memcached, bentoml_home, MLP_SERVING_TOKEN=TOKEN, MLP_SERVING_REQUEST_LOG="serving.requests"
    )
    with ServingProcess(env, tmp_path / "serve.log") as service:
        url = service.url
        # Health answers without a token; everything else needs it.
        assert http("GET", f"{url}/healthz")[0] == 200
        status, headers, body = http("POST", f"{url}/v1/predict", {"key": 5})
        assert status == 401 and headers["www-authenticate"] == "Bearer"
        assert http("GET", f"{url}/metrics")[0] == 401
        assert http("POST", f"{url}/v1/predict", {"key": 5}, token="wrong")[0] == 401

        status, headers, body = http("POST", f"{url}/v1/predict", {"key": 5}, token=TOKEN)
        assert (status, headers["x-mlp-source"], body["source"], body["prediction"]) == (200, "cache", "cache", 0.5)
        assert body["model"] == tag
        status, headers, body = http("POST", f"{url}/v1/predict", {"key": 9999, "features": {"a": 3}}, token=TOKEN)
        assert (status, headers["x-mlp-source"], body["prediction"]) == (200, "model", {"score": 6.0})
        status, _, body = http("POST", f"{url}/v1/predict", {"features": {"a": 1, "b": 1}}, token=TOKEN)
        assert (status, body["source"], body["prediction"]) == (200, "model", {"score": 3.0})

        status, _, body = http(
            "POST", f"{url}/v1/lookup", {"keys": [5, 7, 9999], "weights": {"views": 1, "hours": 2}}, token=TOKEN
        )
        assert status == 200
        assert [r["key"] for r in body["results"]] == [7, 5] and body["missing"] == [9999]
        assert body["results"][0]["score"] == pytest.approx(700 + 2 * 10.5)

        # Malformed input: 4xx naming the field, never a 5xx.
        for payload, field in [
            ({"keys": "x"}, "keys"),
            ({"keys": []}, "keys"),
            ({"keys": [1], "weights": {"nope": 1}}, "weights.nope"),
            ({"keys": [1], "surprise": 1}, "surprise"),
            ({"keys": [1.5]}, "keys.0"),
        ]:
            status, _, body = http("POST", f"{url}/v1/lookup", payload, token=TOKEN)
            assert status == 422 and field in body["error"], (payload, body)
        status, _, body = http("POST", f"{url}/v1/predict", {"key": 9999, "features": {"a": "x"}}, token=TOKEN)
        assert status == 422 and "features" in body["error"]
        status, _, body = http("POST", f"{url}/v1/predict", {"key": 9999}, token=TOKEN)
        assert status == 422 and "features" in body["error"]
        assert http("POST", f"{url}/v1/predict", raw=b"{not json", token=TOKEN)[0] == 400
        status, _, body = http("GET", f"{url}/v1/jobs/bad$id", token=TOKEN)
        assert status == 422 and "job_id" in body["error"]
        assert http("GET", f"{url}/v1/jobs/unknown", token=TOKEN)[0] == 404
        assert http("GET", f"{url}/v1/predict", token=TOKEN)[0] == 405

        # Async: accepted at once, computed, fetched; the same features again are answered from the cache.
        status, headers, body = http("POST", f"{url}/v1/jobs", {"features": {"a": 10}}, token=TOKEN)
        assert status == 202 and body["status"] == "queued" and headers["location"] == f"/v1/jobs/{body['id']}"
        assert _wait_job(url, body["id"], TOKEN)["result"] == {"score": 20.0}
        status, _, again = http("POST", f"{url}/v1/jobs", {"features": {"a": 10}}, token=TOKEN)
        assert status == 200 and again["status"] == "done" and again["result"] == {"score": 20.0}
        # A request id makes a resubmission idempotent.
        first = http("POST", f"{url}/v1/jobs", {"features": {"a": 11}, "request_id": "req-1"}, token=TOKEN)[2]
        second = http("POST", f"{url}/v1/jobs", {"features": {"a": 11}, "request_id": "req-1"}, token=TOKEN)[2]
        assert first["id"] == second["id"] == "req-1"

        # Keys in paths never become metric labels: many distinct ids, one series per endpoint.
        for i in range(30):
            http("GET", f"{url}/v1/jobs/job-{i}", token=TOKEN)
            http("GET", f"{url}/some/path/{i}", token=TOKEN)
        status, _, text = http("GET", f"{url}/metrics", token=TOKEN)
        assert status == 200
        assert 'mlp_serving_requests_total{endpoint="predict",status="200"} 3.0' in text
        assert 'mlp_serving_fallbacks_total{reason="miss"}' in text and 'fallbacks_total{reason="no_key"} 1.0' in text
        assert "mlp_serving_request_duration_seconds_bucket" in text
        assert "mlp_serving_cache_hit_ratio" in text and 'mlp_serving_queue_depth{state="queued"}' in text
        assert "job-1" not in text and "/some/path" not in text
        ready = http("GET", f"{url}/readyz", token=TOKEN)
        assert ready[0] == 200 and ready[2]["model"] == tag
    # Graceful shutdown flushed the request log: every prediction is in Iceberg with the model tag and env id.
    from airflow_provider_mlp.fastdata import Table

    rows = Table("serving.requests").read().to_arrow().to_pylist()
    predictions = [r for r in rows if r["endpoint"] == "predict"]
    assert sorted(r["source"] for r in predictions) == ["cache", "model", "model"]
    assert {r["model_tag"] for r in rows} == {tag} and {r["env_id"] for r in rows} == {"env-abc123"}
    assert len([r for r in rows if r["endpoint"] == "jobs"]) == 2


def test_memcached_down_predict_falls_back_lookup_503_both_recover(
    tmp_path: Path, mlp_home: Path, bentoml_home: Path, memcached: MemcachedProcess
) -> None:
    save(LinearScorer({"a": 2.0}))
    publish_predictions(memcached.address)
    publish_aggregates(memcached.address)
    with ServingProcess(service_env(mlp_home, memcached, bentoml_home), tmp_path / "serve.log") as service:
        url = service.url
        lookup = {"keys": [3], "weights": {"views": 1}}
        assert http("POST", f"{url}/v1/predict", {"key": 3, "features": {"a": 1}})[2]["source"] == "cache"
        assert http("POST", f"{url}/v1/lookup", lookup)[0] == 200

        memcached.stop()  # SIGKILL, as a crashed cache host
        status, headers, body = http("POST", f"{url}/v1/predict", {"key": 3, "features": {"a": 1}})
        assert (status, headers["x-mlp-source"], body["prediction"]) == (200, "model", {"score": 2.0})
        status, _, body = http("POST", f"{url}/v1/lookup", lookup)
        assert status == 503 and "precompute cache unavailable" in body["error"]
        assert http("POST", f"{url}/v1/predict", {"key": 3})[0] == 503
        assert http("GET", f"{url}/readyz")[0] == 200  # the model still answers: stay in the Service

        memcached.start()  # back, empty: the DAG's publish task runs again
        publish_predictions(memcached.address)
        publish_aggregates(memcached.address)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            lookup_status = http("POST", f"{url}/v1/lookup", lookup)[0]
            source = http("POST", f"{url}/v1/predict", {"key": 3, "features": {"a": 1}})[2]["source"]
            if lookup_status == 200 and source == "cache":
                break
            time.sleep(0.2)
        else:
            raise AssertionError("service did not recover after memcached returned")
        _, _, text = http("GET", f"{url}/metrics")
        assert 'mlp_serving_fallbacks_total{reason="cache_unavailable"}' in text
