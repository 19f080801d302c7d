"""Use case 3, content decision making: a chain across three teams, each DAG started by the one before.

- ``mlp_content_engagement_etl`` (data team) is triggered with a partition key, the day (UI form's
  advanced options, or ``{"logical_date": null, "partition_key": "2026-06-14"}`` over the REST API), and
  appends that day's title engagement to ``content.title_engagement``. Its commit has no outlet: the
  table is another team's input, announced by that team's watcher, as a commit made by Spark or dbt
  would be.
- ``mlp_content_demand_model`` (forecasting team) runs on each new snapshot of that table through an
  ``AssetWatcher`` (``watched_table_asset``); the snapshot's payload fills its Params (snapshot id, the
  ETL's run id, the day from the snapshot summary). It fits tomorrow's demand per title on exactly that
  snapshot, writes ``content.title_demand`` and emits ``mlp://model/content-demand`` with a
  ``content.demand-forecast`` payload, keyed by the day (a watcher's run has no partition key: the day
  comes from the payload and is put back on the event).
- ``mlp_content_catalog`` (licensing team), triggered with the same partition key, writes the day's
  catalogue (availability, licence cost) to ``content.title_catalog``.
- ``mlp_content_slate`` (merchandising team) runs per day once the condition
  ``demand & (catalog | editorial)`` holds for that day's key: the day's forecast AND either the day's
  catalogue or the editors' picks for that day (a ``content.editorial-picks`` event on
  ``content://editorial/picks`` with the day as partition key, e.g. posted to the REST API's
  ``/api/v2/assets/events``). The payloads fill its Params (forecast version and snapshot, catalogue
  snapshot, pinned titles); without the day's catalogue it uses the newest earlier one. It writes the
  day's home-page slate to ``content.home_slates``
  and announces that table's new snapshot (an ``iceberg.snapshot`` event naming the slate's titles).

``MLP_CONTENT_WATCH_POLL_SECONDS`` (read when the DAGs are parsed; default 10) sets how often the
watcher looks at the engagement table.
"""

from __future__ import annotations

import os
from typing import Any

import pendulum
from airflow.sdk import Asset, Param, PartitionedAssetTimetable, PartitionedAtRuntime, dag, task

from airflow_provider_mlp.decorators.events import EventTrigger
from airflow_provider_mlp.demo.content_decisions import (
    CATALOG_TABLE,
    DAY_PROPERTY,
    DEFAULT_COST_WEIGHT,
    DEFAULT_HISTORY_DAYS,
    DEFAULT_MAX_PER_GENRE,
    DEFAULT_SLOTS,
    DEFAULT_TITLES,
    DEMAND_FORECAST,
    DEMAND_TABLE,
    EDITORIAL_PICKS,
    ENGAGEMENT_TABLE,
    SLATES_TABLE,
)
from airflow_provider_mlp.events import ICEBERG_SNAPSHOT
from airflow_provider_mlp.operators.fastdata import IcebergCommitOperator, iceberg_table_asset, stage_to_table
from airflow_provider_mlp.triggers.iceberg import watched_table_asset

START = pendulum.datetime(2026, 1, 1, tz="UTC")
TAGS = ["mlp", "example", "use-case", "events", "partitions"]
POLL_SECONDS = float(os.environ.get("MLP_CONTENT_WATCH_POLL_SECONDS", "10"))

# Only the daily ETL's appends (they carry the day property) start a forecast; backfills do not.
engagement = watched_table_asset(
    ENGAGEMENT_TABLE,
    poll_interval=POLL_SECONDS,
    name="content_title_engagement_snapshots",
    operations=["append"],
    require_properties={DAY_PROPERTY: "*"},
)
catalog = iceberg_table_asset(CATALOG_TABLE)
demand = Asset("mlp://model/content-demand")
editorial = Asset(name="content_editorial_picks", uri="content://editorial/picks")
home_slate = iceberg_table_asset(SLATES_TABLE)

on_snapshot = EventTrigger(
    engagement,
    ICEBERG_SNAPSHOT,
    parameters={"snapshot_id": "snapshot_id", "etl_run_id": "run_id", "day": f"summary.{DAY_PROPERTY}"},
)
on_forecast = EventTrigger(
    demand,
    DEMAND_FORECAST,
    parameters={"demand_version": "version", "demand_snapshot_id": "snapshot_id", "day": "day"},
)
on_catalog = EventTrigger(catalog, ICEBERG_SNAPSHOT, parameters={"catalog_snapshot_id": "snapshot_id"})
on_picks = EventTrigger(editorial, EDITORIAL_PICKS, parameters={"pinned": "title_ids"})


