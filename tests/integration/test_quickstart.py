"""The main job end to end: generated tables -> `airflow dags test` of the quickstart, entity-resolution,
model-explainer and content-performance DAGs -> the lookup service queried -> a report naming the real
run ids, the models with their environments, the cache version and a served answer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_mlp_demo_runs_the_use_cases_through_real_airflow_and_queries_the_service(tmp_path: Path) -> None:
    home = tmp_path / "mlp-home"
    env = {
        **os.environ,
        "MLP_HOME": str(home),
        "AIRFLOW_HOME": str(tmp_path / "airflow-home"),
        "BENTOML_HOME": str(tmp_path / "bentoml"),
    }
    for var in ("MLP_CATALOG_URI", "MLP_WAREHOUSE", "MLP_ARTIFACT_STORE"):
        env.pop(var, None)
    mlp = Path(sys.executable).with_name("mlp")
    proc = subprocess.run(
        [str(mlp), "demo", "--scale", "0.1"], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    reports = list((home / "artifacts" / "quickstart").glob("*.json"))
    assert len(reports) == 1
    report = json.loads(reports[0].read_text())
    assert report["table"] == "demo.events"
    assert report["rows"] == 20000
    assert report["shards"] >= 2

    assert f"run {report['run_id']}" in proc.stdout and report["run_id"].startswith("manual__")

    matches = list((home / "artifacts" / "entity_resolution").glob("*.json"))
    assert len(matches) == 1
    er = json.loads(matches[0].read_text())
    assert er["scored"] == 20000 and er["shards"] >= 1
    assert er["precision"] >= 0.95 and er["recall"] >= 0.9, er
    assert f"run {er['run_id']}" in proc.stdout
    assert f"{er['matched']:,} matched: precision {er['precision']}" in proc.stdout
    assert "[4/9] airflow dags test mlp_entity_resolution" in proc.stdout  # progress as it goes

    # Use case 2: both models and both explainers, each with its environment's id and packed size.
    for model in ("content-gradient-boosting", "content-logistic-regression"):
        assert f"      {model}:" in proc.stdout and f"      {model}-explainer:" in proc.stdout
        assert f"explains {model}:" in proc.stdout
    assert proc.stdout.count("MB packed)") == 4

    # Use case 4: the version the DAG published is the one the service answered from.
    performance = json.loads(next((home / "artifacts" / "content_performance").glob("*.json")).read_text())
    assert f"as version {performance['version']}" in proc.stdout
    assert f"views (cache version {performance['version']})" in proc.stdout
