"""Map an event's payload onto a downstream DAG's Params, declaratively (like Metaflow's
``@trigger(event=..., parameters={...})``)::

    on_model = EventParams(MODEL_PUBLISHED, {"model_version": "version", "model_name": "model"})
    params = on_model.resolve([event.extra for event in triggering_events])

``parameters`` maps a Param name to a payload field (``"a.b"`` reaches into nested objects). The
newest event wins; an absent optional field of the schema maps to None; a missing or mistyped field
is an EventPayloadError naming the field, the event and the Param. The Airflow side
(``airflow_provider_mlp.decorators.events``) applies it to a DAG run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_mlp.events.schema import EventPayloadError, EventSchema, payload_of

_MISSING = object()


def _lookup(payload: Mapping[str, Any], path: str) -> Any:
    value: Any = payload
    # Dotted keys of the payload itself (``mlp.run-id``) win over nesting.
    if path in payload:
        return payload[path]
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


@dataclass(frozen=True)
class EventParams:
    """Which payload field fills which Param, checked against the event's schema (when given)."""

    schema: EventSchema | None
    parameters: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.schema is not None:
            known = set(self.schema.typed_fields)
            for param, path in self.parameters.items():
                if path.split(".")[0] not in known and path not in known:
                    raise EventPayloadError(
                        f"Param {param!r} maps payload field {path!r}, which event {self.schema.name!r} does not "
                        f"define (fields: {sorted(known)})"
                    )

    def _optional(self, path: str) -> bool:
        spec = self.schema.typed_fields.get(path) if self.schema is not None else None
        return spec is not None and not spec.required

    def resolve_payload(self, payload: Mapping[str, Any], *, where: str = "payload") -> dict[str, Any]:
        """Param values from one payload."""
        if self.schema is not None:
            self.schema.check(payload, where=where)
        event = f" of event {self.schema.name!r}" if self.schema is not None else ""
        values: dict[str, Any] = {}
        for param, path in self.parameters.items():
            value = _lookup(payload, path)
            if value is _MISSING and self._optional(path):
                value = None
            if value is _MISSING:
                raise EventPayloadError(
                    f"{where}{event} is missing field {path!r} for Param {param!r} (payload keys: {sorted(payload)})"
                )
            values[param] = value
        return values

    def resolve(self, extras: Sequence[Mapping[str, Any] | None], *, where: str = "triggering event") -> dict[str, Any]:
        """Param values from the newest of ``extras`` (asset events' extra, oldest first); {} without events."""
        if not extras:
            return {}
        return self.resolve_payload(payload_of(extras[-1]), where=where)
