"""Iceberg snapshot triggers: an ``AssetWatcher`` trigger with filters, and the sensor's trigger.

``IcebergSnapshotWatchTrigger`` extends the Iceberg provider's ``IcebergTableSnapshotTrigger`` (its
polling, branch handling and watermark are reused as they are) with what our users need:

- the embedded catalog (``iceberg_conn_id=None``) as well as ``iceberg`` connections;
- filters on the new snapshot's operation (``operations=["append"]``) and summary properties
  (``require_properties`` / ``exclude_properties``, values are ``fnmatch`` patterns, ``"*"`` = present):
  ``exclude_properties={"mlp.run-id": "enrich/*"}`` skips what a pipeline committing with
  ``run_id="enrich/{{ run_id }}"`` wrote itself, so it never retriggers itself; and
  ``exclude_properties={"mlp.run-id": "*"}`` leaves only commits made outside mlp (the ones through
  ``IcebergCommitOperator`` are already announced by its outlet event);
- an ``iceberg.snapshot`` event payload (operation, ``mlp.run-id`` and the summary included).

``IcebergSnapshotTrigger`` is what ``IcebergSnapshotSensor`` defers to: it fires once, when the
table has a snapshot newer than a given one that passes the same filters.
"""

from __future__ import annotations

import asyncio
import fnmatch
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.apache.iceberg.triggers.iceberg import DEFAULT_BRANCH, IcebergTableSnapshotTrigger
from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_mlp.events.schema import EVENT_KEY, ICEBERG_SNAPSHOT, PRODUCER_KEY, SCHEMA_KEY
from airflow_provider_mlp.fastdata.writer import RUN_ID_PROPERTY

if TYPE_CHECKING:
    from airflow.sdk import Asset
    from pyiceberg.table import Table as IcebergTable
    from pyiceberg.table.snapshots import Snapshot


def load_iceberg_table(table: str, iceberg_conn_id: str | None) -> IcebergTable:
    from airflow_provider_mlp.hooks.iceberg import MlpIcebergHook

    return MlpIcebergHook(iceberg_conn_id=iceberg_conn_id or None).catalog.load_table(table)


def describe_snapshot(snapshot: Snapshot) -> dict[str, Any]:
    summary = snapshot.summary
    return {
        "snapshot_id": snapshot.snapshot_id,
        "parent_snapshot_id": snapshot.parent_snapshot_id,
        "timestamp_ms": snapshot.timestamp_ms,
        "operation": summary.operation.value if summary is not None else None,
        "summary": dict(summary.additional_properties) if summary is not None else {},
    }


def snapshot_passes(
    info: Mapping[str, Any],
    *,
    operations: Sequence[str] | None = None,
    require_properties: Mapping[str, str] | None = None,
    exclude_properties: Mapping[str, str] | None = None,
) -> bool:
    """Whether a described snapshot passes the filters (absent properties never match a pattern)."""
    if operations and info.get("operation") not in operations:
        return False
    summary = info.get("summary") or {}

    def matches(key: str, pattern: str) -> bool:
        return key in summary and fnmatch.fnmatchcase(str(summary[key]), pattern)

    if any(not matches(k, p) for k, p in (require_properties or {}).items()):
        return False
    return not any(matches(k, p) for k, p in (exclude_properties or {}).items())


def snapshot_payload(table: str, branch: str, info: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """An ``iceberg.snapshot`` event payload (checked) for a described snapshot."""
    payload: dict[str, Any] = {
        EVENT_KEY: ICEBERG_SNAPSHOT.name,
        SCHEMA_KEY: ICEBERG_SNAPSHOT.version,
        PRODUCER_KEY: f"iceberg-watcher/{table}",
        "table": table,
        "branch": branch,
        "snapshot_id": info["snapshot_id"],
        "operation": info.get("operation"),
        "summary": info.get("summary") or {},
        **extra,
    }
    run_id = (info.get("summary") or {}).get(RUN_ID_PROPERTY)
    if run_id is not None:
        payload["run_id"] = run_id
    return ICEBERG_SNAPSHOT.check(payload, where=f"snapshot event of {table}")


class IcebergSnapshotWatchTrigger(IcebergTableSnapshotTrigger):
    """The Iceberg provider's snapshot trigger with filters and the embedded catalog (for ``AssetWatcher``).

    :param table: ``namespace.table``.
    :param iceberg_conn_id: an ``iceberg`` connection; ``None`` for the embedded catalog.
    :param operations: only snapshots of these operations (append, overwrite, replace, delete).
    :param require_properties: summary property -> fnmatch pattern, all must match.
    :param exclude_properties: summary property -> fnmatch pattern, any match skips the snapshot.
    """

    def __init__(
        self,
        *,
        table: str,
        iceberg_conn_id: str | None = None,
        branch: str = DEFAULT_BRANCH,
        poll_interval: float = 60,
        last_seen_snapshot_id: int | None = None,
        operations: Sequence[str] | None = None,
        require_properties: Mapping[str, str] | None = None,
        exclude_properties: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            table=table,
            iceberg_conn_id=iceberg_conn_id or "",
            branch=branch,
            poll_interval=poll_interval,
            last_seen_snapshot_id=last_seen_snapshot_id,
            **kwargs,
        )
        self.operations = list(operations) if operations else None
        self.require_properties = dict(require_properties or {})
        self.exclude_properties = dict(exclude_properties or {})

    def serialize(self) -> tuple[str, dict[str, Any]]:
        _, kwargs = super().serialize()
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                **kwargs,
                "iceberg_conn_id": self.iceberg_conn_id or None,
                "operations": self.operations,
                "require_properties": self.require_properties,
                "exclude_properties": self.exclude_properties,
            },
        )

    def _head_snapshot_id(self) -> int | None:
        from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

        # The base class reaches the catalog through IcebergHook(conn_id); this one also reaches the
        # embedded catalog. Same contract: None while the table does not exist.
        try:
            table = load_iceberg_table(self.table, self.iceberg_conn_id)
        except (NoSuchTableError, NoSuchNamespaceError):
            self.log.debug("%s does not exist yet; waiting", self.table)
            return None
        self._table = table
        ref = table.metadata.refs.get(self.branch)
        return ref.snapshot_id if ref else None

    def _describe(self, snapshot_id: int) -> dict[str, Any] | None:
        table = getattr(self, "_table", None) or load_iceberg_table(self.table, self.iceberg_conn_id)
        snapshot = table.snapshot_by_id(snapshot_id)
        return describe_snapshot(snapshot) if snapshot is not None else None

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # The base class moves (and persists) the watermark for every new head; filtering its events
        # keeps that, so a skipped snapshot is never reconsidered.
        async for event in super().run():
            snapshot_id = event.payload["snapshot_id"]
            info = await asyncio.to_thread(self._describe, snapshot_id)
            if info is None or not snapshot_passes(
                info,
                operations=self.operations,
                require_properties=self.require_properties,
                exclude_properties=self.exclude_properties,
            ):
                self.log.info("Snapshot %s of %s does not pass the filters; not announced", snapshot_id, self.table)
                continue
            yield TriggerEvent(
                snapshot_payload(
                    self.table,
                    self.branch,
                    info,
                    previous_snapshot_id=event.payload.get("previous_snapshot_id"),
                )
            )


