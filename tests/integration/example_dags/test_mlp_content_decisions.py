"""Use case 3 through a real Airflow 3 (scheduler, triggerer, dag-processor, API server; one for the chain).

The test triggers only the producers (the ETL and the catalogue with the day as partition key; the next
day, the ETL and an editors' picks event); Airflow itself starts the demand model (from the engagement
table's watcher) and then the slate (from its condition ``demand & (catalog | editorial)`` on that day's
key), once per day.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest

from airflow_provider_mlp.demo import content_decisions as content
from tests.support.airflow_cluster import AirflowCluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAG_FILE = Path(content.__file__).resolve().parents[1] / "example_dags" / "mlp_content_decisions.py"
DAG_IDS = ["mlp_content_engagement_etl", "mlp_content_demand_model", "mlp_content_catalog", "mlp_content_slate"]
DAY = "2026-06-14"
NEXT_DAY = "2026-06-15"
TITLES = 120


@pytest.fixture(scope="module")
def content_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("content-mlp-home")
    with pytest.MonkeyPatch.context() as patch:  # module-scoped: the function-scoped monkeypatch cannot
        patch.setenv("MLP_HOME", str(home))
        content.backfill_history(DAY, titles=TITLES)
        yield home


@pytest.fixture(scope="module")
def airflow(start_airflow: Any, content_home: Path, tmp_path_factory: pytest.TempPathFactory) -> AirflowCluster:
    dags = tmp_path_factory.mktemp("content-dags")
    shutil.copy(DAG_FILE, dags / DAG_FILE.name)
    env = {"MLP_HOME": str(content_home), "MLP_CONTENT_WATCH_POLL_SECONDS": "1"}
    cluster: AirflowCluster = start_airflow(dags, env=env)
    cluster.wait_for_dags(DAG_IDS)
    return cluster


def _trigger(airflow: AirflowCluster, dag_id: str, day: str) -> str:
    conf = {"titles": TITLES}
    body = {"logical_date": None, "partition_key": day, "conf": conf}
    status, run = airflow.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)
    assert status == 200, run
    return str(run["dag_run_id"])


def _succeeded(runs: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(runs) == 1 and runs[0]["state"] == "success", runs
    return runs[0]


def test_etl_then_watcher_then_condition_schedule_the_chain_with_payloads_as_params(
    airflow: AirflowCluster, content_home: Path
) -> None:
    from airflow_provider_mlp.fastdata import Table

    started = time.monotonic()
    airflow.wait_for_asset("iceberg://mlp/content/title_engagement")
    time.sleep(2)  # the triggerer picks the watcher up (the backfill's snapshot is filtered out)

    etl_run = _trigger(airflow, "mlp_content_engagement_etl", DAY)
    _succeeded(airflow.wait_for_runs("mlp_content_engagement_etl", 1))
    engagement = Table(content.ENGAGEMENT_TABLE)
    head = engagement.current_snapshot_id
    assert engagement.snapshots()[-1]["summary"][content.DAY_PROPERTY] == DAY

    # Airflow starts the demand model from the watcher; the snapshot's payload filled its Params.
    demand_run = _succeeded(airflow.wait_for_runs("mlp_content_demand_model", 1, timeout=120))
    assert demand_run["run_type"] == "asset_triggered", demand_run
    demand_out = airflow.xcom("mlp_content_demand_model", demand_run["dag_run_id"], "fit_forecast")
    assert demand_out["params"]["snapshot_id"] == head
    assert demand_out["params"]["etl_run_id"] == etl_run
    assert demand_out["params"]["day"] == DAY
    event = demand_out["event"]
    assert event["version"] == f"{DAY}-{head}" and event["source_snapshot_id"] == head
    forecast = Table(content.DEMAND_TABLE).read(snapshot_id=event["snapshot_id"]).to_arrow()
    assert forecast.num_rows == TITLES == demand_out["titles"]
    assert set(forecast["for_day"].to_pylist()) == {"2026-06-15"}
    # The forecast is the model fitted on exactly the watched snapshot.
    expected = content.fit_demand(engagement.read(snapshot_id=head).to_arrow(), DAY)
    assert forecast.sort_by("title_id").to_pylist() == expected.sort_by("title_id").to_pylist()

    # The forecast alone does not satisfy demand & (catalog | editorial): no slate before the catalogue run.
    assert airflow.runs("mlp_content_slate") == []
    _trigger(airflow, "mlp_content_catalog", DAY)
    catalog_run = _succeeded(airflow.wait_for_runs("mlp_content_catalog", 1))
    slate_run = _succeeded(airflow.wait_for_runs("mlp_content_slate", 1, timeout=120))
    assert slate_run["run_type"] == "asset_triggered", slate_run
    queued, catalogued = (
        dt.datetime.fromisoformat(r[k]) for r, k in ((slate_run, "queued_at"), (catalog_run, "start_date"))
    )
    assert queued >= catalogued, (catalog_run, slate_run)
    # The day travelled as the partition key: ETL run -> (watcher payload) -> forecast event -> slate run.
    assert slate_run.get("partition_key") == DAY, slate_run
    slate_out = airflow.xcom("mlp_content_slate", slate_run["dag_run_id"], "optimise")
    catalog_head = Table(content.CATALOG_TABLE).current_snapshot_id
    assert slate_out["partition_key"] == DAY
    assert slate_out["params"]["day"] == DAY
    assert slate_out["params"]["demand_version"] == event["version"]
    assert slate_out["params"]["demand_snapshot_id"] == event["snapshot_id"]
    assert slate_out["params"]["catalog_snapshot_id"] == catalog_head

    slates = Table(content.SLATES_TABLE).read().to_arrow().sort_by("rank")
    assert not any(slates["pinned"].to_pylist())
    assert slates["rank"].to_pylist() == list(range(1, content.DEFAULT_SLOTS + 1))
    assert slates["title_id"].to_pylist() == slate_out["title_ids"]
    assert set(slates["day"].to_pylist()) == {"2026-06-15"}
    assert set(slates["demand_version"].to_pylist()) == {event["version"]}
    genres = slates["genre"].to_pylist()
    assert max(genres.count(g) for g in set(genres)) <= content.DEFAULT_MAX_PER_GENRE
    catalogue = content.catalog_rows(DAY, TITLES)
    available = set(pc.filter(catalogue["title_id"], catalogue["available"]).to_pylist())
    assert set(slates["title_id"].to_pylist()) <= available
    direct = content.optimise_slate(forecast, catalogue, demand_version=event["version"])
    assert slates["title_id"].to_pylist() == direct["title_id"].to_pylist()

    # The next day: the ETL again, then the editors' picks instead of a catalogue (the condition's other
    # branch), posted to the REST API with the day as partition key as another team's tool would.
    _trigger(airflow, "mlp_content_engagement_etl", NEXT_DAY)
    demand_runs = airflow.wait_for_runs("mlp_content_demand_model", 2, timeout=120)
    assert [r["state"] for r in demand_runs] == ["success", "success"], demand_runs
    next_event = airflow.xcom("mlp_content_demand_model", demand_runs[-1]["dag_run_id"], "fit_forecast")["event"]
    assert (
        next_event["day"] == NEXT_DAY and next_event["source_snapshot_id"] == engagement.refresh().current_snapshot_id
    )
    forecast = Table(content.DEMAND_TABLE).read(snapshot_id=next_event["snapshot_id"]).to_arrow()
    forecast = forecast.filter(pc.equal(forecast["day"], NEXT_DAY))
    # Two titles no optimiser would pick: the lowest-value available ones.
    unpinned = content.optimise_slate(forecast, catalogue, slots=TITLES, max_per_genre=TITLES)
    picks = unpinned["title_id"].to_pylist()[-2:]
    picks_id = airflow.wait_for_asset("content://editorial/picks")
    extra = {"mlp.event": "content.editorial-picks", "mlp.schema": 1, "title_ids": picks, "editor": "ana"}
    status, body = airflow.api(
        "POST", "/api/v2/assets/events", {"asset_id": picks_id, "partition_key": NEXT_DAY, "extra": extra}
    )
    assert status == 200, body
    slate_runs = airflow.wait_for_runs("mlp_content_slate", 2, timeout=120)
    assert slate_runs[-1]["state"] == "success" and slate_runs[-1].get("partition_key") == NEXT_DAY, slate_runs
    second = airflow.xcom("mlp_content_slate", slate_runs[-1]["dag_run_id"], "optimise")
    assert second["params"]["pinned"] == picks and second["params"]["demand_version"] == next_event["version"]
    assert second["catalog_day"] == DAY  # no catalogue for the next day yet: the newest earlier one
    slates = Table(content.SLATES_TABLE).read().to_arrow()
    slates = slates.filter(pc.equal(slates["day"], "2026-06-16")).sort_by("rank")
    assert slates["title_id"].to_pylist()[:2] == picks and slates["pinned"].to_pylist()[:3] == [True, True, False]
    direct = content.optimise_slate(forecast, catalogue, demand_version=next_event["version"], pinned=picks)
    assert slates["title_id"].to_pylist() == direct["title_id"].to_pylist() == second["title_ids"]

    # Each producer announced once per day, so each consumer ran once per day.
    time.sleep(2)
    assert len(airflow.runs("mlp_content_demand_model")) == 2
    assert len(airflow.runs("mlp_content_slate")) == 2
    for dag_id in DAG_IDS:
        for run in airflow.runs(dag_id):
            took = dt.datetime.fromisoformat(run["end_date"]) - dt.datetime.fromisoformat(run["start_date"])
            print(f"{dag_id} {run['dag_run_id']} key={run.get('partition_key')}: {took.total_seconds():.1f}s")
    print(f"use case 3 chain (ETL -> watcher -> demand -> catalogue -> slate): {time.monotonic() - started:.1f}s")
