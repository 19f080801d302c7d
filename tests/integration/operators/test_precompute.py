"""PublishToCacheOperator.execute against an Iceberg table and real memcached, through an Airflow connection."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from airflow_provider_mlp.fastdata import Table
from airflow_provider_mlp.fastdata.catalog import default_catalog
from airflow_provider_mlp.operators.precompute import PublishToCacheOperator
from airflow_provider_mlp.precompute import CacheNamespace, CacheReader, DuplicateKeyError
from tests.support.memcached import MemcachedProcess, running_memcached

pytestmark = pytest.mark.integration


@pytest.fixture
def memcached() -> MemcachedProcess:
    with running_memcached(1) as servers:
        yield servers[0]


def _daily_table() -> Table:
    rows = pa.table(
        {"title_id": [1, 1, 2], "country": ["US", "FR", "US"], "views": [10, 20, 30], "hours": [1.5, 2.5, 3.5]}
    )
    catalog = default_catalog()
    catalog.create_namespace("perf")
    catalog.create_table("perf.daily_aggregates", schema=rows.schema)
    table = Table("perf.daily_aggregates")
    table.commit(table.stage(rows, shard_id=0, run_id="load"), run_id="load")
    return table.refresh()


class _Dag:
    dag_id = "content_perf"


def test_execute_publishes_through_the_connection_and_records_the_run(
    mlp_home: Path, memcached: MemcachedProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = _daily_table()
    conn = {"conn_type": "mlp_memcached", "extra": {"servers": memcached.address, "timeout": "3"}}
    monkeypatch.setenv("AIRFLOW_CONN_CACHE", json.dumps(conn))
    op = PublishToCacheOperator(
        task_id="publish",
        table="perf.daily_aggregates",
        key=["title_id", "country"],
        values=["views", "hours"],
        namespace="content-perf",
        keep_versions=3,
        mlp_memcached_conn_id="cache",
    )
    result = op.execute(context={"run_id": "scheduled__2024-05-01", "dag": _Dag()})  # type: ignore[arg-type]
    assert result["rows"] == 3 and result["switched"] and json.loads(json.dumps(result)) == result
    with CacheNamespace("content-perf", memcached.address) as ns:
        meta = ns.current()
    assert (meta["dag_id"], meta["run_id"]) == ("content_perf", "scheduled__2024-05-01")
    assert (
        meta["source"]["table"] == "perf.daily_aggregates"
        and meta["source"]["snapshot_id"] == table.current_snapshot_id
    )
    with CacheReader("content-perf", memcached.address) as reader:
        assert reader.get_many([(1, "FR"), (2, "US")]) == {
            (1, "FR"): {"views": 20, "hours": 2.5},
            (2, "US"): {"views": 30, "hours": 3.5},
        }


def test_duplicate_keys_fail_the_task(mlp_home: Path, memcached: MemcachedProcess) -> None:
    _daily_table()
    op = PublishToCacheOperator(
        task_id="publish",
        table="perf.daily_aggregates",
        key="title_id",
        values=["views"],
        namespace="by-title",
        servers=memcached.address,
    )
    with pytest.raises(DuplicateKeyError, match="key\\(s\\) 1 appear more than once"):
        op.execute(context={"run_id": "r"})  # type: ignore[arg-type]
