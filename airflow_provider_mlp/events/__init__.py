"""The event protocol between teams' DAGs: typed payloads on Airflow asset events (runtime side).

- ``EventSchema`` / ``EventField``: an event's name, version and typed fields; ``ICEBERG_SNAPSHOT``,
  ``MODEL_PUBLISHED`` and ``ENV_BUILT`` are the provider's own.
- ``emit(asset, schema, **payload)``: from inside a task, checked and attached to its outlet event.
- ``EventParams``: map payload fields onto a downstream DAG's Params.
- ``publish_event``: post an event to Airflow's REST API from outside Airflow (``mlp events publish``).

Nothing here imports Airflow.
"""

from __future__ import annotations

from airflow_provider_mlp.events.emit import emit
from airflow_provider_mlp.events.mapping import EventParams
from airflow_provider_mlp.events.schema import (
    ENV_BUILT,
    ICEBERG_SNAPSHOT,
    MODEL_PUBLISHED,
    EventField,
    EventPayloadError,
    EventSchema,
    payload_of,
)

__all__ = [
    "ENV_BUILT",
    "ICEBERG_SNAPSHOT",
    "MODEL_PUBLISHED",
    "EventField",
    "EventParams",
    "EventPayloadError",
    "EventSchema",
    "emit",
    "payload_of",
]
