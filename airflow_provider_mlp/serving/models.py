"""Models in the BentoML model store: how a DAG's model is saved and how a serving process loads it.

A model is saved as ``model.pkl`` (cloudpickle) inside a BentoML model directory, with labels
(strings: ``dag_id``, ``run_id``, ``env_id``, plus any the publisher adds, e.g. ``model_type``)
and metadata (``metrics``, ``inputs``: the Iceberg snapshot id of each training input table) so
that every answer can be traced back to the run, the environment and the data. The loaded object
answers ``predict(features) -> value`` (or is itself callable); it may define
``finalize(aggregates, params)`` for the lookup endpoint and ``validate(features)`` to refuse an
async request before it is queued.

A model trained inside an environment arrives as ``PickledModel`` (its cloudpickled bytes): it is
saved as it is, without unpickling, because the publishing process need not have the packages
the model needs (it is loaded where its ``env_id`` environment is).
Runtime side: no Airflow.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_mlp.errors import ConfigurationError, MlpError
from airflow_provider_mlp.extras import require

MODEL_FILE = "model.pkl"
FORMAT = "mlp-cloudpickle-v1"
_NAME = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$")
LINEAGE_LABELS = ("dag_id", "run_id", "env_id")
_LABEL_KEY = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")


class ModelLoadError(MlpError, LookupError):
    """The model tag is not in the store, or its directory is not a model this package saved."""


class UnknownFeaturesError(MlpError, KeyError):
    """What a model's ``validate(features)`` raises for features it has no data for (e.g. an unknown id):
    the service answers 404. Any other error of the model's is its own failure, not the request's."""

    def __str__(self) -> str:  # KeyError's str() would quote the message
        return str(self.args[0]) if self.args else ""


def check_model_name(name: str) -> str:
    """A BentoML model name (lowercase letters, digits, ``.``, ``_``, ``-``), or a ConfigurationError."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigurationError(
            f"model name {name!r} is not a valid BentoML model name: use 1-64 lowercase letters, digits, "
            "'.', '_' or '-', starting and ending with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class PickledModel:
    """A model as its cloudpickled bytes, saved without being unpickled here (see the module docstring)."""

    data: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.data, bytes | bytearray) or not self.data:
            raise TypeError(
                f"PickledModel takes the non-empty pickled bytes of a model, got {type(self.data).__name__}"
            )


def check_labels(labels: Mapping[str, Any] | None, *, where: str = "model labels") -> dict[str, str]:
    """Extra BentoML labels as strings; the lineage labels (dag_id, run_id, env_id) cannot be given here."""
    checked: dict[str, str] = {}
    for key, value in dict(labels or {}).items():
        if not isinstance(key, str) or not _LABEL_KEY.match(key):
            raise ConfigurationError(
                f"{where}: label key {key!r} is not valid; use 1-63 letters, digits, '.', '_' or '-', "
                "starting and ending with a letter or digit"
            )
        if key in LINEAGE_LABELS:
            raise ConfigurationError(f"{where}: label {key!r} is set from the run itself and cannot be given")
        if value is None or isinstance(value, Mapping | list | tuple):
            raise ConfigurationError(f"{where}: label {key!r} must be a string or a number, got {value!r}")
        checked[key] = str(value)
    return checked


