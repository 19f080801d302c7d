"""The snapshot watcher's filters and serialization, and the sensor's trigger on a real SQL catalog."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pyarrow as pa

from airflow_provider_mlp.triggers.iceberg import (
    IcebergSnapshotTrigger,
    IcebergSnapshotWatchTrigger,
    find_snapshot,
    snapshot_passes,
)


def test_filters_on_operation_and_summary_properties() -> None:
    info = {"operation": "append", "summary": {"mlp.run-id": "enrich/run-1"}}
    assert snapshot_passes(info, operations=["append"])
    assert not snapshot_passes(info, operations=["overwrite"])
    assert not snapshot_passes(info, exclude_properties={"mlp.run-id": "enrich/*"})
    assert snapshot_passes(info, exclude_properties={"mlp.run-id": "other/*"})
    assert snapshot_passes(info, require_properties={"mlp.run-id": "*"})
    assert not snapshot_passes({"operation": "append", "summary": {}}, require_properties={"mlp.run-id": "*"})


def test_watch_trigger_serializes_to_itself() -> None:
    trigger = IcebergSnapshotWatchTrigger(table="a.b", poll_interval=1, exclude_properties={"mlp.run-id": "x/*"})
    path, kwargs = trigger.serialize()
    assert path == "airflow_provider_mlp.triggers.iceberg.IcebergSnapshotWatchTrigger"
    assert kwargs["iceberg_conn_id"] is None and kwargs["exclude_properties"] == {"mlp.run-id": "x/*"}
    again = IcebergSnapshotWatchTrigger(**kwargs)
    assert again.serialize() == (path, kwargs)


def test_sensor_trigger_fires_for_a_newer_snapshot_only(mlp_home: Path) -> None:
    from airflow_provider_mlp.fastdata.catalog import default_catalog

    catalog = default_catalog()
    catalog.create_namespace("s")
    table = catalog.create_table("s.t", schema=pa.schema([pa.field("x", pa.int64())]))
    assert find_snapshot("s.t", None) is None
    table.append(pa.table({"x": [1]}))
    first = table.refresh().current_snapshot().snapshot_id
    assert find_snapshot("s.t", None, after_snapshot_id=first) is None
    table.append(pa.table({"x": [2]}))
    second = table.refresh().current_snapshot().snapshot_id
    trigger = IcebergSnapshotTrigger(table="s.t", after_snapshot_id=first, poll_interval=0.01)

    async def first_event() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    payload = asyncio.run(first_event())
    assert payload["snapshot_id"] == second and payload["operation"] == "append"
