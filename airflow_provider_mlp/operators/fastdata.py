"""Fan out over an Iceberg table's shards and commit what the mapped tasks staged, exactly once.

::

    plan = IcebergShardsOperator(task_id="plan", table="content.title_pairs", target_bytes=256 << 20)

    @task
    def match(shard: dict) -> dict:
        pairs = Table("content.title_pairs").read(shard).to_arrow()
        return stage_to_table("content.title_matches", score(pairs), shard=shard, create_if_missing=True)

    IcebergCommitOperator(
        task_id="commit",
        table="content.title_matches",
        staged=match.expand(shard=plan.output),
        idempotency_key="{{ ds }}",  # re-running a day adds its rows once
    )

The commit task's outlet is the output table's Asset (``iceberg://<catalog>/<namespace>/<table>``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


def _table_to_write(
    identifier: str,
    iceberg_conn_id: str | None,
    *,
    create_if_missing: bool,
    schema: Any,
    partition_by: Any,
    table_properties: Mapping[str, Any] | None,
) -> Table:
    """The output table; created first when missing and ``create_if_missing`` (with ``schema``)."""
    from airflow_provider_mlp.errors import ConfigurationError
    from airflow_provider_mlp.fastdata import Table

    table = _table(identifier, iceberg_conn_id)
    if not create_if_missing:
        if schema is not None or partition_by is not None or table_properties is not None:
            raise ConfigurationError(
                f"schema, partition_by and table_properties describe the table {identifier!r} that "
                "create_if_missing=True creates; pass create_if_missing=True or drop them"
            )
        return table
    if table.catalog.table_exists(table.identifier):
        return table
    # exist_ok: of mapped tasks racing to create the table, the catalog lets one win and the others
    # load the winner's table (their data is then checked against its schema like any other).
    return Table.create(
        table.identifier,
        schema,
        partition_by=partition_by,
        properties=table_properties,
        catalog=table.catalog,
        exist_ok=True,
    )


def stage_to_table(
    table: str,
    data: Any,
    *,
    shard: Any,
    run_id: str | None = None,
    iceberg_conn_id: str | None = None,
    create_if_missing: bool = False,
    schema: Any = None,
    partition_by: Sequence[str] | Any = None,
    table_properties: Mapping[str, Any] | None = None,
    row_group_rows: int | None = None,
    row_group_bytes: int | None = None,
    target_file_bytes: int | None = None,
) -> dict[str, Any]:
    """Inside a (mapped) task: write ``data`` as staged files of ``table`` for the commit task.

    ``shard`` is a shard descriptor (its ``shard_id`` is used) or any id unique within the run;
    ``run_id`` defaults to the DAG run's, so a retried task rewrites its own files.

    With ``create_if_missing=True`` a missing table is created first, with ``schema`` (a pyarrow or
    pyiceberg Schema; default: the Arrow schema of ``data``), ``partition_by`` and
    ``table_properties`` as ``Table.create`` takes them. Mapped tasks may race to create it: one
    creates it, the others use it. ``row_group_rows``, ``row_group_bytes`` and ``target_file_bytes``
    size what is written (see ``Table.stage``).
    """
    from airflow_provider_mlp.fastdata.writer import to_arrow_table

    if run_id is None:
        from airflow.sdk import get_current_context

        run_id = str(get_current_context()["run_id"])
    arrow = to_arrow_table(data, table)
    if create_if_missing and schema is None:
        schema = arrow.schema
    output = _table_to_write(
        table,
        iceberg_conn_id,
        create_if_missing=create_if_missing,
        schema=schema,
        partition_by=partition_by,
        table_properties=table_properties,
    )
    return output.stage(
        arrow,
        shard_id=_shard_id(shard),
        run_id=run_id,
        row_group_rows=row_group_rows,
        row_group_bytes=row_group_bytes,
        target_file_bytes=target_file_bytes,
    )


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
    :param target_bytes: about how many (compressed) bytes each shard holds (templated, e.g.
        ``"{{ params.shard_bytes }}"``).
    :param row_filter: pyiceberg filter text, e.g. ``"year >= 2020"``.
    :param columns: the columns the shards' reads return (default: all).
    :param snapshot_id: plan against this snapshot (default: the current one).
    :param iceberg_conn_id: an ``iceberg`` connection; ``None`` for the embedded catalog.
    """

    template_fields: Sequence[str] = ("table", "target_bytes", "row_filter", "columns", "snapshot_id")

    def __init__(
        self,
        *,
        table: str,
        target_bytes: int | str = DEFAULT_TARGET_BYTES,
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

    def _target_bytes(self) -> int:
        from airflow_provider_mlp.errors import ConfigurationError

        try:
            value = int(str(self.target_bytes).strip())
        except ValueError:
            value = 0
        if value <= 0:
            raise ConfigurationError(
                f"{self.task_id}: target_bytes must be a positive number of bytes, got {self.target_bytes!r}"
            )
        return value

    def execute(self, context: Context) -> list[dict[str, Any]]:
        snapshot = int(self.snapshot_id) if self.snapshot_id not in (None, "", "None") else None
        shards = _table(self.table, self.iceberg_conn_id).shards(
            target_bytes=self._target_bytes(), row_filter=self.row_filter, columns=self.columns, snapshot_id=snapshot
        )
        total = sum(s["bytes"] for s in shards)
        self.log.info("Planned %d shard(s), %d bytes, of %s", len(shards), total, self.table)
        return shards


class IcebergCommitOperator(BaseOperator):
    """Commit every file the mapped tasks staged in ONE snapshot, once per idempotency key.

    The snapshot records the DAG run id and the idempotency key (default: the DAG run id). A commit
    whose key a snapshot already recorded adds nothing (and removes the files this run staged), so
    ``idempotency_key="{{ ds }}"`` makes a re-run of the same logical date, which Airflow gives a new
    run id, leave the rows once. To recompute a day instead, keep the default key and give
    ``overwrite_filter`` (e.g. ``"day = '{{ ds }}'"``): each run replaces those rows in the same commit.
    The table's Asset is this task's outlet (unless ``outlets`` are given) and its event carries the
    snapshot id.

    :param table: ``namespace.table`` to commit to.
    :param staged: what the staging tasks returned (usually ``mapped_task.output`` / its XComArg).
    :param idempotency_key: what makes the commit happen once (templated; default: the DAG run id).
    :param run_id: the older name of ``idempotency_key`` (give one of them).
    :param overwrite_filter: replace the rows matching this filter instead of appending.
    :param create_if_missing: create the table when it is still missing at commit time (no staging
        task created it, e.g. because nothing upstream had rows), from ``schema``.
    :param schema: the schema ``create_if_missing`` creates the table with (pyarrow or pyiceberg).
    :param partition_by: its partitioning, as ``Table.create`` takes it (``["day(ts)", "region"]``).
    :param table_properties: its table properties.
    :param snapshot_properties: extra properties for the snapshot's summary (templated; values become
        text), e.g. ``audit.output`` with a task returning ``{"er.precision": 0.97}`` measured on the
        staged rows (``Table.read_staged``) before they are published. The ``mlp.`` keys are the commit's own.
    :param iceberg_conn_id: an ``iceberg`` connection; ``None`` for the embedded catalog.
    """

    template_fields: Sequence[str] = (
        "table",
        "staged",
        "idempotency_key",
        "run_id",
        "overwrite_filter",
        "snapshot_properties",
    )

    def __init__(
        self,
        *,
        table: str,
        staged: Any,
        idempotency_key: str | None = None,
        run_id: str | None = None,
        overwrite_filter: str | None = None,
        create_if_missing: bool = False,
        schema: Any = None,
        partition_by: Sequence[str] | Any = None,
        table_properties: Mapping[str, Any] | None = None,
        snapshot_properties: Mapping[str, Any] | str | None = None,
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
        self.idempotency_key = idempotency_key
        self.run_id = run_id
        self.overwrite_filter = overwrite_filter
        self.create_if_missing = create_if_missing
        self.schema = schema
        self.partition_by = partition_by
        self.table_properties = table_properties
        self.snapshot_properties = snapshot_properties
        self.iceberg_conn_id = iceberg_conn_id

    def _key(self, dag_run_id: str) -> str:
        from airflow_provider_mlp.errors import ConfigurationError

        key, alias = (str(v) if v not in (None, "") else None for v in (self.idempotency_key, self.run_id))
        if key is not None and alias is not None and key != alias:
            raise ConfigurationError(
                f"{self.task_id}: idempotency_key={key!r} and run_id={alias!r} differ; run_id is the older name "
                "of idempotency_key, give one of them"
            )
        return key or alias or dag_run_id

    def _snapshot_properties(self) -> dict[str, Any] | None:
        """The rendered ``snapshot_properties``: a mapping, or JSON text of one (a template's output)."""
        import json

        from airflow_provider_mlp.errors import ConfigurationError

        value = self.snapshot_properties
        if value in (None, "", "None"):
            return None
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                value = None
        if not isinstance(value, Mapping):
            raise ConfigurationError(
                f"{self.task_id}: snapshot_properties must be a mapping of names to values (or JSON text of one), "
                f"got {str(self.snapshot_properties)[:200]!r}"
            )
        return dict(value)

    def _output(self, identifier: str, has_files: bool) -> Table:
        from airflow_provider_mlp.errors import ConfigurationError
        from airflow_provider_mlp.fastdata import TableNotFoundError

        table = _table(identifier, self.iceberg_conn_id)
        if not self.create_if_missing or table.catalog.table_exists(table.identifier):
            return table
        if has_files:
            raise TableNotFoundError(
                f"table {table.identifier!r} does not exist, yet files were staged for it (was it dropped after "
                "staging?); re-run the staging tasks"
            )
        if self.schema is None:
            raise ConfigurationError(
                f"{self.task_id}: table {table.identifier!r} is missing and nothing was staged to create it from; "
                "give IcebergCommitOperator(schema=...) so that create_if_missing can create it empty"
            )
        return _table_to_write(
            identifier,
            self.iceberg_conn_id,
            create_if_missing=True,
            schema=self.schema,
            partition_by=self.partition_by,
            table_properties=self.table_properties,
        )

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_mlp.assets import table_asset_uri
        from airflow_provider_mlp.fastdata.identifiers import table_identifier
        from airflow_provider_mlp.fastdata.writer import flatten_staged

        dag_run_id = str(context["run_id"])
        key = self._key(dag_run_id)
        identifier = table_identifier(self.table)
        # ``staged`` is a template field: it may arrive as JSON text, a record, or (nested) lists of them.
        # Files staged under the DAG run's id (stage_to_table's default) or under the key itself are this run's.
        staged = flatten_staged(self.staged, identifier, [dag_run_id, key])
        table = self._output(identifier, any(record["files"] for record in staged))
        outcome = table._commit(
            staged,
            run_id=None if staged else dag_run_id,
            idempotency_key=key,
            overwrite_filter=self.overwrite_filter or None,
            snapshot_properties=self._snapshot_properties(),
        )
        uri = table_asset_uri(_catalog_name(self.iceberg_conn_id), table.identifier)
        self.log.info("%s", outcome.describe(uri))
        snapshot = outcome.snapshot_id
        outlet_events = context.get("outlet_events")
        if outlet_events is not None:
            for outlet in self.outlets or ():
                if getattr(outlet, "uri", None) == uri:
                    outlet_events[outlet].extra.update(
                        {
                            **_snapshot_event(self, table.identifier, snapshot, outcome.run_id),
                            "idempotency_key": key,
                        }
                    )
        return {
            "table": table.identifier,
            "snapshot_id": snapshot,
            "run_id": outcome.run_id,
            "idempotency_key": key,
            "already_committed": outcome.already_committed,
            "uri": uri,
        }
