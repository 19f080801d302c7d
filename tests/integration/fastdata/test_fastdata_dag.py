"""A real Airflow runs the fan-out: plan shards -> mapped read+stage -> one commit with an Asset event."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from airflow_provider_mlp.demo.data import create_sample_table
from airflow_provider_mlp.fastdata import RUN_ID_PROPERTY, Table

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAG = textwrap.dedent(
    """
    from __future__ import annotations

    import pendulum
    from airflow.sdk import dag, task

    from airflow_provider_mlp.fastdata import Table
    from airflow_provider_mlp.operators.fastdata import IcebergCommitOperator, IcebergShardsOperator, stage_to_table


    @dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
    def fastdata_copy():
        plan = IcebergShardsOperator(task_id="plan", table="demo.events", target_bytes=1, row_filter="amount > 10")

        @task
        def copy(shard: dict) -> dict:
            rows = Table("demo.events").read(shard).to_arrow()
            return stage_to_table("demo.copy", rows, shard=shard)

        IcebergCommitOperator(task_id="commit", table="demo.copy", staged=copy.expand(shard=plan.output))


    fastdata_copy()
    """
)


def test_airflow_runs_the_sharded_copy(mlp_home: Path, tmp_path: Path) -> None:
    source = create_sample_table("demo.events", rows=5_000)
    source.catalog.create_table("demo.copy", schema=source.schema, partition_spec=source.spec)
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "fastdata_copy.py").write_text(DAG)
    env = {
        **os.environ,
        "MLP_HOME": str(mlp_home),
        "AIRFLOW_HOME": str(tmp_path / "airflow-home"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    airflow = str(Path(sys.executable).with_name("airflow"))
    migrate = subprocess.run([airflow, "db", "migrate"], env=env, capture_output=True, text=True, timeout=300)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    run = subprocess.run(
        [airflow, "dags", "test", "fastdata_copy"], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    copy = Table("demo.copy")
    expected = source.read(row_filter="amount > 10").num_rows
    assert copy.read().num_rows == expected
    snapshots = copy.snapshots()
    assert len(snapshots) == 1 and snapshots[0]["summary"][RUN_ID_PROPERTY].startswith("manual__")
