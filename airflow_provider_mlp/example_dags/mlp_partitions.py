"""A partition key carried from ETL to model to precompute on Airflow 3.3's partitioned assets.

- ``mlp_etl_daily_orders`` is triggered with a partition key (the day: UI form's advanced options, or
  ``{"logical_date": null, "partition_key": "2026-06-14"}`` over the REST API); it writes that day's rows
  through the provider's write path, and the commit's ``iceberg://`` event carries the run's key;
- ``mlp_train_demand`` runs once per key of that table (``PartitionedAssetTimetable``) and publishes the
  ``mlp://model/demand`` model of that day (a ``model.published`` event, version = the key);
- ``mlp_precompute_demand`` runs once per key of that model and precomputes that day's predictions
  under a key prefix naming the day.

Airflow copies a run's partition key onto every event its tasks emit, so no task passes it on by hand;
each task reads it from ``dag_run.partition_key``.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import Asset, PartitionedAssetTimetable, PartitionedAtRuntime, dag, task

from airflow_provider_mlp.events import MODEL_PUBLISHED, emit
from airflow_provider_mlp.operators.fastdata import IcebergCommitOperator, iceberg_table_asset, stage_to_table

START = pendulum.datetime(2026, 1, 1, tz="UTC")
TABLE = "sales.daily_orders"
daily_orders = iceberg_table_asset(TABLE)
demand_model = Asset("mlp://model/demand")


@dag(
    dag_id="mlp_etl_daily_orders",
    schedule=PartitionedAtRuntime(),
    start_date=START,
    catchup=False,
    tags=["mlp", "example", "events", "partitions"],
)
def mlp_etl_daily_orders() -> None:
    @task
    def stage_day(dag_run: Any = None) -> dict:
        import pyarrow as pa

        day = dag_run.partition_key
        if not day:
            raise ValueError("mlp_etl_daily_orders needs a partition key (the day, e.g. 2026-06-14)")
        rows = pa.table({"day": [day] * 3, "order_id": [1, 2, 3], "amount": [10.0, 12.5, 7.25]})
        return stage_to_table(TABLE, rows, shard=0, create_if_missing=True, partition_by=["day"])

    # Re-running a day commits its rows once: the key is the day, not the run.
    IcebergCommitOperator(
        task_id="commit", table=TABLE, staged=stage_day(), idempotency_key="orders/{{ dag_run.partition_key }}"
    )


@dag(
    dag_id="mlp_train_demand",
    schedule=PartitionedAssetTimetable(assets=daily_orders),
    start_date=START,
    catchup=False,
    tags=["mlp", "example", "events", "partitions"],
)
def mlp_train_demand() -> None:
    @task(outlets=[demand_model])
    def train(dag_run: Any = None) -> dict:
        day = dag_run.partition_key
        # A real trainer reads the day's rows: Table(TABLE).read(row_filter=f"day == '{day}'").
        return emit(demand_model, MODEL_PUBLISHED, model="demand", version=day)

    train()


@dag(
    dag_id="mlp_precompute_demand",
    schedule=PartitionedAssetTimetable(assets=demand_model),
    start_date=START,
    catchup=False,
    tags=["mlp", "example", "events", "partitions"],
)
def mlp_precompute_demand() -> None:
    @task
    def precompute(dag_run: Any = None, triggering_asset_events: Any = None) -> dict:
        day = dag_run.partition_key
        # The model event's payload says which model version to use; PublishToCacheOperator would write
        # the day's predictions under this prefix.
        events = [e for evs in (triggering_asset_events or {}).values() for e in evs]
        version = events[-1].extra.get("version") if events else None
        return {"partition_key": day, "model_version": version, "key_prefix": f"demand/{day}/"}

    precompute()


mlp_etl_daily_orders()
mlp_train_demand()
mlp_precompute_demand()
