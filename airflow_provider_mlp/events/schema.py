"""Typed event payloads: one small schema per kind of event, checked where events are emitted and consumed.

An event's payload travels in the Airflow asset event's ``extra`` as an envelope plus typed fields::

    {"mlp.event": "model.published", "mlp.schema": 1, "mlp.producer": "ranking/train_model",
     "model": "ranker", "version": "7", "uri": "s3://models/ranker/7"}

Events an ``AssetWatcher`` creates carry the trigger's payload under ``extra["payload"]``
(``{"from_trigger": true, "payload": {...}}``); ``payload_of`` reads both forms.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_mlp.errors import MlpError

EVENT_KEY = "mlp.event"
SCHEMA_KEY = "mlp.schema"
PRODUCER_KEY = "mlp.producer"
ENVELOPE_KEYS = (EVENT_KEY, SCHEMA_KEY, PRODUCER_KEY)

# type name -> (Python types accepted, JSON Schema type). bool is not an integer here, as in JSON.
TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "string": ((str,), "string"),
    "integer": ((int,), "integer"),
    "number": ((int, float), "number"),
    "boolean": ((bool,), "boolean"),
    "object": ((dict,), "object"),
    "array": ((list, tuple), "array"),
}
_PYTHON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object", list: "array"}


class EventPayloadError(MlpError, ValueError):
    """A payload does not fit its schema or mapping: the message names the event and the field."""


@dataclass(frozen=True)
class EventField:
    """One typed payload field. ``type`` is a JSON type name (string, integer, number, boolean, object, array)."""

    type: str
    required: bool = True
    description: str = ""

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"event field type {self.type!r}; expected one of {sorted(TYPES)}")

    def accepts(self, value: Any) -> bool:
        python_types, _ = TYPES[self.type]
        if isinstance(value, bool) and self.type != "boolean":
            return False
        return isinstance(value, python_types)


def _as_field(spec: Any) -> EventField:
    if isinstance(spec, EventField):
        return spec
    if isinstance(spec, type) and spec in _PYTHON_TYPES:
        return EventField(_PYTHON_TYPES[spec])
    if isinstance(spec, str):
        optional = spec.endswith("?")
        return EventField(spec.rstrip("?"), required=not optional)
    raise ValueError(f"event field spec {spec!r}; expected an EventField, a type (int, str, ...) or 'integer?'")


@dataclass(frozen=True)
class EventSchema:
    """The schema of one kind of event: ``name``, ``version`` and typed ``fields``.

    ``fields`` maps names to an ``EventField``, a Python type (``int``, ``str``, ``float``, ``bool``,
    ``dict``, ``list``) or a type name, optional when it ends with ``?`` (``"string?"``). Fields not
    in the schema are allowed (producers may add context), so adding a field is not a new version.
    """

    name: str
    version: int = 1
    fields: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError("an event schema needs a name (e.g. 'model.published')")
        object.__setattr__(self, "fields", {key: _as_field(spec) for key, spec in dict(self.fields).items()})

    @property
    def typed_fields(self) -> dict[str, EventField]:
        return dict(self.fields)

    def check(self, payload: Mapping[str, Any], *, where: str = "payload") -> dict[str, Any]:
        """``payload`` if it fits (envelope included when present), else an EventPayloadError naming the field."""
        label = f"event {self.name!r} v{self.version}"
        event = payload.get(EVENT_KEY)
        if event is not None and event != self.name:
            raise EventPayloadError(f"{where} is event {event!r}, expected {label}")
        version = payload.get(SCHEMA_KEY)
        if version is not None and version != self.version:
            raise EventPayloadError(f"{where} has schema version {version!r} of {self.name!r}, expected {self.version}")
        for key, spec in self.typed_fields.items():
            if key not in payload or payload[key] is None:
                if spec.required:
                    raise EventPayloadError(f"{where} of {label} is missing required field {key!r} ({spec.type})")
                continue
            if not spec.accepts(payload[key]):
                raise EventPayloadError(
                    f"{where} of {label} has field {key!r} of type {type(payload[key]).__name__} "
                    f"(value {payload[key]!r}); expected {spec.type}"
                )
        return dict(payload)

    def envelope(self, producer: str, **fields: Any) -> dict[str, Any]:
        """The checked ``extra`` of an asset event of this kind, sent by ``producer``."""
        payload = {EVENT_KEY: self.name, SCHEMA_KEY: self.version, PRODUCER_KEY: producer, **fields}
        return self.check(payload)

    def json_schema(self) -> dict[str, Any]:
        """The payload as JSON Schema (for documentation and other languages' producers)."""
        return {
            "title": self.name,
            "type": "object",
            "properties": {
                EVENT_KEY: {"const": self.name},
                SCHEMA_KEY: {"const": self.version},
                PRODUCER_KEY: {"type": "string"},
                **{k: {"type": TYPES[f.type][1], "description": f.description} for k, f in self.typed_fields.items()},
            },
            "required": [k for k, f in self.typed_fields.items() if f.required],
        }


def payload_of(extra: Mapping[str, Any] | None) -> dict[str, Any]:
    """The payload of an asset event's ``extra``: a watcher's trigger payload, or the extra itself."""
    if not extra:
        return {}
    if extra.get("from_trigger") and isinstance(extra.get("payload"), Mapping):
        return dict(extra["payload"])
    return dict(extra)


# The provider's own events.
ICEBERG_SNAPSHOT = EventSchema(
    "iceberg.snapshot",
    1,
    {
        "table": EventField("string", description="namespace.table"),
        "snapshot_id": EventField("integer", description="the new snapshot"),
        "run_id": EventField("string", required=False, description="the mlp.run-id of a commit through mlp"),
        "operation": EventField("string", required=False, description="append, overwrite, replace or delete"),
        "summary": EventField("object", required=False, description="the snapshot summary's properties"),
    },
)
MODEL_PUBLISHED = EventSchema(
    "model.published",
    1,
    {
        "model": EventField("string", description="model name"),
        "version": EventField("string", description="published version"),
        "uri": EventField("string", required=False, description="where the model's artifacts are"),
    },
)
ENV_BUILT = EventSchema(
    "env.built",
    1,
    {
        "env_id": EventField("string", description="content id of the environment"),
        "alias": EventField("string", required=False, description="team/project/name:tag"),
    },
)
