"""PublishToCacheOperator in a real Airflow run (`airflow dags test`): the task publishes an Iceberg table
to memcached (servers from MLP_MEMCACHED_SERVERS, the embedded default), a downstream task of the same run
serves it with CacheReader, and the version records the DAG id and run id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pytest

from airflow_provider_mlp.fastdata import Table
from airflow_provider_mlp.fastdata.catalog import default_catalog
from airflow_provider_mlp.precompute import CacheNamespace
from tests.support.memcached import running_memcached

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAG = textwrap.dedent(
    """
    from __future__ import annotations

    import json
    import os

    import pendulum
    from airflow.sdk import dag, task

    from airflow_provider_mlp.operators.precompute import PublishToCacheOperator


    @dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
    def content_perf_cache():
        published = PublishToCacheOperator(
            task_id="publish", table="perf.daily_aggregates", key=["title_id", "country"],
            values=["views", "hours"], namespace="content-perf", keep_versions=3,
        )

        @task
        def serve(result: dict) -> None:
            from airflow_provider_mlp.precompute import CacheReader

            with CacheReader("content-perf") as reader:
                rows = reader.get_many([(1, "US"), (2, "FR"), (9, "XX")])
            with open(os.environ["MLP_TEST_RESULT"], "w") as fh:
                json.dump({"result": result, "rows": {f"{k[0]}/{k[1]}": v for k, v in rows.items()}}, fh)

        serve(published.output)


    content_perf_cache()
    """
)


def test_airflow_runs_the_publish_and_a_reader_downstream(mlp_home: Path, tmp_path: Path) -> None:
    rows = pa.table(
        {"title_id": [1, 2, 3], "country": ["US", "FR", "BR"], "views": [10, 20, 30], "hours": [0.5, 1.0, 1.5]}
    )
    catalog = default_catalog()
    catalog.create_namespace("perf")
    catalog.create_table("perf.daily_aggregates", schema=rows.schema)
    table = Table("perf.daily_aggregates")
    table.commit(table.stage(rows, shard_id=0, run_id="load"), run_id="load")
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "content_perf_cache.py").write_text(DAG)
    with running_memcached(1) as (server,):
        env = {
            **os.environ,
            "MLP_HOME": str(mlp_home),
            "MLP_MEMCACHED_SERVERS": server.address,
            "AIRFLOW_HOME": str(tmp_path / "airflow-home"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "MLP_TEST_RESULT": str(tmp_path / "result.json"),
        }
        airflow = str(Path(sys.executable).with_name("airflow"))
        migrate = subprocess.run([airflow, "db", "migrate"], env=env, capture_output=True, text=True, timeout=300)
        assert migrate.returncode == 0, migrate.stderr[-3000:]
        run = subprocess.run(
            [airflow, "dags", "test", "content_perf_cache"], env=env, capture_output=True, text=True, timeout=300
        )
        assert run.returncode == 0 and "state=failed" not in run.stdout + run.stderr, (
            run.stdout[-3000:] + run.stderr[-3000:]
        )
        with CacheNamespace("content-perf", server.address) as ns:
            meta = ns.current()
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["rows"] == {"1/US": {"views": 10, "hours": 0.5}, "2/FR": {"views": 20, "hours": 1.0}}
    assert result["result"]["rows"] == 3 and result["result"]["switched"]
    assert meta["dag_id"] == "content_perf_cache" and meta["run_id"].startswith("manual__")
    assert meta["source"]["snapshot_id"] == table.refresh().current_snapshot_id
