"""BuildEnvironmentOperator builds for real at execution time and returns the env id through XCom."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_mlp.operators.environment import BuildEnvironmentOperator
from env_builder.rehydrate import ensure
from env_builder.store import EnvStore
from tests.integration.env_builder.conftest import PY, BuiltEnv
from tests.support.s3_server import S3Server

pytestmark = pytest.mark.integration


class _RecordingTaskInstance:
    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def test_execute_builds_aliases_and_returns_the_env_id(six_env: BuiltEnv, store_copy: str, tmp_path: Any) -> None:
    op = BuildEnvironmentOperator(
        task_id="build_explainer_env",
        spec={"extends": "ranking/model-a@latest", "pip": ["idna=={{ params.idna }}"]},
        name="ranking/explainer-{{ params.model_type }}-{{ run_id }}",
        store=store_copy,
    )
    EnvStore.open(store_copy).set_alias("ranking/model-a:latest", six_env.ref.id)
    ti = _RecordingTaskInstance()
    context: dict[str, Any] = {
        "params": {"model_type": "xgb", "idna": "3.10"},
        "run_id": "manual__2026-01-01T00:00:00+00:00",
        "ti": ti,
    }
    op.render_template_fields(context)  # type: ignore[arg-type]
    env_id = op.execute(context)  # type: ignore[arg-type]

    assert ti.xcom["alias"] == "ranking/default/explainer-xgb-manual__2026-01-01T00-00-00-00-00:latest"
    assert ti.xcom["env"]["id"] == env_id
    store = EnvStore.open(store_copy)
    assert store.resolve(ti.xcom["alias"]) == env_id
    assert dict(map(tuple, store.manifest(env_id)["lock"]["packages"])) == {"idna": "3.10", "six": "1.17.0"}
    # A downstream task in the same run uses the environment that did not exist at deploy time.
    env = ensure(env_id, store=store_copy, cache_dir=tmp_path / "cache")
    assert (env.path / "lib" / f"python{PY}" / "site-packages" / "idna").is_dir()


def test_execute_reaches_an_s3_store_through_an_object_store_connection(
    six_env: BuiltEnv, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    s3_server.create_bucket("mlp-envs-operator-conn")
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLP_ENVS_S3", s3_server.object_store_connection("s3://mlp-envs-operator-conn/envs")
    )
    op = BuildEnvironmentOperator(
        task_id="build_on_s3",
        spec=list(six_env.spec.pip),
        name="ranking/six-on-s3",
        mlp_object_store_conn_id="mlp_envs_s3",
    )
    ti = _RecordingTaskInstance()
    env_id = op.execute({"ti": ti, "params": {}, "run_id": "r"})  # type: ignore[arg-type]

    assert env_id == six_env.ref.id
    store = EnvStore.open("s3://mlp-envs-operator-conn/envs", s3_server.storage_options())
    assert store.list_envs() == [env_id]
    assert store.resolve("ranking/six-on-s3:latest") == env_id
