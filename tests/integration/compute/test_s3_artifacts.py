"""Payloads and results through an S3-compatible artifact store (the moto server on 127.0.0.1),
reached through an mlp_object_store connection, on the local backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_provider_mlp.compute.work import RESULT_KIND, load_result
from airflow_provider_mlp.operators.compute import MlpPodOperator
from airflow_provider_mlp.stores import open_filesystem
from tests.support.airflow_runs import TaskInstanceStub
from tests.support.s3_server import S3Server

pytestmark = pytest.mark.integration


def table_of(n: int) -> Any:
    import pyarrow as pa

    return pa.table({"n": list(range(n))})


def test_work_and_results_travel_through_s3(
    s3_server: S3Server, mlp_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_server.create_bucket("mlp-artifacts")
    monkeypatch.setenv("AIRFLOW_CONN_MLP_ARTIFACTS", s3_server.object_store_connection("s3://mlp-artifacts/mlp"))
    op = MlpPodOperator(
        task_id="table",
        python_callable=table_of,
        op_args=[3],
        backend="local",
        mlp_object_store_conn_id="mlp_artifacts",
    )
    reference = op.execute({"ti": TaskInstanceStub("table"), "run_id": "manual__s3"})  # type: ignore[arg-type]

    assert reference["kind"] == RESULT_KIND and reference["uri"].startswith("s3://mlp-artifacts/mlp/compute/")
    options = s3_server.storage_options()
    assert load_result(reference, options).column("n").to_pylist() == [0, 1, 2]
    fs, _ = open_filesystem("s3://mlp-artifacts", options)
    stored = sorted(p.rsplit("/", 1)[-1] for p in fs.find("mlp-artifacts/mlp/compute"))
    assert stored == ["payload.pkl", "result"]


def training_result() -> dict[str, Any]:
    import cloudpickle

    return {"model": cloudpickle.dumps({"weights": [1, 2]}), "metrics": {"auc": 0.9}}


def test_a_training_result_in_s3_is_published_with_the_connections_credentials(
    s3_server: S3Server, mlp_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_mlp.operators.serving import PublishModelOperator
    from airflow_provider_mlp.serving import models

    s3_server.create_bucket("mlp-models")
    monkeypatch.setenv("AIRFLOW_CONN_MLP_ARTIFACTS", s3_server.object_store_connection("s3://mlp-models/mlp"))
    # Only the connection knows the credentials: none in the environment.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    train = MlpPodOperator(
        task_id="train", python_callable=training_result, backend="local", mlp_object_store_conn_id="mlp_artifacts"
    )
    reference = train.execute({"ti": TaskInstanceStub("train"), "run_id": "manual__s3"})  # type: ignore[arg-type]
    assert reference["kind"] == RESULT_KIND and reference["uri"].startswith("s3://mlp-models/")

    saved: list[tuple[Any, models.ModelRecord]] = []
    monkeypatch.setattr(models, "save_model", lambda model, record: saved.append((model, record)) or "ranker:v1")
    publish = PublishModelOperator(
        task_id="publish", model_name="ranker", model=reference, mlp_object_store_conn_id="mlp_artifacts"
    )
    publish.execute({"run_id": "manual__s3", "outlet_events": _OutletEvents()})  # type: ignore[arg-type]
    [(model, record)] = saved
    assert isinstance(model, models.PickledModel) and record.metrics == {"auc": 0.9}


class _OutletEvents(dict):
    def __missing__(self, key: Any) -> Any:
        from types import SimpleNamespace

        self[key] = SimpleNamespace(extra={}, add=lambda *args, **kwargs: None)
        return self[key]
