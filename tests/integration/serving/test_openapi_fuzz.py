"""Schemathesis against the service's OpenAPI document (a real ``bentoml serve``): no input makes a 5xx."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.serving.conftest import publish_aggregates, publish_predictions, save, service_env
from tests.support.memcached import MemcachedProcess
from tests.support.serving import ServingProcess
from tests.support.serving_models import LinearScorer

pytestmark = pytest.mark.integration

SCHEMATHESIS = str(Path(sys.executable).with_name("st"))


def test_fuzzed_requests_never_get_a_server_error(
    tmp_path: Path, mlp_home: Path, bentoml_home: Path, memcached: MemcachedProcess
) -> None:
    save(LinearScorer({"a": 1.0, "b": -2.0}))
    publish_predictions(memcached.address)
    publish_aggregates(memcached.address)
    env = service_env(mlp_home, memcached, bentoml_home, MLP_SERVING_TOKEN="fuzz-token")
    with ServingProcess(env, tmp_path / "serve.log") as service:
        result = subprocess.run(
            [
                SCHEMATHESIS,
                "run",
                f"{service.url}/openapi.json",
                "--url",
                service.url,
                "--checks",
                "not_a_server_error",
                "--max-examples",
                "40",
                "--phases",
                "examples,coverage,fuzzing",
                "-H",
                "Authorization: Bearer fuzz-token",
                "--no-color",
                "--seed",
                "1",
            ],
            capture_output=True,
            text=True,
            timeout=150,
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
        assert "No issues found" in result.stdout and "Tested: 7" in result.stdout, result.stdout[-3000:]
    assert "Traceback" not in service.log(), service.log()[-4000:]
