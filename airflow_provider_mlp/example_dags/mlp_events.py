"""Events between teams: a model publish with a typed payload, a consumer whose Params come from it, and a
conditional schedule across teams (``features & (ranker | fallback)``).

- ``mlp_publish_model`` (trigger it from the UI form or the REST API) emits ``mlp://model/<name>`` with a
  ``model.published`` payload checked against its schema;
- ``mlp_score_with_model`` runs on that asset; the payload's ``version`` and ``model`` fill its Params;
- ``mlp_rank_daily`` runs once the content team's features table has a new snapshot AND either model
  was published since its last run.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, Param, dag, task

from airflow_provider_mlp.decorators.events import EventTrigger
from airflow_provider_mlp.events import MODEL_PUBLISHED, emit

START = pendulum.datetime(2026, 1, 1, tz="UTC")
ranker = Asset("mlp://model/ranker")
fallback = Asset("mlp://model/fallback")
features = Asset("iceberg://mlp/content/features")
on_ranker = EventTrigger(ranker, MODEL_PUBLISHED, parameters={"model_version": "version", "model_name": "model"})


@dag(
    dag_id="mlp_publish_model",
    schedule=None,
    start_date=START,
    catchup=False,
    tags=["mlp", "example", "events"],
    params={
        "version": Param("1", type="string", description="the model version to announce"),
        # Nullable: the form marks a plain string Param as required, even with an empty default.
        "uri": Param(None, type=["null", "string"], description="where the model's artifacts are (optional)"),
    },
)
def mlp_publish_model() -> None:
    @task(outlets=[ranker])
    def publish(params: dict | None = None) -> dict:
        params = params or {}
        return emit(
            ranker, MODEL_PUBLISHED, model="ranker", version=str(params["version"]), uri=params.get("uri") or None
        )

    publish()


@on_ranker
@dag(
    dag_id="mlp_score_with_model",
    schedule=ranker,
    start_date=START,
    catchup=False,
    tags=["mlp", "example", "events"],
    params={
        "model_version": Param("", type="string", description="model version (filled from the event's payload)"),
        "model_name": Param("ranker", type="string", description="model name (filled from the event's payload)"),
    },
)
def mlp_score_with_model() -> None:
    @task
    def score(params: dict | None = None) -> str:
        params = params or {}
        print(f"scoring with {params['model_name']} version {params['model_version']}")
        return str(params["model_version"])

    score()


@dag(
    dag_id="mlp_rank_daily",
    schedule=features & (ranker | fallback),
    start_date=START,
    catchup=False,
    tags=["mlp", "example", "events"],
)
def mlp_rank_daily() -> None:
    @task
    def rank(triggering_asset_events: dict | None = None) -> list[str]:
        return sorted(asset.uri for asset in (triggering_asset_events or {}))

    rank()


mlp_publish_model()
mlp_score_with_model()
mlp_rank_daily()
