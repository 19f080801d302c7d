"""Model explainers: two teams train models in their own environments; an explainer DAG explains each model
in the model's own environment plus the explainer's packages.

**mlp_train_gradient_boosting** and **mlp_train_logistic_regression** (one factory, two teams):

1. **build_environment** builds, when the task runs, the team's environment (``BuildEnvironmentOperator``;
   the two pin different scikit-learn releases, both with pyarrow) and aliases it
   ``content/models/<model type>:latest``;
2. **plan_shards** plans shards of the content-features table (``IcebergShardsOperator``, one snapshot);
3. **train** runs in that environment through ``@task.mlp``: it reads the shards' Parquet row groups
   with pyarrow, fits the model on 4 of every 5 rows, scores the 5th (ROC AUC, accuracy) and
   returns the fitted model's cloudpickled bytes with its metrics and input snapshot: Airflow's own
   Python has no scikit-learn, so the result stays in the artifact store and XCom carries its reference;
4. **publish_model** saves those bytes to the BentoML model store (``PublishModelOperator``) with the
   lineage labels (DAG id, run id, env id, model type) and emits ``mlp://model/<name>``.

**mlp_model_explainer** is scheduled on either model's asset (``AssetAny``):

1. **upstream_models** reads the triggering events' extra (model tag, env id, model type; or the
   ``models`` param on a run started by hand) and plans the shards of the snapshot the model was trained on;
2. **build_environment** builds, per model, the environment ``EnvSpec.extending(<model's env id>,
   pip=<explainer packages>)`` named ``explainer-<model type>-<run id>``: the model unpickles only
   with the scikit-learn release it was fitted with, which that environment has, pinned;
3. **train_explainer** runs in it through ``@task.mlp``: loads the model, computes permutation
   importances (eli5, ROC AUC drop on the held-out fifth) and fits a global surrogate tree of the
   model's predictions (its fidelity is the share of rows where tree and model agree);
4. **publish_explainer** publishes the surrogate as ``<model name>-explainer`` with the importances as
   metrics and the lineage (upstream model tag, upstream env id, the explainer's env id), its event
   emitted through the ``AssetAlias`` ``mlp-model-explainers``.

``airflow_provider_mlp.demo.explainers.prepare()`` writes the features table (``mlp demo`` does).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pendulum
from airflow.sdk import Asset, AssetAlias, AssetAny, Param, dag, task

from airflow_provider_mlp.assets import model_asset_uri
from airflow_provider_mlp.demo.explainers import (
    EXPLAINER_ALIAS,
    EXPLAINER_DAG_ID,
    EXPLAINER_PIP,
    FEATURES,
    FEATURES_TABLE,
    LABEL,
    MODEL_TYPES,
    explainer_model_name,
)
from airflow_provider_mlp.operators.environment import BuildEnvironmentOperator
from airflow_provider_mlp.operators.fastdata import IcebergShardsOperator
from airflow_provider_mlp.operators.serving import PublishModelOperator

START = pendulum.datetime(2026, 1, 1, tz="UTC")
TAGS = ["mlp", "example", "use-case", "compute", "environments", "serving", "events"]


def _shard_reader() -> Callable[..., Any]:
    """A reader of planned shards that needs pyarrow only, for tasks whose environment lacks this provider.

    Built by a call so that the reader is a nested function: cloudpickle ships it by value with the
    task that uses it, whereas a module-level function of a DAG file would be pickled by reference to
    a module the environment cannot import.
    """

    def read_columns(shards: list[dict[str, Any]], columns: list[str]) -> Any:
        import pyarrow as pa
        import pyarrow.fs as pafs
        import pyarrow.parquet as pq

        pieces = []
        for shard in shards:
            for unit in shard["files"]:
                if unit.get("deletes"):
                    raise ValueError(
                        f"table {shard['table']}: data file {unit['path']} has delete files; this reader reads "
                        "append-only snapshots (compact the table first)"
                    )
                path = str(unit["path"])
                filesystem, inner = pafs.FileSystem.from_uri(path) if "://" in path else (pafs.LocalFileSystem(), path)
                parquet = pq.ParquetFile(filesystem.open_input_file(inner))
                groups = unit.get("row_groups")
                groups = list(range(parquet.num_row_groups)) if groups is None else [int(g) for g in groups]
                pieces.append(parquet.read_row_groups(groups, columns=columns))
        if not pieces:
            raise ValueError(f"no rows to read: the shards {[s.get('shard_id') for s in shards]} name no files")
        return pa.concat_tables(pieces)

    return read_columns


def training_dag(model_type: str) -> Any:
    """The training DAG of one team (``MODEL_TYPES[model_type]``)."""
    spec = MODEL_TYPES[model_type]

    @dag(
        dag_id=spec["dag_id"],
        schedule=None,
        start_date=START,
        catchup=False,
        tags=TAGS,
        doc_md=__doc__,
        params={
            "table": Param(FEATURES_TABLE, type="string", description="namespace.table of content features + label"),
            "max_iter": Param(
                200, type="integer", minimum=10, description="boosting stages or solver iterations of the model"
            ),
            "seed": Param(0, type="integer", minimum=0, description="random seed of the model"),
        },
    )
    def train_model() -> None:
        read_columns = _shard_reader()
        environment = BuildEnvironmentOperator(
            task_id="build_environment",
            spec=list(spec["pip"]),
            name=f"content/models/{model_type.replace('_', '-')}",
        )
        plan = IcebergShardsOperator(
            task_id="plan_shards", table="{{ params.table }}", columns=[*FEATURES, LABEL], target_bytes=64 << 20
        )

        @task.mlp(env=environment.output, cpu=1, memory="2Gi", retries=1)
        def train(shards: list[dict[str, Any]], params: dict[str, Any] | None = None) -> dict[str, Any]:
            # Runs in the built environment: scikit-learn and pyarrow, no Airflow, no provider.
            params = params or {}
            import time

            import cloudpickle
            import numpy as np
            import sklearn
            from sklearn.metrics import accuracy_score, roc_auc_score

            started = time.perf_counter()
            data = read_columns(shards, [*FEATURES, LABEL])
            x = np.column_stack([data[name].to_numpy().astype(np.float64) for name in FEATURES])
            y = data[LABEL].to_numpy()
            held_out = np.arange(len(y)) % 5 == 0
            if model_type == "gradient_boosting":
                from sklearn.ensemble import HistGradientBoostingClassifier

                model: Any = HistGradientBoostingClassifier(
                    max_iter=int(params["max_iter"]), learning_rate=0.1, random_state=int(params["seed"])
                )
            else:
                from sklearn.linear_model import LogisticRegression
                from sklearn.pipeline import make_pipeline
                from sklearn.preprocessing import StandardScaler

                linear = LogisticRegression(max_iter=int(params["max_iter"]), random_state=int(params["seed"]))
                model = make_pipeline(StandardScaler(), linear)
            model.fit(x[~held_out], y[~held_out])
            scores = model.predict_proba(x[held_out])[:, 1]
            metrics = {
                "roc_auc": float(roc_auc_score(y[held_out], scores)),
                "accuracy": float(accuracy_score(y[held_out], scores >= 0.5)),
                "train_rows": int((~held_out).sum()),
                "test_rows": int(held_out.sum()),
            }
            print(f"{model_type}: {len(y)} rows read and fitted in {time.perf_counter() - started:.2f}s: {metrics}")
            return {
                "model": cloudpickle.dumps(model),
                "metrics": metrics,
                "inputs": {shards[0]["table"]: shards[0]["snapshot_id"]},
                "labels": {
                    "model_type": model_type,
                    "scikit_learn": sklearn.__version__,
                    "features": ",".join(FEATURES),
                    "label": LABEL,
                    "table": shards[0]["table"],
                },
            }

        PublishModelOperator(
            task_id="publish_model", model_name=spec["model_name"], model=train(plan.output), env_id=environment.output
        )

    return train_model()


for _model_type in MODEL_TYPES:
    training_dag(_model_type)


@dag(
    dag_id=EXPLAINER_DAG_ID,
    schedule=AssetAny(*(Asset(model_asset_uri(spec["model_name"])) for spec in MODEL_TYPES.values())),
    start_date=START,
    catchup=False,
    tags=TAGS,
    doc_md=__doc__,
    params={
        "models": Param(
            [],
            type="array",
            items={"type": "string"},
            description="models to explain (name or name:version) on a run started by hand; an asset-triggered "
            "run explains the models of its events",
        ),
        "explainer_packages": Param(
            list(EXPLAINER_PIP),
            type="array",
            items={"type": "string"},
            minItems=1,
            description="pip requirements added to the model's environment for the explainer",
        ),
        "permutation_repeats": Param(
            5, type="integer", minimum=1, description="shuffles per feature for the permutation importances"
        ),
        "sample_rows": Param(
            4000, type="integer", minimum=100, description="held-out rows the importances and surrogate use"
        ),
        "surrogate_depth": Param(3, type="integer", minimum=1, maximum=8, description="depth of the surrogate tree"),
    },
)
def mlp_model_explainer() -> None:
    read_columns = _shard_reader()

    @task
    def upstream_models(
        params: dict[str, Any] | None = None, run_id: str | None = None, triggering_asset_events: Any = None
    ) -> list[dict[str, Any]]:
        from pathlib import Path

        from airflow_provider_mlp.fastdata import Table
        from airflow_provider_mlp.hooks.object_store import ObjectStoreHook
        from airflow_provider_mlp.serving.models import find_model

        params = params or {}
        store = ObjectStoreHook()
        # The latest event per model: a run the scheduler made for several events explains each model once.
        events: dict[str, dict[str, Any]] = {}
        for asset_events in dict(triggering_asset_events or {}).values():
            for event in asset_events:
                extra = dict(event.extra or {})
                if extra.get("tag"):
                    events[str(extra["tag"]).split(":", 1)[0]] = extra
        if not events:
            events = {str(name).split(":", 1)[0]: {"tag": str(name)} for name in params.get("models") or []}
        if not events:
            raise ValueError(
                "nothing to explain: the run has no model event; start it with conf {'models': ['<model name>']}"
            )
        upstream = []
        for extra in events.values():
            stored = find_model(extra["tag"])
            labels = {**stored.labels, **dict(extra.get("labels") or {})}
            env_id = extra.get("env_id") or labels.get("env_id")
            if not env_id or not labels.get("features"):
                raise ValueError(
                    f"model {stored.tag} has no env_id or features label: explain models published by a training "
                    f"DAG of this use case (labels {sorted(labels)})"
                )
            model_type = labels.get("model_type", "model")
            table = labels["table"]
            snapshot_id = dict(stored.metadata.get("inputs") or {}).get(table)
            features = labels["features"].split(",")
            # The model store is this worker's disk: a pod reaches the pickle through the artifact store.
            model_uri = f"{store.url}/explainers/{run_id}/{stored.tag.replace(':', '-')}.pkl"
            store.fs.makedirs(model_uri.rsplit("/", 1)[0], exist_ok=True)
            store.fs.pipe(model_uri, Path(stored.path).read_bytes())
            upstream.append(
                {
                    "tag": stored.tag,
                    "model_type": model_type,
                    "env_id": env_id,
                    "model_uri": model_uri,
                    "features": features,
                    "label": labels["label"],
                    # The very rows the model was trained on: its input snapshot, not the table's latest.
                    "shards": Table(table).shards(
                        target_bytes=64 << 20, columns=[*features, labels["label"]], snapshot_id=snapshot_id
                    ),
                    "explainer_name": explainer_model_name(stored.name),
                    "environment": {
                        "spec": {"extends": env_id, "pip": list(params.get("explainer_packages") or EXPLAINER_PIP)},
                        "name": f"content/explainers/explainer-{model_type.replace('_', '-')}-{run_id}",
                    },
                }
            )
            print(f"explaining {stored.tag} ({model_type}) trained in environment {env_id}")
        return upstream

    upstream = upstream_models()
    # Mapped: outlets are fixed at parse time, so the per-model alias names get no automatic outlet.
    environments = BuildEnvironmentOperator.partial(task_id="build_environment", outlets=[]).expand_kwargs(
        upstream.map(lambda model: model["environment"])
    )
    this_environment = "{{ ti.xcom_pull(task_ids='build_environment', map_indexes=ti.map_index) }}"

    @task.mlp(env=this_environment, cpu=1, memory="2Gi", retries=1)
    def train_explainer(model: dict[str, Any], params: dict[str, Any] | None = None) -> dict[str, Any]:
        # Runs in the model's environment plus the explainer's packages: no Airflow, no provider.
        params = params or {}
        import time

        import cloudpickle
        import eli5
        import numpy as np
        import pyarrow.fs as pafs
        from eli5.sklearn import PermutationImportance
        from sklearn.tree import DecisionTreeClassifier, export_text

        started = time.perf_counter()
        uri = str(model["model_uri"])
        filesystem, inner = pafs.FileSystem.from_uri(uri)
        with filesystem.open_input_stream(inner) as handle:
            fitted = cloudpickle.loads(handle.read())
        features, label = list(model["features"]), str(model["label"])
        data = read_columns(model["shards"], [*features, label])
        x = np.column_stack([data[name].to_numpy().astype(np.float64) for name in features])
        y = data[label].to_numpy()
        held_out = np.flatnonzero(np.arange(len(y)) % 5 == 0)[: int(params["sample_rows"])]
        x, y = x[held_out], y[held_out]
        importance = PermutationImportance(
            fitted, scoring="roc_auc", n_iter=int(params["permutation_repeats"]), random_state=0
        ).fit(x, y)
        print(eli5.format_as_text(eli5.explain_weights(importance, feature_names=features)))
        predicted = fitted.predict(x)
        surrogate = DecisionTreeClassifier(max_depth=int(params["surrogate_depth"]), random_state=0).fit(x, predicted)
        fidelity = float((surrogate.predict(x) == predicted).mean())
        print(f"surrogate tree (fidelity {fidelity:.3f}):\n{export_text(surrogate, feature_names=features)}")
        ranked = sorted(zip(features, importance.feature_importances_, strict=True), key=lambda item: -item[1])
        print(f"explained {model['tag']} on {len(y)} rows in {time.perf_counter() - started:.2f}s")
        return {
            "model": cloudpickle.dumps(surrogate),
            "metrics": {
                "surrogate_fidelity": fidelity,
                "rows": int(len(y)),
                **{f"importance.{name}": float(value) for name, value in ranked},
            },
            "inputs": {model["shards"][0]["table"]: model["shards"][0]["snapshot_id"]},
            "labels": {
                "model_type": f"{model['model_type']}-explainer",
                "explainer": "permutation-importance+surrogate-tree",
                "upstream_model": model["tag"],
                "upstream_env_id": model["env_id"],
                "top_feature": ranked[0][0],
                "features": ",".join(name for name, _ in ranked),
            },
        }

    explained = train_explainer.expand(model=upstream)
    publish = PublishModelOperator.partial(
        task_id="publish_explainer",
        model_name="{{ ti.xcom_pull(task_ids='upstream_models')[ti.map_index]['explainer_name'] }}",
        env_id=this_environment,
        asset_alias=EXPLAINER_ALIAS,
        # A mapped task's outlets are what partial() is given: the operator's own default comes too late.
        outlets=[AssetAlias(name=EXPLAINER_ALIAS)],
    ).expand(model=explained)
    environments >> explained >> publish


mlp_model_explainer()
