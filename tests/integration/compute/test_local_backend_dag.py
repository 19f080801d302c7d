"""A real Airflow runs @task.mlp on the local backend in a real packed environment that has a
package (toolz) the Airflow environment does not have."""

from __future__ import annotations

import importlib.util
import json
import textwrap
from pathlib import Path

import pytest

from env_builder.builder import alias, build
from env_builder.spec import EnvSpec, running_python
from tests.support.airflow_runs import airflow_env, assert_succeeded, dags_test, write_dag

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAG = textwrap.dedent(
    """
    from __future__ import annotations

    import pendulum
    from airflow.sdk import dag, task


    @dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
    def compute_local():
        @task
        def plan() -> list[int]:
            return [1, 2, 3]

        @task.mlp(env="demo/compute/toolz:latest", cpu=1, memory="256Mi", retries=0)
        def square_sum(n: int) -> dict:
            import sys

            import toolz

            return {"n": n, "value": toolz.reduce(lambda a, b: a + b, [n * n, 1]), "python": sys.prefix}

        @task
        def report(results: list[dict], out: str = "") -> None:
            import json
            import os

            with open(os.environ["COMPUTE_REPORT"], "w") as fh:
                json.dump(list(results), fh)

        report(square_sum.expand(n=plan()))


    compute_local()
    """
)


def test_task_mlp_fans_out_in_a_packed_environment_through_real_airflow(mlp_home: Path, tmp_path: Path) -> None:
    assert importlib.util.find_spec("toolz") is None, "the test needs a package the Airflow environment lacks"
    ref = build(EnvSpec(python=running_python(), pip=["toolz==1.0.0"]))
    alias(ref, "demo/compute/toolz:latest")
    dags = write_dag(tmp_path, "compute_local", DAG)
    report = tmp_path / "report.json"
    env = airflow_env(tmp_path, dags, MLP_HOME=str(mlp_home), MLP_COMPUTE_BACKEND="local", COMPUTE_REPORT=str(report))
    assert_succeeded(dags_test("compute_local", env, timeout=300))
    results = sorted(json.loads(report.read_text()), key=lambda r: r["n"])
    assert [(r["n"], r["value"]) for r in results] == [(1, 2), (2, 5), (3, 10)]
    # Each ran in the environment's interpreter (its prefix is the rehydrated env), not Airflow's.
    assert all(str(mlp_home) in r["python"] and ref.id in r["python"] for r in results)
