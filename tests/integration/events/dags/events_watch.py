"""Test DAG: a pipeline scheduled on its table's watcher that commits to the same table without retriggering."""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from airflow_provider_mlp.decorators.events import EventTrigger
from airflow_provider_mlp.events import ICEBERG_SNAPSHOT
from airflow_provider_mlp.triggers.iceberg import watched_table_asset

orders = watched_table_asset(
    "events.orders", poll_interval=1, name="events_orders", exclude_properties={"mlp.run-id": "enrich_orders/*"}
)
on_orders = EventTrigger(orders, ICEBERG_SNAPSHOT, parameters={"snapshot_id": "snapshot_id", "writer": "run_id"})


@on_orders
@dag(
    dag_id="enrich_orders",
    schedule=orders,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params={
        "snapshot_id": Param(None, type=["null", "integer"], description="the snapshot that triggered this run"),
        "writer": Param(None, type=["null", "string"], description="mlp.run-id of the triggering commit"),
    },
)
def enrich_orders() -> None:
    @task
    def enrich(params: dict | None = None, run_id: str | None = None) -> dict:
        import pyarrow as pa

        from airflow_provider_mlp.fastdata import Table

        table = Table("events.orders")
        own = f"enrich_orders/{run_id}"
        staged = table.stage(pa.table({"order_id": [0], "amount": [0.0]}), shard_id=0, run_id=own)
        written = table.commit(staged, run_id=own)
        return {"params": dict(params or {}), "written": written}

    enrich()


enrich_orders()
