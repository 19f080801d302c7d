"""A real Airflow discovers the provider: `airflow providers list/get` in a fresh AIRFLOW_HOME."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def _airflow(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    airflow = Path(sys.executable).with_name("airflow")
    return subprocess.run([str(airflow), *args], capture_output=True, text=True, env=env, timeout=300)


def test_airflow_lists_and_gets_the_provider(tmp_path: Path) -> None:
    listed = _airflow(["providers", "list", "--output", "plain"], tmp_path)
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "airflow-provider-mlp" in listed.stdout
    got = _airflow(["providers", "get", "airflow-provider-mlp", "--full", "--output", "json"], tmp_path)
    assert got.returncode == 0, got.stderr[-2000:]
    assert "mlp_object_store" in got.stdout


def test_airflow_config_shows_the_mlp_section(tmp_path: Path) -> None:
    shown = _airflow(["config", "get-value", "mlp", "memcached_servers"], tmp_path)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert shown.stdout.strip() == "127.0.0.1:11211"
