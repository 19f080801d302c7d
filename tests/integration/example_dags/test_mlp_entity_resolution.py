"""Use case 1 through a real Airflow: generated title pairs -> `airflow dags test mlp_entity_resolution`
-> one committed matches table whose snapshot summary carries precision and recall. The matcher
tasks run in a packed environment of their own (toolz, which the runtime lacks), reading and
scoring with the runtime's packages (``runtime_packages=True``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.compute as pc
import pytest

from airflow_provider_mlp.demo.entity_resolution import create_title_pairs
from airflow_provider_mlp.demo.runner import example_dags_folder
from airflow_provider_mlp.fastdata import RUN_ID_PROPERTY, Table
from env_builder.builder import alias, build
from env_builder.spec import EnvSpec, running_python

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PAIRS = 30_000


def _airflow(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    airflow = str(Path(sys.executable).with_name("airflow"))
    return subprocess.run([airflow, *args], env=env, capture_output=True, text=True, timeout=600, check=False)


def test_entity_resolution_dag_end_to_end_through_real_airflow(mlp_home: Path, tmp_path: Path) -> None:
    pairs, truth = create_title_pairs("content.title_pairs", PAIRS, row_group_rows=5_000)
    matcher_env = build(EnvSpec(python=running_python(), pip=["toolz==1.0.0"]))
    alias(matcher_env, "content/er/matcher:latest")
    env = {
        **os.environ,
        "MLP_HOME": str(mlp_home),
        "MLP_COMPUTE_BACKEND": "local",
        "AIRFLOW_HOME": str(tmp_path / "airflow-home"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(example_dags_folder()),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    migrate = _airflow(["db", "migrate"], env)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    # Shards far smaller than a row group's bytes: one shard per row group, six matcher tasks.
    conf = {"shard_bytes": 1, "report_name": "er-test", "env": "content/er/matcher:latest"}
    started = time.monotonic()
    run = _airflow(["dags", "test", "mlp_entity_resolution", "--conf", json.dumps(conf)], env)
    elapsed = time.monotonic() - started
    output = run.stdout + run.stderr
    assert run.returncode == 0 and "state=failed" not in output, run.stdout[-6000:] + run.stderr[-6000:]
    print(f"airflow dags test mlp_entity_resolution: {elapsed:.1f}s for {PAIRS} pairs")
    assert f"[mlp] environment {matcher_env.id} ready" in output  # the matchers ran in the packed env

    report = json.loads((mlp_home / "artifacts" / "entity_resolution" / "er-test.json").read_text())
    assert report["scored"] == PAIRS and report["shards"] == 6
    assert report["precision"] >= 0.95 and report["recall"] >= 0.9, report
    assert report["run_id"].startswith("manual__")

    matches = Table("content.title_matches")
    data = matches.read().to_arrow()
    # Every match once: the table holds exactly what the audit counted, with no pair twice.
    assert data.num_rows == report["matched"] == len(pc.unique(data["pair_id"]))
    assert pc.min(data["score"]).as_py() >= 0.72
    snapshots = matches.snapshots()
    assert len(snapshots) == 1 and snapshots[0]["snapshot_id"] == report["snapshot_id"]
    summary = snapshots[0]["summary"]
    assert summary[RUN_ID_PROPERTY] == report["run_id"]
    assert float(summary["er.precision"]) == report["precision"]
    assert float(summary["er.recall"]) == report["recall"]
    assert int(summary["er.scored"]) == PAIRS
    # The matcher never read the ground truth: the truth table is untouched and separate.
    assert len(truth.snapshots()) == 1 and "is_match" not in pairs.arrow_schema.names
