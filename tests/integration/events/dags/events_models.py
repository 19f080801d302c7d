"""Test DAGs: a model publish announces mlp://model/ranker with a typed payload; a downstream maps it to Params."""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, Param, dag, task

from airflow_provider_mlp.decorators.events import EventTrigger
from airflow_provider_mlp.events import MODEL_PUBLISHED, emit

START = pendulum.datetime(2026, 1, 1, tz="UTC")
ranker = Asset("mlp://model/ranker")
on_ranker = EventTrigger(ranker, MODEL_PUBLISHED, parameters={"model_version": "version", "model_name": "model"})


@dag(
    dag_id="publish_ranker",
    schedule=None,
    start_date=START,
    catchup=False,
    params={"version": Param("1", type="string", description="version to publish")},
)
def publish_ranker() -> None:
    @task(outlets=[ranker])
    def publish(params: dict | None = None) -> dict:
        return emit(ranker, MODEL_PUBLISHED, model="ranker", version=str((params or {})["version"]))

    publish()


@on_ranker
@dag(
    dag_id="score_with_ranker",
    schedule=ranker,
    start_date=START,
    catchup=False,
    params={
        "model_version": Param("", type="string", description="model version to score with"),
        "model_name": Param("", type="string", description="model name"),
    },
)
def score_with_ranker() -> None:
    @task
    def score(params: dict | None = None) -> dict:
        return dict(params or {})

    @task
    def templated(value: str) -> str:
        return value

    score()
    templated("{{ params.model_version }}")


a, b, c = Asset("mlp://model/cond_a"), Asset("mlp://model/cond_b"), Asset("mlp://model/cond_c")


@dag(dag_id="conditional_consumer", schedule=a & (b | c), start_date=START, catchup=False)
def conditional_consumer() -> None:
    @task
    def consume() -> str:
        return "ran"

    consume()


publish_ranker()
score_with_ranker()
conditional_consumer()
