"""Dynamic task mapping over Fast Data shard descriptors: 100 mapped @task.mlp tasks on the local
backend, through a real Airflow, each getting its own descriptor. (Reading shards inside mapped
@task.mlp tasks is test_retry_after_kill's; here each task only reports its descriptor, so the
test measures the fan-out, not 100 imports of pyiceberg.)"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from airflow_provider_mlp.demo.data import sample_events
from airflow_provider_mlp.fastdata import Table
from tests.support.airflow_runs import airflow_env, assert_succeeded, dags_test, write_dag

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SHARDS = 100

DAG = textwrap.dedent(
    """
    from __future__ import annotations

    import pendulum
    from airflow.sdk import dag, task

    from airflow_provider_mlp.operators.fastdata import IcebergShardsOperator


    @dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False, max_active_tasks=4)
    def fan_out():
        plan = IcebergShardsOperator(task_id="plan", table="demo.many", target_bytes=1)

        @task.mlp(backend="local")
        def count(shard: dict) -> dict:
            return {"shard": shard["shard_id"], "files": [f["path"] for f in shard["files"]]}

        @task
        def total(counts: list[dict]) -> None:
            import json
            import os

            with open(os.environ["FAN_OUT_REPORT"], "w") as fh:
                json.dump(list(counts), fh)

        total(count.expand(shard=plan.output))


    fan_out()
    """
)


def test_a_hundred_mapped_tasks_each_read_their_own_shard(mlp_home: Path, tmp_path: Path) -> None:
    events = sample_events(SHARDS * 20)
    catalog = Table("demo.events").catalog
    catalog.create_namespace_if_not_exists("demo")
    catalog.create_table("demo.many", schema=events.schema)
    table = Table("demo.many")
    staged = [table.stage(events.slice(i * 20, 20), shard_id=i, run_id="load") for i in range(SHARDS)]
    table.commit(staged, run_id="load")

    dags = write_dag(tmp_path, "fan_out", DAG)
    report = tmp_path / "report.json"
    env = airflow_env(tmp_path, dags, MLP_HOME=str(mlp_home), FAN_OUT_REPORT=str(report))
    assert_succeeded(dags_test("fan_out", env, timeout=600))
    counts = json.loads(report.read_text())
    assert len(counts) == SHARDS and len({c["shard"] for c in counts}) == SHARDS
    files = sorted(f for c in counts for f in c["files"])
    assert files == sorted(task.file.file_path for task in Table("demo.many").iceberg.scan().plan_files())
