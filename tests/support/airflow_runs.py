"""Running DAGs through a real Airflow from tests: `airflow db migrate` + `airflow dags test` in a
temporary AIRFLOW_HOME, and a stand-in for the task instance that operators read ids from."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

AIRFLOW = str(Path(sys.executable).with_name("airflow"))


@dataclass
class TaskInstanceStub:
    """What an operator's execute() reads of ``context["ti"]`` when a test calls it directly."""

    task_id: str
    dag_id: str = "test_dag"
    run_id: str = "manual__test"
    map_index: int = -1
    try_number: int = 1


def write_dag(tmp_path: Path, name: str, source: str) -> Path:
    dags = tmp_path / "dags"
    dags.mkdir(exist_ok=True)
    (dags / f"{name}.py").write_text(source)
    return dags


def airflow_env(tmp_path: Path, dags: Path, **extra: str) -> dict[str, str]:
    """The environment of an Airflow of the test's own (fresh AIRFLOW_HOME, these DAGs, no examples)."""
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow-home"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        **extra,
    }
    env.pop("KUBECONFIG", None)  # a connection names its kubeconfig; two would be "mutually exclusive"
    return env


def dags_test(dag_id: str, env: dict[str, str], *, timeout: int = 400) -> subprocess.CompletedProcess[str]:
    """`airflow db migrate` (asserted) then `airflow dags test DAG_ID` (returned, for the caller's asserts)."""
    migrate = subprocess.run([AIRFLOW, "db", "migrate"], env=env, capture_output=True, text=True, timeout=300)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    return subprocess.run([AIRFLOW, "dags", "test", dag_id], env=env, capture_output=True, text=True, timeout=timeout)


def assert_succeeded(run: subprocess.CompletedProcess[str]) -> None:
    output = run.stdout + run.stderr
    assert run.returncode == 0 and "state=failed" not in output, output[-4000:]


def task_states(env: dict[str, str]) -> dict[str, str]:
    """task id -> state of the last run's task instances (the last map index's, for mapped tasks)."""
    with sqlite3.connect(Path(env["AIRFLOW_HOME"]) / "airflow.db") as db:
        return dict(db.execute("select task_id, state from task_instance").fetchall())
