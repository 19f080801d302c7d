"""Wait inside a DAG until an Iceberg table has a new snapshot: ``IcebergSnapshotSensor`` (deferrable)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


class IcebergSnapshotSensor(BaseSensorOperator):
    """Until ``table`` has a snapshot newer than ``after_snapshot_id`` (any, when not given) passing the filters.

    Returns (XCom) the snapshot's ``iceberg.snapshot`` payload: ``snapshot_id``, ``operation``, ``summary``,
    ``run_id``. With ``deferrable=True`` (the default) the wait runs in the triggerer, not a worker slot.

    :param table: ``namespace.table``.
    :param after_snapshot_id: wait for a snapshot committed after this one (templated).
    :param operations: only snapshots of these operations.
    :param require_properties: summary property -> fnmatch pattern, all must match (e.g. ``{"mlp.run-id": "etl/*"}``).
    :param exclude_properties: summary property -> fnmatch pattern, any match skips the snapshot.
    :param iceberg_conn_id: an ``iceberg`` connection; ``None`` for the embedded catalog.
    """

    template_fields: Sequence[str] = ("table", "after_snapshot_id", "require_properties", "exclude_properties")

    def __init__(
        self,
        *,
        table: str,
        after_snapshot_id: int | str | None = None,
        operations: Sequence[str] | None = None,
        require_properties: Mapping[str, str] | None = None,
        exclude_properties: Mapping[str, str] | None = None,
        iceberg_conn_id: str | None = None,
        deferrable: bool = True,
        poke_interval: float = 30,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, **kwargs)
        self.table = table
        self.after_snapshot_id = after_snapshot_id
        self.operations = operations
        self.require_properties = require_properties
        self.exclude_properties = exclude_properties
        self.iceberg_conn_id = iceberg_conn_id
        self.deferrable = deferrable

    def _trigger(self) -> Any:
        from airflow_provider_mlp.triggers.iceberg import IcebergSnapshotTrigger

        after = self.after_snapshot_id
        return IcebergSnapshotTrigger(
            table=self.table,
            iceberg_conn_id=self.iceberg_conn_id,
            after_snapshot_id=int(after) if after not in (None, "", "None") else None,
            operations=self.operations,
            require_properties=self.require_properties,
            exclude_properties=self.exclude_properties,
            poll_interval=self.poke_interval,
        )

    def poke(self, context: Context) -> Any:
        from airflow.sdk import PokeReturnValue

        found = self._trigger().check()
        return PokeReturnValue(is_done=found is not None, xcom_value=found)

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        trigger = self._trigger()
        found = trigger.check()
        if found is not None:
            return found
        from datetime import timedelta

        self.defer(trigger=trigger, method_name="execute_complete", timeout=timedelta(seconds=self.timeout))
        return None

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        self.log.info("Snapshot %s of %s: %s", event.get("snapshot_id"), self.table, event.get("operation"))
        return {k: v for k, v in event.items() if k != "status"}
