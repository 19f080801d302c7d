"""The main job end to end: sample Iceberg table -> `airflow dags test mlp_quickstart` -> report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_mlp_demo_runs_the_quickstart_dag_through_real_airflow(tmp_path: Path) -> None:
    home = tmp_path / "mlp-home"
    env = {
        **os.environ,
        "MLP_HOME": str(home),
        "AIRFLOW_HOME": str(tmp_path / "airflow-home"),
    }
    for var in ("MLP_CATALOG_URI", "MLP_WAREHOUSE", "MLP_ARTIFACT_STORE"):
        env.pop(var, None)
    mlp = Path(sys.executable).with_name("mlp")
    proc = subprocess.run(
        [str(mlp), "demo", "--rows", "20000"], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    reports = list((home / "artifacts" / "quickstart").glob("*.json"))
    assert len(reports) == 1
    report = json.loads(reports[0].read_text())
    assert report["table"] == "demo.events"
    assert report["rows"] == 20000
    assert report["shards"] >= 2
