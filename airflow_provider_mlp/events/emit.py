"""Emit a typed event from inside a task: ``emit(asset, schema, **payload)``.

The payload is checked against its schema and attached to the task's outlet event for ``asset``,
which Airflow records when the task succeeds (so a failed task announces nothing). ``asset`` must be
one of the task's outlets: Airflow drops events for any other asset.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from airflow_provider_mlp.events.schema import EventPayloadError, EventSchema


def _current_context() -> Mapping[str, Any]:
    # Runtime-side code never imports Airflow; inside a task Airflow's SDK is already loaded.
    sdk = sys.modules.get("airflow.sdk")
    if sdk is None:
        raise EventPayloadError(
            "emit() runs inside an Airflow task (or pass context=); outside Airflow use "
            "'mlp events publish <asset-uri> --payload ...'"
        )
    context: Mapping[str, Any] = sdk.get_current_context()
    return context


def _outlet_for(asset: Any, context: Mapping[str, Any]) -> Any:
    uri = asset if isinstance(asset, str) else getattr(asset, "uri", None)
    outlets = list(context.get("outlets") or ())
    for outlet in outlets:
        if outlet is asset or (uri is not None and getattr(outlet, "uri", None) == uri):
            return outlet
    task = context.get("task")
    declared = [getattr(o, "uri", repr(o)) for o in outlets]
    raise EventPayloadError(
        f"asset {uri or asset!r} is not an outlet of task {getattr(task, 'task_id', '?')!r} "
        f"(outlets: {declared}); add it to the task's outlets= so Airflow records the event"
    )


def emit(
    asset: Any,
    schema: EventSchema,
    *,
    producer: str | None = None,
    context: Mapping[str, Any] | None = None,
    partition_key: str | None = None,
    **payload: Any,
) -> dict[str, Any]:
    """Check ``payload`` against ``schema`` and attach it to this task's outlet event for ``asset``.

    ``asset`` is an Asset or its URI; ``producer`` defaults to ``<dag_id>/<task_id>``. Returns the
    event's extra. A missing or mistyped field raises EventPayloadError naming it, failing the task
    before anything is announced.

    ``partition_key`` gives the event a partition key (for ``PartitionedAssetTimetable`` consumers)
    when the run has none of its own, e.g. a run an ``AssetWatcher`` started: Airflow copies a
    partitioned run's key onto its events by itself.
    """
    context = context if context is not None else _current_context()
    if producer is None:
        task = context.get("task")
        producer = f"{getattr(task, 'dag_id', '?')}/{getattr(task, 'task_id', '?')}"
    extra = schema.envelope(producer, **payload)
    outlet = _outlet_for(asset, context)
    event = context["outlet_events"][outlet]
    if partition_key:
        add_partitions = getattr(event, "add_partitions", None)
        if add_partitions is None:
            raise EventPayloadError(
                f"partition_key={partition_key!r}: this Airflow's outlet events take no partition keys "
                "(Airflow 3.3 or later needed)"
            )
        add_partitions(str(partition_key))
    event.extra.update(extra)
    return extra