@dataclass(frozen=True)
class ModelRecord:
    """What a published model carries: the lineage every answer can be traced to."""

    name: str
    dag_id: str | None = None
    run_id: str | None = None
    env_id: str | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    inputs: Mapping[str, int | None] = field(default_factory=dict)
    # More labels of the publisher's: the model's type, the model an explainer explains, ...
    extra_labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "extra_labels", check_labels(self.extra_labels, where=f"model {self.name!r}"))

    def labels(self) -> dict[str, str]:
        # BentoML labels are strings and filterable (``bentoml models list -l dag_id=...``).
        values = {"dag_id": self.dag_id, "run_id": self.run_id, "env_id": self.env_id}
        lineage = {k: str(v) for k, v in values.items() if v not in (None, "")}
        return {**self.extra_labels, **lineage}

    def metadata(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "metrics": {str(k): float(v) for k, v in self.metrics.items()},
            "inputs": {str(k): (None if v is None else int(v)) for k, v in self.inputs.items()},
        }

    def extra(self, tag: str) -> dict[str, Any]:
        """The Asset event's extra: the same fields, plus the saved tag (and the extra labels, when any)."""
        extra = {
            "tag": tag,
            "dag_id": self.dag_id,
            "run_id": self.run_id,
            "env_id": self.env_id,
            "metrics": self.metadata()["metrics"],
            "inputs": self.metadata()["inputs"],
        }
        if self.extra_labels:
            extra["labels"] = dict(self.extra_labels)
        return extra


def save_model(model: Any, record: ModelRecord) -> str:
    """Save ``model`` (any object cloudpickle can ship, or a ``PickledModel``) to the BentoML model store;
    return its tag ``name:version``.

    The directory becomes visible in the store only when the ``with`` block completes, so a failed
    save never leaves a half-written model for ``name:latest`` to pick.
    """
    require("bentoml", feature="serving")
    import bentoml
    import cloudpickle

    check_model_name(record.name)
    pickled = model if isinstance(model, PickledModel) else None
    if pickled is None and not (callable(model) or callable(getattr(model, "predict", None))):
        raise TypeError(
            f"model for {record.name!r} must be callable or have a predict(features) method, got {type(model).__name__}"
        )
    with (
        bentoml.models.create(record.name, labels=record.labels(), metadata=record.metadata()) as saved,
        open(saved.path_of(MODEL_FILE), "wb") as handle,
    ):
        if pickled is not None:
            handle.write(pickled.data)
        else:
            cloudpickle.dump(model, handle)
    return str(saved.tag)


@dataclass(frozen=True)
class StoredModel:
    """A stored model's tag, lineage and the path of its pickle, read without unpickling it."""

    tag: str
    name: str
    path: str
    labels: dict[str, str]
    metadata: dict[str, Any]


def find_model(tag: str) -> StoredModel:
    """``name`` / ``name:latest`` / ``name:version`` in the BentoML model store, not unpickled: for a process
    that hands the model file to an environment that has the model's packages."""
    require("bentoml", feature="serving")
    import bentoml

    try:
        stored = bentoml.models.get(tag)
    except bentoml.exceptions.NotFound as exc:
        raise ModelLoadError(f"model {tag!r} is not in the BentoML model store: {exc}") from None
    metadata = dict(stored.info.metadata)
    if metadata.get("format") != FORMAT:
        raise ModelLoadError(
            f"model {stored.tag} was not saved by PublishModelOperator (metadata format {metadata.get('format')!r}, "
            f"expected {FORMAT!r})"
        )
    return StoredModel(str(stored.tag), stored.tag.name, stored.path_of(MODEL_FILE), dict(stored.info.labels), metadata)


@dataclass
class LoadedModel:
    tag: str
    name: str
    obj: Any
    labels: dict[str, str]
    metadata: dict[str, Any]

    @property
    def env_id(self) -> str:
        return self.labels.get("env_id", "")

    def predict(self, features: Any) -> Any:
        method = getattr(self.obj, "predict", None)
        return method(features) if callable(method) else self.obj(features)

    def validate(self, features: Any) -> None:
        """The model's own check of a request's features (``validate(features)``, optional), before it is queued."""
        method = getattr(self.obj, "validate", None)
        if callable(method):
            method(features)

    def finalize(self) -> Any:
        method = getattr(self.obj, "finalize", None)
        return method if callable(method) else None


def load_model(tag: str) -> LoadedModel:
    """Load ``name`` / ``name:latest`` / ``name:version`` from the BentoML model store."""
    import cloudpickle

    stored = find_model(tag)
    with open(stored.path, "rb") as handle:
        obj = cloudpickle.load(handle)
    return LoadedModel(stored.tag, stored.name, obj, stored.labels, stored.metadata)