def _partition_day(dag_run: Any, dag_id: str) -> str:
    day = getattr(dag_run, "partition_key", None)
    if not day:
        raise ValueError(f"{dag_id} needs a partition key: the day, e.g. 2026-06-14")
    return str(day)


@dag(
    dag_id="mlp_content_engagement_etl",
    schedule=PartitionedAtRuntime(),
    start_date=START,
    catchup=False,
    tags=TAGS,
    doc_md=__doc__,
    params={
        "titles": Param(DEFAULT_TITLES, type="integer", minimum=1, description="titles in the catalogue"),
        "seed": Param(16, type="integer", description="seed of the generated engagement"),
    },
)
def mlp_content_engagement_etl() -> None:
    @task
    def extract_day(params: dict | None = None, dag_run: Any = None) -> dict:
        from airflow_provider_mlp.demo.content_decisions import engagement_rows

        params = params or {}
        day = _partition_day(dag_run, "mlp_content_engagement_etl")
        rows = engagement_rows(day, int(params["titles"]), int(params["seed"]))
        return stage_to_table(ENGAGEMENT_TABLE, rows, shard=0, create_if_missing=True, partition_by=["day"])

    # Re-running a day appends it once (the key is the day); no outlet: the watcher announces the table.
    IcebergCommitOperator(
        task_id="commit",
        table=ENGAGEMENT_TABLE,
        staged=extract_day(),
        idempotency_key="engagement/{{ dag_run.partition_key }}",
        snapshot_properties={DAY_PROPERTY: "{{ dag_run.partition_key }}"},
        outlets=[],
    )


@on_snapshot
@dag(
    dag_id="mlp_content_demand_model",
    schedule=engagement,
    start_date=START,
    catchup=False,
    max_active_runs=1,
    tags=TAGS,
    doc_md=__doc__,
    params={
        "snapshot_id": Param(None, type=["null", "integer"], description="engagement snapshot (from the event)"),
        "etl_run_id": Param(None, type=["null", "string"], description="run id of the ETL commit (from the event)"),
        "day": Param(None, type=["null", "string"], description="last day of engagement to use (from the event)"),
        "history_days": Param(DEFAULT_HISTORY_DAYS, type="integer", minimum=7, description="days the model sees"),
    },
)
def mlp_content_demand_model() -> None:
    @task(outlets=[demand])
    def fit_forecast(params: dict | None = None) -> dict:
        from airflow_provider_mlp.demo.content_decisions import fit_demand
        from airflow_provider_mlp.events import emit
        from airflow_provider_mlp.fastdata import Table

        params = params or {}
        if not params.get("day") or params.get("snapshot_id") is None:
            raise ValueError(
                f"mlp_content_demand_model runs on a snapshot of {ENGAGEMENT_TABLE} carrying {DAY_PROPERTY!r}; "
                f"got Params snapshot_id={params.get('snapshot_id')!r} day={params.get('day')!r}"
            )
        day, source = str(params["day"]), int(params["snapshot_id"])
        engagement_rows = Table(ENGAGEMENT_TABLE).read(snapshot_id=source).to_arrow()
        forecast = fit_demand(engagement_rows, day, history_days=int(params["history_days"]))
        staged = stage_to_table(DEMAND_TABLE, forecast, shard=0, create_if_missing=True, partition_by=["day"])
        snapshot = Table(DEMAND_TABLE).commit(
            staged, idempotency_key=f"demand/{day}/{source}", snapshot_properties={"demand.source-snapshot": source}
        )
        if snapshot is None:
            raise ValueError(f"{DEMAND_TABLE}: the forecast of {day} committed no snapshot")
        version = f"{day}-{source}"
        payload = emit(
            demand,
            DEMAND_FORECAST,
            partition_key=day,
            model="content-demand",
            version=version,
            day=day,
            for_day=forecast["for_day"][0].as_py(),
            table=DEMAND_TABLE,
            snapshot_id=int(snapshot),
            source_snapshot_id=source,
        )
        return {"params": dict(params), "event": payload, "titles": forecast.num_rows}

    fit_forecast()


