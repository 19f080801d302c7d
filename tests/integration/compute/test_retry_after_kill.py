"""A pod killed mid-shard is retried and the commit holds exactly one copy of each row: staged
files are named by (table, run, shard), so the retry rewrites what the killed try began."""

from __future__ import annotations

import os
import sqlite3
import sys
import textwrap
from pathlib import Path

import pytest

from airflow_provider_mlp.demo.data import create_sample_table
from airflow_provider_mlp.fastdata import Table
from tests.support.airflow_runs import airflow_env, dags_test, write_dag
from tests.support.k8s_api_server import K8sApiServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAG = textwrap.dedent(
    """
    from __future__ import annotations

    import datetime

    import pendulum
    from airflow.sdk import dag, task

    from airflow_provider_mlp.operators.fastdata import IcebergCommitOperator, IcebergShardsOperator


    @dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
    def retry_after_kill():
        plan = IcebergShardsOperator(task_id="plan", table="demo.events", target_bytes=1)

        @task.mlp(
            backend="kubernetes",
            image="airflow-provider-mlp-runtime:test",
            env_vars={{"PATH": {path!r}, "MLP_HOME": {home!r}, "KILL_MARKERS": {markers!r}}},
            retries=1,
            retry_delay=datetime.timedelta(0),
            startup_check_interval_seconds=1,
        )
        def copy(shard: dict, run_id: str | None = None) -> dict:
            import os
            import signal
            from pathlib import Path

            from airflow_provider_mlp.fastdata import Table

            rows = Table("demo.events").read(shard).to_arrow()
            staged = Table("demo.copy").stage(rows, shard_id=shard["shard_id"], run_id=run_id)
            marker = Path(os.environ["KILL_MARKERS"]) / "killed"
            try:
                marker.touch(exist_ok=False)  # the first shard to get here, once
            except FileExistsError:
                return staged
            os.kill(os.getpid(), signal.SIGKILL)  # the node dies after the shard's files were written

        IcebergCommitOperator(task_id="commit", table="demo.copy", staged=copy.expand(shard=plan.output))


    retry_after_kill()
    """
)


def test_a_killed_pods_retry_leaves_exactly_one_copy_of_each_row(
    k8s_api_server: K8sApiServer, mlp_home: Path, tmp_path: Path
) -> None:
    source = create_sample_table("demo.events", rows=4_000)
    source.catalog.create_table("demo.copy", schema=source.schema, partition_spec=source.spec)
    markers = tmp_path / "markers"
    markers.mkdir()
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"
    dags = write_dag(tmp_path, "retry_after_kill", DAG.format(path=path, home=str(mlp_home), markers=str(markers)))
    env = airflow_env(tmp_path, dags, MLP_HOME=str(mlp_home), **k8s_api_server.airflow_connection_env())
    run = dags_test("retry_after_kill", env)
    output = run.stdout + run.stderr
    with sqlite3.connect(Path(env["AIRFLOW_HOME"]) / "airflow.db") as db:
        tries = db.execute("select task_id, map_index, state, try_number from task_instance").fetchall()
    assert {state for _, _, state, _ in tries} == {"success"}, output[-6000:]
    assert list(markers.iterdir()), "no shard was killed: the test did not test a retry"
    assert any(task == "copy" and try_number == 2 for task, _, _, try_number in tries), tries
    copied = Table("demo.copy").read().to_arrow()
    expected = source.read().to_arrow()
    assert copied.num_rows == expected.num_rows
    assert sorted(copied.column("event_id").to_pylist()) == sorted(expected.column("event_id").to_pylist())