def watched_table_asset(
    table: str,
    *,
    iceberg_conn_id: str | None = None,
    poll_interval: float = 30,
    name: str | None = None,
    **filters: Any,
) -> Asset:
    """The ``iceberg://`` Asset of ``table`` with a watcher announcing its new snapshots (for ``schedule=``)."""
    from airflow.sdk import Asset, AssetWatcher

    from airflow_provider_mlp.assets import table_asset_uri
    from airflow_provider_mlp.hooks.iceberg import catalog_name_for

    uri = table_asset_uri(catalog_name_for(iceberg_conn_id), table)
    trigger = IcebergSnapshotWatchTrigger(
        table=table, iceberg_conn_id=iceberg_conn_id, poll_interval=poll_interval, **filters
    )
    watcher_name = name or f"{table.replace('.', '_')}_snapshots"
    return Asset(uri=uri, watchers=[AssetWatcher(name=watcher_name, trigger=trigger)])


class IcebergSnapshotTrigger(BaseTrigger):
    """Fire once when ``table`` has a snapshot newer than ``after_snapshot_id`` that passes the filters.

    Newer means committed after it (by timestamp) on the table's history; with no ``after_snapshot_id``
    any snapshot that passes counts, the current one first.
    """

    def __init__(
        self,
        *,
        table: str,
        iceberg_conn_id: str | None = None,
        after_snapshot_id: int | None = None,
        operations: Sequence[str] | None = None,
        require_properties: Mapping[str, str] | None = None,
        exclude_properties: Mapping[str, str] | None = None,
        poll_interval: float = 30,
    ) -> None:
        super().__init__()
        self.table = table
        self.iceberg_conn_id = iceberg_conn_id
        self.after_snapshot_id = after_snapshot_id
        self.operations = list(operations) if operations else None
        self.require_properties = dict(require_properties or {})
        self.exclude_properties = dict(exclude_properties or {})
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "table": self.table,
                "iceberg_conn_id": self.iceberg_conn_id,
                "after_snapshot_id": self.after_snapshot_id,
                "operations": self.operations,
                "require_properties": self.require_properties,
                "exclude_properties": self.exclude_properties,
                "poll_interval": self.poll_interval,
            },
        )

    def check(self) -> dict[str, Any] | None:
        """The matching snapshot's payload now, or None."""
        return find_snapshot(
            self.table,
            self.iceberg_conn_id,
            after_snapshot_id=self.after_snapshot_id,
            operations=self.operations,
            require_properties=self.require_properties,
            exclude_properties=self.exclude_properties,
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while True:
            found = await asyncio.to_thread(self.check)
            if found is not None:
                yield TriggerEvent({"status": "success", **found})
                return
            await asyncio.sleep(self.poll_interval)


def find_snapshot(
    table: str,
    iceberg_conn_id: str | None,
    *,
    after_snapshot_id: int | None = None,
    operations: Sequence[str] | None = None,
    require_properties: Mapping[str, str] | None = None,
    exclude_properties: Mapping[str, str] | None = None,
) -> dict[str, Any] | None:
    """The newest snapshot of ``table`` newer than ``after_snapshot_id`` passing the filters, as a payload."""
    from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

    try:
        iceberg = load_iceberg_table(table, iceberg_conn_id)
    except (NoSuchTableError, NoSuchNamespaceError):
        return None
    snapshots = sorted(iceberg.metadata.snapshots, key=lambda s: (s.timestamp_ms, s.sequence_number or 0))
    if after_snapshot_id is not None:
        ids = [s.snapshot_id for s in snapshots]
        # An unknown (expired) snapshot: only snapshots after the newest known time can be newer.
        snapshots = snapshots[ids.index(after_snapshot_id) + 1 :] if after_snapshot_id in ids else snapshots[-1:]
    for snapshot in reversed(snapshots):
        info = describe_snapshot(snapshot)
        if snapshot_passes(
            info, operations=operations, require_properties=require_properties, exclude_properties=exclude_properties
        ):
            return snapshot_payload(table, "main", info)
    return None
