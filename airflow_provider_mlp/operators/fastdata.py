"""Fan out over an Iceberg table's shards and commit what the mapped tasks staged, exactly once.

::

    plan = IcebergShardsOperator(task_id="plan", table="content.title_pairs", target_bytes=256 << 20)

    @task
    def match(shard: dict) -> dict:
        pairs = Table("content.title_pairs").read(shard).to_arrow()
        return stage_to_table("content.title_matches", score(pairs), shard=shard)

    IcebergCommitOperator(task_id="commit", table="content.title_matches", staged=match.expand(shard=plan.output))

The commit task's outlet is the output table's Asset (``iceberg://<catalog>/<namespace>/<table>``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_mlp.fastdata.defaults import DEFAULT_TARGET_BYTES

if TYPE_CHECKING:
    from airflow.sdk import Asset, Context

    from airflow_provider_mlp.fastdata import Table


def _table(identifier: str, iceberg_conn_id: str | None) -> Table:
    from airflow_provider_mlp.hooks.iceberg import MlpIcebergHook

    return MlpIcebergHook(iceberg_conn_id=iceberg_conn_id).get_table(identifier)


def _catalog_name(iceberg_conn_id: str | None) -> str:
    from airflow_provider_mlp.hooks.iceberg import catalog_name_for

    return catalog_name_for(iceberg_conn_id)


def iceberg_table_asset(table: str, iceberg_conn_id: str | None = None) -> Asset:
    """The Asset of ``table`` in the embedded catalog or the connection's (for ``outlets=``/``schedule=``)."""
    from airflow_provider_mlp.assets import create_asset

    return create_asset(catalog=_catalog_name(iceberg_conn_id), table=table)


def _automatic_outlet(table: str, iceberg_conn_id: str | None) -> Asset | None:
    # No validation at DAG parse time: a bad table name gets no automatic outlet here and its clear
    # error when the task runs.
    try:
        return iceberg_table_asset(table, iceberg_conn_id)
    except ValueError:
        return None


def stage_to_table(
    table: str,
    data: Any,
    *,
    shard: Any,
    run_id: str | None = None,
    iceberg_conn_id: str | None = None,
) -> dict[str, Any]:
    """Inside a (mapped) task: write ``data`` as staged files of ``table`` for the commit task.

    ``shard`` is a shard descriptor (its ``shard_id`` is used) or any id unique within the run;
    ``run_id`` defaults to the DAG run's, so a retried task rewrites its own files.
    """
    if run_id is None:
        from airflow.sdk import get_current_context

        run_id = str(get_current_context()["run_id"])
    return _table(table, iceberg_conn_id).stage(data, shard_id=_shard_id(shard), run_id=run_id)


def _shard_id(shard: Any) -> Any:
    """A shard descriptor's own id; any other dict is its canonical JSON, so distinct dicts never share file names."""
    import json
    from collections.abc import Mapping

    from airflow_provider_mlp.fastdata.planning import SHARD_KIND

    if isinstance(shard, Mapping):
        if shard.get("kind") == SHARD_KIND and shard.get("shard_id") is not None:
            return shard["shard_id"]
        return json.dumps(shard, sort_keys=True, default=str)
    return shard


def _snapshot_event(task: BaseOperator, table: str, snapshot: int | None, run_id: str) -> dict[str, Any]:
    """The commit's asset event extra: an ``iceberg.snapshot`` event (plain ids when nothing was committed)."""
    if snapshot is None:
        return {"snapshot_id": None, "run_id": run_id}
    from airflow_provider_mlp.events.schema import ICEBERG_SNAPSHOT

    return ICEBERG_SNAPSHOT.envelope(
        f"{task.dag_id}/{task.task_id}", table=table, snapshot_id=int(snapshot), run_id=run_id
    )


