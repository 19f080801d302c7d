"""Publish a model a DAG produced to the BentoML model store, with its lineage, as the Asset ``mlp://model/<name>``.

::

    PublishModelOperator(task_id="publish_model", model_name="ranker", model_path="{{ ti.xcom_pull('train') }}",
                         env_id="{{ ti.xcom_pull('build_env') }}", metrics={"auc": 0.91},
                         inputs=["content.features", "content.labels"])

The saved model's labels hold the DAG id, run id and env id; its metadata the metrics and the
Iceberg snapshot id of each training input (resolved at run time unless given as a mapping). The
task's outlet is the model's Asset, and its event's extra carries the same fields plus the tag, so
downstream DAGs (and people) can tell which run, environment and data a served answer came from.
A serving process started with ``MLP_SERVING_MODEL=<name>`` loads ``<name>:latest``.

A model trained inside an environment (``@task.mlp``) usually cannot be unpickled by Airflow's own
Python, which lacks the environment's packages. The training task then returns a *training result*,
plain data plus the model's cloudpickled bytes::

    {"model": cloudpickle.dumps(fitted), "metrics": {"auc": 0.91}, "inputs": {"content.features": 42},
     "labels": {"model_type": "gradient_boosting"}}

which ``@task.mlp`` keeps in the artifact store (XCom carries its reference), and
``PublishModelOperator(model=train.output, ...)`` saves those bytes as they are; explicit
``metrics``, ``inputs`` and ``labels`` arguments win over the result's.

A templated ``model_name`` is only known at run time, so it has no automatic outlet: give
``asset_alias`` and the task emits the ``mlp://model/<name>`` event through that ``AssetAlias``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, AssetAlias, BaseOperator

from airflow_provider_mlp.assets import model_asset_uri

if TYPE_CHECKING:
    from airflow.sdk import Context


class PublishModelOperator(BaseOperator):
    """Save a model to the BentoML model store and emit its Asset ``mlp://model/<model_name>``.

    :param model_name: BentoML model name (lowercase letters, digits, ``.``, ``_``, ``-``).
    :param model: the model object (callable, or with ``predict(features)``), e.g. an upstream XCom; or
        the pickled bytes of one; or a training result mapping (``model`` bytes, ``metrics``, ``inputs``,
        ``labels``); or ``@task.mlp``'s reference to either, kept in the artifact store.
    :param model_path: instead of ``model``: a local path or fsspec URL of the model pickled with
        cloudpickle (what a training task wrote).
    :param env_id: id of the portable environment the model was trained in and should be served in.
    :param metrics: metric name -> number, recorded in the model's metadata and the event's extra.
    :param inputs: Iceberg tables the model was trained on: a list of ``namespace.table`` (their
        current snapshot ids are recorded) or a mapping ``table -> snapshot_id`` (recorded as given).
    :param labels: more BentoML labels (strings), e.g. ``{"model_type": "ridge"}``; also in the event's extra.
    :param asset_alias: name of an ``AssetAlias`` the ``mlp://model/<name>`` event is emitted through (for a
        templated ``model_name``).
    :param iceberg_conn_id: ``iceberg`` connection used to resolve snapshot ids; ``None``: the embedded catalog.
    :param mlp_object_store_conn_id: ``mlp_object_store`` connection whose credentials read a training
        result kept in the artifact store (``None``: the default connection, or the environment's).
    """

    template_fields: Sequence[str] = ("model_name", "model", "model_path", "env_id", "metrics", "inputs", "labels")
    ui_color = "#e8def8"

    def __init__(
        self,
        *,
        model_name: str,
        model: Any = None,
        model_path: str | None = None,
        env_id: str | None = None,
        metrics: Mapping[str, float] | None = None,
        inputs: Sequence[str] | Mapping[str, int | None] | None = None,
        labels: Mapping[str, Any] | None = None,
        asset_alias: str | None = None,
        iceberg_conn_id: str | None = None,
        mlp_object_store_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        if "outlets" not in kwargs:
            if asset_alias:
                kwargs["outlets"] = [AssetAlias(name=asset_alias)]
            elif isinstance(model_name, str) and "{{" not in model_name:
                # The URI's normalizer (provider info) checks the name when Airflow builds the Asset.
                kwargs["outlets"] = [Asset(uri=f"mlp://model/{model_name}")]
        super().__init__(**kwargs)
        self.model_name = model_name
        self.model = model
        self.model_path = model_path
        self.env_id = env_id
        self.metrics = metrics
        self.inputs = inputs
        self.labels = labels
        self.asset_alias = asset_alias
        self.iceberg_conn_id = iceberg_conn_id
        self.mlp_object_store_conn_id = mlp_object_store_conn_id

    def _model(self) -> tuple[Any, Mapping[str, Any]]:
        """The model to save and, for a training result, the result's other fields."""
        if (self.model is None) == (not self.model_path):
            raise ValueError(
                f"PublishModelOperator {self.task_id!r}: give exactly one of 'model' and 'model_path' "
                f"(got model={type(self.model).__name__}, model_path={self.model_path!r})"
            )
        if self.model is not None:
            return self._unpack(self.model)
        import cloudpickle
        import fsspec

        with fsspec.open(str(self.model_path), "rb") as handle:
            return cloudpickle.load(handle), {}

    def _unpack(self, value: Any) -> tuple[Any, Mapping[str, Any]]:
        from airflow_provider_mlp.compute.work import RESULT_KIND, load_result
        from airflow_provider_mlp.serving.models import PickledModel

        if isinstance(value, Mapping) and value.get("kind") == RESULT_KIND:
            from airflow_provider_mlp.hooks.object_store import ObjectStoreHook

            # The store's credentials, as @task.mlp used them to write the result.
            hook = ObjectStoreHook(mlp_object_store_conn_id=self.mlp_object_store_conn_id)
            value = load_result(value, hook.storage_options_for(str(value.get("uri", ""))))
        if isinstance(value, bytes | bytearray):
            return PickledModel(bytes(value)), {}
        if isinstance(value, Mapping) and not callable(getattr(value, "predict", None)):
            if "model" not in value:
                raise ValueError(
                    f"PublishModelOperator {self.task_id!r}: a training result mapping needs a 'model' key (the "
                    f"model or its pickled bytes), got keys {sorted(map(str, value))}"
                )
            unknown = set(value) - {"model", "metrics", "inputs", "labels"}
            if unknown:
                raise ValueError(
                    f"PublishModelOperator {self.task_id!r}: training result has unknown keys {sorted(unknown)}; "
                    "expected model, metrics, inputs, labels"
                )
            model, _ = self._unpack(value["model"])
            return model, value
        return value, {}

    def _snapshot_ids(self, inputs: Any) -> dict[str, int | None]:
        if not inputs:
            return {}
        if isinstance(inputs, Mapping):
            return {str(k): (None if v in (None, "", "None") else int(v)) for k, v in inputs.items()}
        if isinstance(inputs, str):
            raise TypeError(
                f"PublishModelOperator {self.task_id!r}: 'inputs' must be a list of tables or a mapping "
                f"table -> snapshot id, got the string {inputs!r}"
            )
        from airflow_provider_mlp.hooks.iceberg import MlpIcebergHook

        hook = MlpIcebergHook(iceberg_conn_id=self.iceberg_conn_id)
        return {str(name): hook.get_table(str(name)).current_snapshot_id for name in inputs}

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_mlp.serving.models import ModelRecord, save_model

        model, result = self._model()
        metrics = self.metrics if self.metrics else result.get("metrics")
        labels = {**dict(result.get("labels") or {}), **dict(self.labels or {})}
        dag = context.get("dag")
        record = ModelRecord(
            name=str(self.model_name),
            dag_id=getattr(dag, "dag_id", None) or self.dag_id,
            run_id=str(context["run_id"]) if context.get("run_id") is not None else None,
            env_id=str(self.env_id) if self.env_id else None,
            metrics={str(k): float(v) for k, v in (metrics or {}).items()},
            inputs=self._snapshot_ids(self.inputs if self.inputs else result.get("inputs")),
            extra_labels=labels,
        )
        tag = save_model(model, record)
        extra = record.extra(tag)
        asset = Asset(uri=model_asset_uri(record.name))
        outlet_events = context.get("outlet_events")
        if outlet_events is not None and self.asset_alias:
            outlet_events[AssetAlias(name=self.asset_alias)].add(asset, extra=extra)
        elif outlet_events is not None:
            outlet_events[asset].extra = extra
        self.log.info("Saved model %s (inputs %s, metrics %s)", tag, extra["inputs"], extra["metrics"])
        return extra