@dag(
    dag_id="mlp_content_catalog",
    schedule=PartitionedAtRuntime(),
    start_date=START,
    catchup=False,
    tags=TAGS,
    doc_md=__doc__,
    params={
        "titles": Param(DEFAULT_TITLES, type="integer", minimum=1, description="titles in the catalogue"),
        "seed": Param(16, type="integer", description="seed of the generated catalogue"),
    },
)
def mlp_content_catalog() -> None:
    @task
    def licence_windows(params: dict | None = None, dag_run: Any = None) -> dict:
        from airflow_provider_mlp.demo.content_decisions import catalog_rows

        params = params or {}
        day = _partition_day(dag_run, "mlp_content_catalog")
        rows = catalog_rows(day, int(params["titles"]), int(params["seed"]))
        return stage_to_table(CATALOG_TABLE, rows, shard=0, create_if_missing=True, partition_by=["day"])

    # The commit's outlet event (catalog's Asset) carries the run's partition key: Airflow copies it.
    IcebergCommitOperator(
        task_id="commit",
        table=CATALOG_TABLE,
        staged=licence_windows(),
        idempotency_key="catalog/{{ dag_run.partition_key }}",
    )


@on_picks
@on_catalog
@on_forecast
@dag(
    dag_id="mlp_content_slate",
    schedule=PartitionedAssetTimetable(assets=demand & (catalog | editorial)),
    start_date=START,
    catchup=False,
    tags=TAGS,
    doc_md=__doc__,
    params={
        "day": Param(None, type=["null", "string"], description="data day of the forecast (from the event)"),
        "demand_version": Param(None, type=["null", "string"], description="demand model version (from the event)"),
        "demand_snapshot_id": Param(None, type=["null", "integer"], description="forecast snapshot (from the event)"),
        "catalog_snapshot_id": Param(None, type=["null", "integer"], description="catalogue snapshot (from the event)"),
        "pinned": Param([], type="array", items={"type": "integer"}, description="editors' picks (from the event)"),
        "slots": Param(DEFAULT_SLOTS, type="integer", minimum=1, description="titles on the home-page row"),
        "max_per_genre": Param(DEFAULT_MAX_PER_GENRE, type="integer", minimum=1, description="cap per genre"),
        "cost_weight": Param(DEFAULT_COST_WEIGHT, type="number", minimum=0, description="hours per unit of cost"),
    },
)
def mlp_content_slate() -> None:
    @task(outlets=[home_slate])
    def optimise(params: dict | None = None, dag_run: Any = None) -> dict:
        import pyarrow.compute as pc

        from airflow_provider_mlp.demo.content_decisions import latest_day, optimise_slate
        from airflow_provider_mlp.events import emit
        from airflow_provider_mlp.fastdata import Table

        params = params or {}
        day = _partition_day(dag_run, "mlp_content_slate")
        if params.get("day") not in (None, day):
            raise ValueError(f"the forecast's day {params['day']!r} is not this run's partition key {day!r}")
        if params.get("demand_snapshot_id") is None:
            raise ValueError(f"mlp_content_slate needs a forecast event of {demand.uri} (Param demand_snapshot_id)")
        forecast = Table(DEMAND_TABLE).read(snapshot_id=int(params["demand_snapshot_id"])).to_arrow()
        forecast = forecast.filter(pc.equal(forecast["day"], day))
        catalogue_table = Table(CATALOG_TABLE)
        catalog_snapshot = params.get("catalog_snapshot_id") or catalogue_table.current_snapshot_id
        catalogue = latest_day(catalogue_table.read(snapshot_id=int(catalog_snapshot)).to_arrow(), day)
        slate = optimise_slate(
            forecast,
            catalogue,
            slots=int(params["slots"]),
            max_per_genre=int(params["max_per_genre"]),
            cost_weight=float(params["cost_weight"]),
            demand_version=str(params.get("demand_version") or ""),
            pinned=[int(t) for t in params.get("pinned") or []],
        )
        staged = stage_to_table(SLATES_TABLE, slate, shard=0, create_if_missing=True, partition_by=["day"])
        snapshot = Table(SLATES_TABLE).commit(staged, idempotency_key=f"slate/{day}/{params.get('demand_version')}")
        title_ids = slate["title_id"].to_pylist()
        if snapshot is not None:
            emit(
                home_slate,
                ICEBERG_SNAPSHOT,
                table=SLATES_TABLE,
                snapshot_id=int(snapshot),
                operation="append",
                slate_day=slate["day"][0].as_py() if slate.num_rows else None,
                title_ids=title_ids,
            )
        return {
            "params": dict(params),
            "partition_key": day,
            "catalog_snapshot_id": int(catalog_snapshot),
            "catalog_day": catalogue["day"][0].as_py() if catalogue.num_rows else None,
            "title_ids": title_ids,
            "snapshot_id": snapshot,
        }

    optimise()


mlp_content_engagement_etl()
mlp_content_demand_model()
mlp_content_catalog()
mlp_content_slate()
