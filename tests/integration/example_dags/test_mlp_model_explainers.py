"""Use case 2 through a real Airflow (scheduler, dag-processor, triggerer, api-server; LocalExecutor): a
training DAG run publishes a model, its ``mlp://model/...`` event makes the scheduler start the explainer
DAG, which explains the model in the model's environment plus eli5; then the same for the second team's model.

Asserted on what the runs left: the BentoML model store (a subprocess reads it: BentoML resolves
BENTOML_HOME once per process), the environment store's locks and aliases, and Airflow's run records.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import urllib.parse
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from airflow_provider_mlp.demo.explainers import (
    EXPLAINER_DAG_ID,
    EXPLAINER_PIP,
    INFORMATIVE_FEATURE,
    MODEL_TYPES,
    NOISE_FEATURES,
    explainer_model_name,
)
from airflow_provider_mlp.demo.runner import example_dags_folder
from tests.support.airflow_cluster import AirflowCluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROWS = 8_000

# Reads the BentoML store in its own process (the store is found through BENTOML_HOME at import).
INSPECT = textwrap.dedent(
    """
    import json, sys
    import bentoml

    out = {}
    for model in bentoml.models.list():
        info = model.info
        out.setdefault(model.tag.name, []).append(
            {"tag": str(model.tag), "labels": dict(info.labels), "metadata": dict(info.metadata)}
        )
    json.dump(out, sys.stdout)
    """
)


@pytest.fixture(scope="module")
def explainer_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    home = tmp_path_factory.mktemp("explainers-mlp-home")
    env = {
        "MLP_HOME": str(home / "mlp"),
        "MLP_ENV_STORE": str(home / "mlp" / "envs"),
        "MLP_COMPUTE_BACKEND": "local",
        "BENTOML_HOME": str(home / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
    }
    with pytest.MonkeyPatch.context() as patch:  # module-scoped: the function-scoped monkeypatch cannot
        for key, value in env.items():
            patch.setenv(key, value)
        from airflow_provider_mlp.demo.explainers import create_content_features

        create_content_features(rows=ROWS)
        yield env


@pytest.fixture(scope="module")
def airflow(start_airflow: Any, explainer_home: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Any:
    # Only this use case's DAGs: the other examples' schedules and watchers stay out of the measurement.
    dags = tmp_path_factory.mktemp("explainer-dags")
    shutil.copy(example_dags_folder() / "mlp_model_explainers.py", dags)
    cluster: AirflowCluster = start_airflow(dags, env=explainer_home)
    cluster.wait_for_dags([*(spec["dag_id"] for spec in MODEL_TYPES.values()), EXPLAINER_DAG_ID])
    return cluster


def _seconds(run: dict[str, Any]) -> float:
    start, end = (datetime.fromisoformat(run[key].replace("Z", "+00:00")) for key in ("start_date", "end_date"))
    return (end - start).total_seconds()


def _task_seconds(airflow: AirflowCluster, dag_id: str, run_id: str, task_id: str) -> list[float]:
    body = airflow.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=100")
    return [float(ti["duration"] or 0) for ti in body["task_instances"] if ti["task_id"] == task_id]


def _trigger_and_wait(airflow: AirflowCluster, dag_id: str, timeout: float) -> dict[str, Any]:
    before = len(airflow.runs(dag_id))
    status, body = airflow.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None})
    assert status == 200, body
    runs = airflow.wait_for_runs(dag_id, before + 1, timeout=timeout)
    run = next(r for r in runs if r["dag_run_id"] == body["dag_run_id"])
    assert run["state"] == "success", (run, airflow.task_log(dag_id, run["dag_run_id"], "train")[-3000:])
    return run


def _events(airflow: AirflowCluster, dag_id: str, run_id: str, uri: str) -> list[dict[str, Any]]:
    """The asset events run ``run_id`` of ``dag_id`` emitted onto ``uri``."""
    query = urllib.parse.urlencode({"source_dag_id": dag_id, "source_run_id": run_id, "limit": 100})
    events: list[dict[str, Any]] = airflow.get(f"/api/v2/assets/events?{query}")["asset_events"]
    return [event for event in events if event["uri"] == uri]


def _stored_models(env: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    done = subprocess.run(
        [sys.executable, "-c", INSPECT], env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    models: dict[str, list[dict[str, Any]]] = json.loads(done.stdout)
    return models


def test_model_events_schedule_explainers_in_the_models_environments(
    airflow: AirflowCluster, explainer_home: dict[str, str]
) -> None:
    from env_builder.store import EnvStore

    timings: list[str] = []
    training_runs: dict[str, dict[str, Any]] = {}
    explainer_runs: list[dict[str, Any]] = []
    for model_type, spec in MODEL_TYPES.items():
        started = time.monotonic()
        run = _trigger_and_wait(airflow, spec["dag_id"], timeout=400)
        training_runs[model_type] = run
        build = _task_seconds(airflow, spec["dag_id"], run["dag_run_id"], "build_environment")
        timings.append(f"{spec['dag_id']}: run {_seconds(run):.1f}s (build_environment {build[0]:.1f}s)")
        # The model's event, not a trigger of ours, starts the explainer.
        runs = airflow.wait_for_runs(EXPLAINER_DAG_ID, len(explainer_runs) + 1, timeout=400)
        explainer = runs[-1]
        assert explainer["state"] == "success", explainer
        assert explainer["run_type"] == "asset_triggered", explainer
        explainer_runs.append(explainer)
        build = _task_seconds(airflow, EXPLAINER_DAG_ID, explainer["dag_run_id"], "build_environment")
        timings.append(
            f"{EXPLAINER_DAG_ID} on {model_type}: run {_seconds(explainer):.1f}s (build_environment {build[0]:.1f}s), "
            f"{time.monotonic() - started:.1f}s from trigger to explained"
        )
    print("\n".join(timings))

    models = _stored_models(explainer_home)
    store = EnvStore.open(explainer_home["MLP_ENV_STORE"])
    aliases = {str(alias): env_id for alias, env_id in store.list_aliases()}
    for (model_type, spec), explainer_run in zip(MODEL_TYPES.items(), explainer_runs, strict=True):
        run_id = training_runs[model_type]["dag_run_id"]
        [model] = models[spec["model_name"]]
        labels = model["labels"]
        # Lineage of the training model: run, environment (the alias the run built), data, type.
        assert labels["dag_id"] == spec["dag_id"] and labels["run_id"] == run_id
        assert labels["model_type"] == model_type
        model_env = labels["env_id"]
        assert aliases[f"content/models/{model_type.replace('_', '-')}:latest"] == model_env
        snapshot = model["metadata"]["inputs"]["content.title_features"]
        assert isinstance(snapshot, int)
        assert model["metadata"]["metrics"]["roc_auc"] > 0.9, model["metadata"]
        pinned = dict(store.manifest(model_env)["lock"]["packages"])
        want = dict(r.split("==") for r in spec["pip"] if "==" in r)
        assert {name: pinned[name] for name in want} == want

        [explainer] = models[explainer_model_name(spec["model_name"])]
        elabels = explainer["labels"]
        assert elabels["dag_id"] == EXPLAINER_DAG_ID and elabels["run_id"] == explainer_run["dag_run_id"]
        assert elabels["upstream_model"] == model["tag"]
        assert elabels["upstream_env_id"] == model_env
        assert elabels["model_type"] == f"{model_type}-explainer"
        assert explainer["metadata"]["inputs"] == {"content.title_features": snapshot}

        # The explainer's environment: the model's locked packages, unchanged, plus the explainer's.
        explainer_env = elabels["env_id"]
        assert explainer_env != model_env
        manifest = store.manifest(explainer_env)
        assert manifest["spec"]["base"] == model_env
        packages = dict(manifest["lock"]["packages"])
        assert pinned.items() <= packages.items()
        for requirement in EXPLAINER_PIP:
            name, version = requirement.split("==")
            assert packages[name] == version
        # Named from the model type and the run id (":" and "+" of the run id become "-").
        sanitized = explainer_run["dag_run_id"].replace(":", "-").replace("+", "-")
        alias = f"content/explainers/explainer-{model_type.replace('_', '-')}-{sanitized}:latest"
        assert aliases.get(alias) == explainer_env, sorted(aliases)

        # The importances are sane: the informative feature first, the noise features near zero.
        metrics = explainer["metadata"]["metrics"]
        importances = {k.removeprefix("importance."): v for k, v in metrics.items() if k.startswith("importance.")}
        assert max(importances, key=importances.__getitem__) == INFORMATIVE_FEATURE, importances
        assert elabels["top_feature"] == INFORMATIVE_FEATURE
        assert importances[INFORMATIVE_FEATURE] > 0.2
        assert all(abs(importances[name]) < 0.02 for name in NOISE_FEATURES), importances
        assert metrics["surrogate_fidelity"] > 0.8, metrics

        # Airflow's records: the model's event created the explainer's run, and the explainer's event went
        # out through the alias onto the explainer's own model asset, with the lineage in its extra.
        [trained_event] = _events(airflow, spec["dag_id"], run_id, f"mlp://model/{spec['model_name']}")
        assert trained_event["extra"]["tag"] == model["tag"]
        assert trained_event["extra"]["labels"]["model_type"] == model_type
        created = {(r["dag_id"], r["run_id"]) for r in trained_event["created_dagruns"]}
        assert created == {(EXPLAINER_DAG_ID, explainer_run["dag_run_id"])}
        explainer_uri = f"mlp://model/{explainer_model_name(spec['model_name'])}"
        [explained_event] = _events(airflow, EXPLAINER_DAG_ID, explainer_run["dag_run_id"], explainer_uri)
        assert explained_event["extra"]["tag"] == explainer["tag"]
        assert explained_event["extra"]["labels"]["upstream_model"] == model["tag"]