class IcebergShardsOperator(BaseOperator):
    """Plan an Iceberg scan and return its shard descriptors (JSON, via XCom) for ``.expand()``.

    Partition and statistics pruning come from pyiceberg's planner; shards are balanced by bytes and
    pinned to one snapshot, so every mapped task reads the same version of the table.

    :param table: ``namespace.table``.
    :param target_bytes: about how many (compressed) bytes each shard holds.
    :param row_filter: pyiceberg filter text, e.g. ``"year >= 2020"``.
    :param columns: the columns the shards' reads return (default: all).
    :param snapshot_id: plan against this snapshot (default: the current one).
    :param iceberg_conn_id: an ``iceberg`` connection; ``None`` for the embedded catalog.
    """

    template_fields: Sequence[str] = ("table", "row_filter", "columns", "snapshot_id")

    def __init__(
        self,
        *,
        table: str,
        target_bytes: int = DEFAULT_TARGET_BYTES,
        row_filter: str | None = None,
        columns: list[str] | None = None,
        snapshot_id: int | None = None,
        iceberg_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.table = table
        self.target_bytes = target_bytes
        self.row_filter = row_filter
        self.columns = columns
        self.snapshot_id = snapshot_id
        self.iceberg_conn_id = iceberg_conn_id

    def execute(self, context: Context) -> list[dict[str, Any]]:
        snapshot = int(self.snapshot_id) if self.snapshot_id not in (None, "", "None") else None
        shards = _table(self.table, self.iceberg_conn_id).shards(
            target_bytes=self.target_bytes, row_filter=self.row_filter, columns=self.columns, snapshot_id=snapshot
        )
        total = sum(s["bytes"] for s in shards)
        self.log.info("Planned %d shard(s), %d bytes, of %s", len(shards), total, self.table)
        return shards


class IcebergCommitOperator(BaseOperator):
    """Commit every file the mapped tasks staged in ONE snapshot recording the DAG run id.

    Re-running the task for the same run is a no-op; with ``overwrite_filter`` the rows matching it
    (e.g. ``"day = '2024-05-01'"``) are replaced in the same commit. The table's Asset is this task's
    outlet (unless ``outlets`` are given) and its event carries the snapshot id.

    :param table: ``namespace.table`` to commit to.
    :param staged: what the staging tasks returned (usually ``mapped_task.output`` / its XComArg).
    :param run_id: the exactly-once key (default: the DAG run id).
    :param overwrite_filter: replace the rows matching this filter instead of appending.
    :param iceberg_conn_id: an ``iceberg`` connection; ``None`` for the embedded catalog.
    """

    template_fields: Sequence[str] = ("table", "staged", "run_id", "overwrite_filter")

    def __init__(
        self,
        *,
        table: str,
        staged: Any,
        run_id: str | None = None,
        overwrite_filter: str | None = None,
        iceberg_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        if "outlets" not in kwargs and "{{" not in table:
            outlet = _automatic_outlet(table, iceberg_conn_id)
            if outlet is not None:
                kwargs["outlets"] = [outlet]
        super().__init__(**kwargs)
        self.table = table
        self.staged = staged
        self.run_id = run_id
        self.overwrite_filter = overwrite_filter
        self.iceberg_conn_id = iceberg_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_mlp.assets import table_asset_uri
        from airflow_provider_mlp.fastdata.writer import flatten_staged

        run_id = self.run_id or str(context["run_id"])
        table = _table(self.table, self.iceberg_conn_id)
        # ``staged`` is a template field: it may arrive as JSON text, a record, or (nested) lists of them.
        staged = flatten_staged(self.staged, table.identifier, run_id)
        if self.overwrite_filter:
            snapshot = table.overwrite(staged, self.overwrite_filter, run_id=run_id)
        else:
            snapshot = table.commit(staged, run_id=run_id)
        uri = table_asset_uri(_catalog_name(self.iceberg_conn_id), table.identifier)
        files = sum(len(record["files"]) for record in staged)
        self.log.info("Committed %d file(s) of run %s to %s as snapshot %s", files, run_id, uri, snapshot)
        outlet_events = context.get("outlet_events")
        if outlet_events is not None:
            for outlet in self.outlets or ():
                if getattr(outlet, "uri", None) == uri:
                    outlet_events[outlet].extra.update(_snapshot_event(self, table.identifier, snapshot, run_id))
        return {"table": table.identifier, "snapshot_id": snapshot, "run_id": run_id, "uri": uri}
