"""``Table``: an Iceberg table in a pyiceberg catalog, with fast reads and exactly-once writes."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_mlp.fastdata.catalog import resolve_catalog
from airflow_provider_mlp.fastdata.defaults import (
    DEFAULT_BATCH_ROWS,
    DEFAULT_DECODER,
    DEFAULT_IO_CONCURRENCY,
    DEFAULT_TARGET_BYTES,
)
from airflow_provider_mlp.fastdata.errors import (
    ColumnNotFoundError,
    SchemaMismatchError,
    ShardError,
    SnapshotError,
    TableExistsError,
    TableNotFoundError,
    UnsupportedDeletesError,
)
from airflow_provider_mlp.fastdata.filters import bind_filter, filter_text, parse_filter
from airflow_provider_mlp.fastdata.frame import DataFrame
from airflow_provider_mlp.fastdata.identifiers import table_identifier

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa
    from pyiceberg.catalog import Catalog
    from pyiceberg.expressions import BooleanExpression
    from pyiceberg.partitioning import PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.table import FileScanTask
    from pyiceberg.table import Table as IcebergTable

    from airflow_provider_mlp.fastdata.reader import ReadPlan
    from airflow_provider_mlp.fastdata.writer import CommitOutcome


def iceberg_schema(schema: Any, table: str, format_version: int = 2) -> Schema:
    """``schema`` (a pyarrow or pyiceberg Schema) as a pyiceberg Schema with field ids."""
    import pyarrow as pa
    from pyiceberg.schema import Schema, assign_fresh_schema_ids

    if isinstance(schema, Schema):
        converted = schema
    elif isinstance(schema, pa.Schema):
        from pyiceberg.catalog import Catalog

        try:
            converted = assign_fresh_schema_ids(Catalog._convert_schema_if_needed(schema, format_version))  # type: ignore[arg-type]
        except Exception as exc:  # pyiceberg's ValueError and UnsupportedPyArrowTypeException name the column
            raise SchemaMismatchError(f"schema of table {table!r} cannot be stored in Iceberg: {exc}") from None
    else:
        raise SchemaMismatchError(
            f"schema of table {table!r} must be a pyarrow Schema or a pyiceberg Schema, got {type(schema).__name__}"
        )
    if not converted.fields:
        raise SchemaMismatchError(f"schema of table {table!r} has no columns")
    return converted


class Table:
    """An Iceberg table: ``Table("ns.name")`` uses the embedded catalog; ``catalog=`` or ``conn_id=`` pick another.

    Reads are planned by pyiceberg (partition and statistics pruning, time travel) and executed by
    this package's reader; writes go through ``stage`` + ``commit`` (or ``overwrite``). ``decoder`` picks who
    decodes local Parquet files: ``"polars"`` (its native reader, when the ``polars`` extra is installed,
    with this package's native kernel for flat columns of reads without filter or deletes), ``"pyarrow"``,
    or ``"auto"`` (polars if installed); results and schemas are the same either way.
    """

    def __init__(
        self,
        identifier: str | Sequence[str],
        catalog: Catalog | Mapping[str, Any] | None = None,
        conn_id: str | None = None,
        *,
        io_concurrency: int = DEFAULT_IO_CONCURRENCY,
        decoder: str = DEFAULT_DECODER,
    ) -> None:
        self.identifier = table_identifier(identifier)
        self._catalog_arg = catalog
        self._conn_id = conn_id
        self._catalog: Catalog | None = None
        self._table: IcebergTable | None = None
        self.io_concurrency = io_concurrency
        # Checked when a read is planned: "auto", "polars" or "pyarrow" (see fastdata.polars_decode).
        self.decoder = decoder
        self._plans: dict[tuple[int, str], list[FileScanTask]] = {}
        self._lock = threading.Lock()

    @classmethod
    def create(
        cls,
        identifier: str | Sequence[str],
        schema: pa.Schema | Schema,
        *,
        partition_by: Sequence[str] | PartitionSpec | None = None,
        properties: Mapping[str, Any] | None = None,
        catalog: Catalog | Mapping[str, Any] | None = None,
        conn_id: str | None = None,
        exist_ok: bool = False,
        io_concurrency: int = DEFAULT_IO_CONCURRENCY,
    ) -> Table:
        """Create the Iceberg table ``identifier`` (and its namespace, if missing) and return it.

        ``schema`` is a pyarrow Schema (nullable fields become optional columns, non-nullable ones
        required) or a pyiceberg Schema. ``partition_by`` lists column names (identity partitions)
        and transforms such as ``"day(ts)"``, ``"bucket(16, id)"``, ``"truncate(4, name)"``, or is a
        pyiceberg PartitionSpec. ``properties`` are table properties (values are turned into text),
        e.g. ``{"write.parquet.row-group-limit": 50_000}``.

        An existing table raises ``TableExistsError``; with ``exist_ok=True`` it is returned as it is
        (its schema and partitioning are not compared), so that concurrent creators all succeed: the
        catalog lets one of them create the table and the others load it.
        """
        from pyiceberg.exceptions import TableAlreadyExistsError

        from airflow_provider_mlp.fastdata.partitioning import partition_spec

        table = cls(identifier, catalog=catalog, conn_id=conn_id, io_concurrency=io_concurrency)
        props = {str(key): str(value) for key, value in (properties or {}).items()}
        converted = iceberg_schema(schema, table.identifier, int(props.get("format-version", 2)))
        spec = partition_spec(converted, partition_by, table.identifier)
        resolved = table.catalog
        if not resolved.namespace_exists(table.namespace):
            # Only when missing: a catalog may let a user create tables but not namespaces.
            try:
                resolved.create_namespace(table.namespace)
            except Exception:
                # A concurrent creator made it first; the SQL catalog reports that race as an
                # IntegrityError rather than NamespaceAlreadyExistsError.
                if not resolved.namespace_exists(table.namespace):
                    raise
        try:
            table._table = resolved.create_table(
                table.identifier, schema=converted, partition_spec=spec, properties=props
            )
        except TableAlreadyExistsError:
            if not exist_ok:
                raise TableExistsError(
                    f"table {table.identifier!r} already exists in catalog {resolved.name!r} "
                    "(pass exist_ok=True to use the existing table)"
                ) from None
            table.refresh()
        return table

    # -- catalog and metadata -------------------------------------------------------------------

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            self._catalog = resolve_catalog(self._catalog_arg, self._conn_id)
        return self._catalog

    @property
    def catalog_name(self) -> str:
        return str(self.catalog.name)

    @property
    def namespace(self) -> str:
        return self.identifier.rsplit(".", 1)[0]

    @property
    def name(self) -> str:
        return self.identifier.rsplit(".", 1)[1]

    def _load(self) -> IcebergTable:
        from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

        catalog = self.catalog
        try:
            return catalog.load_table(self.identifier)
        except (NoSuchTableError, NoSuchNamespaceError):
            pass
        try:
            namespaces = [".".join(ns) for ns in catalog.list_namespaces()]
        except Exception:
            namespaces = []
        if namespaces and self.namespace not in namespaces:
            raise TableNotFoundError(
                f"namespace {self.namespace!r} of table {self.identifier!r} does not exist in catalog "
                f"{catalog.name!r} (namespaces: {', '.join(sorted(namespaces)) or 'none'})"
            ) from None
        if not namespaces:
            raise TableNotFoundError(
                f"table {self.identifier!r} does not exist in catalog {catalog.name!r}: namespace "
                f"{self.namespace!r} does not exist (the catalog has no namespaces)"
            ) from None
        try:
            tables = [".".join(t) for t in catalog.list_tables(self.namespace)]
        except Exception:
            tables = []
        raise TableNotFoundError(
            f"table {self.identifier!r} does not exist in catalog {catalog.name!r} "
            f"(tables in namespace {self.namespace!r}: {', '.join(sorted(tables)) or 'none'})"
        ) from None

    @property
    def iceberg(self) -> IcebergTable:
        """The pyiceberg table, loaded on first use; ``refresh()`` reloads it."""
        if self._table is None:
            self._table = self._load()
        return self._table

    def refresh(self) -> Table:
        self._table = self._load()
        return self

    @property
    def schema(self) -> Schema:
        return self.iceberg.schema()

    @property
    def arrow_schema(self) -> pa.Schema:
        return self.iceberg.schema().as_arrow()

    @property
    def spec(self) -> PartitionSpec:
        return self.iceberg.spec()

    @property
    def location(self) -> str:
        return str(self.iceberg.location())

    @property
    def current_snapshot_id(self) -> int | None:
        snapshot = self.iceberg.current_snapshot()
        return snapshot.snapshot_id if snapshot else None

    def snapshots(self) -> list[dict[str, Any]]:
        """Every snapshot, oldest first: id, parent, time, operation and summary."""
        out = []
        for snapshot in self.iceberg.metadata.snapshots:
            summary = snapshot.summary
            out.append(
                {
                    "snapshot_id": snapshot.snapshot_id,
                    "parent_snapshot_id": snapshot.parent_snapshot_id,
                    "timestamp_ms": snapshot.timestamp_ms,
                    "operation": summary.operation.value if summary is not None else None,
                    "summary": dict(summary.additional_properties) if summary is not None else {},
                    "schema_id": snapshot.schema_id,
                }
            )
        return out

    def partitions(self, snapshot_id: int | None = None) -> list[dict[str, Any]]:
        """The table's partitions with their record and file counts (pyiceberg's partitions table)."""
        if self.current_snapshot_id is None:
            return []
        return self.iceberg.inspect.partitions(snapshot_id=snapshot_id).to_pylist()

    def __repr__(self) -> str:
        return f"Table({self.identifier!r})"

    # -- planning ---------------------------------------------------------------------------------

    def _resolve_snapshot(self, snapshot_id: int | None, as_of: datetime | int | None) -> int | None:
        if snapshot_id is None and self._table is not None:
            # "Current" means the catalog's current snapshot now, not when this object first loaded it.
            self.refresh()
        table = self.iceberg
        if snapshot_id is not None and as_of is not None:
            raise SnapshotError(f"give snapshot_id or as_of for table {self.identifier!r}, not both")
        if snapshot_id is not None:
            if table.snapshot_by_id(int(snapshot_id)) is None:
                self.refresh()
                if self.iceberg.snapshot_by_id(int(snapshot_id)) is None:
                    raise SnapshotError(
                        f"snapshot {snapshot_id} does not exist in table {self.identifier!r} (expired, or from "
                        f"another table); current snapshot is {self.current_snapshot_id}"
                    )
            return int(snapshot_id)
        if as_of is not None:
            timestamp_ms = int(as_of.timestamp() * 1000) if isinstance(as_of, datetime) else int(as_of)
            snapshot = table.snapshot_as_of_timestamp(timestamp_ms)
            if snapshot is None:
                raise SnapshotError(f"table {self.identifier!r} has no snapshot at or before {as_of!r}")
            return snapshot.snapshot_id
        return self.current_snapshot_id

    def _schema_id(self, snapshot_id: int | None, as_of: datetime | int | None) -> int | None:
        """The schema a read uses: the table's current one, as pyiceberg's scan does, unless the read
        travels in time (then the snapshot's own, None here)."""
        if snapshot_id is None and as_of is None:
            return int(self.iceberg.schema().schema_id)
        return None

    def _projection(
        self, snapshot_id: int | None, columns: Sequence[str] | None, schema_id: int | None = None
    ) -> Schema:
        table = self.iceberg
        schema = table.schema()
        if schema_id is not None and schema_id in table.schemas():
            schema = table.schemas()[schema_id]
        elif snapshot_id is not None:
            snapshot = table.snapshot_by_id(snapshot_id)
            if snapshot is not None and snapshot.schema_id is not None:
                schema = table.schemas().get(snapshot.schema_id, schema)
        if columns is None:
            return schema
        if isinstance(columns, str):
            raise ColumnNotFoundError(f"columns must be a list of names, got the string {columns!r}")
        for column in columns:
            try:
                schema.find_field(column)
            except ValueError:
                available = ", ".join(f.name for f in schema.fields)
                raise ColumnNotFoundError(
                    f"column {column!r} is not in table {self.identifier!r} (columns: {available})"
                ) from None
        return schema.select(*columns, case_sensitive=True)

    def _tasks(self, snapshot_id: int | None, expr: BooleanExpression, text: str) -> list[FileScanTask]:
        if snapshot_id is None:
            return []
        key = (snapshot_id, text)
        with self._lock:
            cached = self._plans.get(key)
        if cached is not None:
            return cached
        scan = self.iceberg.scan(row_filter=expr, snapshot_id=snapshot_id, case_sensitive=True)
        try:
            tasks = list(scan.plan_files())
        except ValueError as exc:
            if "equality delete" not in str(exc):
                raise
            raise UnsupportedDeletesError(
                f"table {self.identifier!r} (snapshot {snapshot_id}) has equality delete files "
                f"{', '.join(self._equality_delete_files(snapshot_id)) or '(unlisted)'}; equality deletes are not "
                "supported (compact the table first, or read it with an engine that applies them)"
            ) from None
        with self._lock:
            if len(self._plans) > 16:
                self._plans.clear()
            self._plans[key] = tasks
        return tasks

    def _equality_delete_files(self, snapshot_id: int) -> list[str]:
        from pyiceberg.manifest import DataFileContent, ManifestContent

        snapshot = self.iceberg.snapshot_by_id(snapshot_id)
        if snapshot is None:
            return []
        io = self.iceberg.io
        found = []
        for manifest in snapshot.manifests(io):
            if manifest.content != ManifestContent.DELETES:
                continue
            for entry in manifest.fetch_manifest_entry(io, discard_deleted=True):
                if entry.data_file.content == DataFileContent.EQUALITY_DELETES:
                    found.append(entry.data_file.file_path)
        return sorted(found)

    def _filter(self, row_filter: Any, schema: Schema) -> tuple[BooleanExpression, str]:
        expr = parse_filter(row_filter, self.identifier, columns=schema.column_names)
        text = filter_text(row_filter)
        bind_filter(expr, schema, self.identifier, text)
        return expr, text

    def shards(
        self,
        target_bytes: int = DEFAULT_TARGET_BYTES,
        row_filter: Any = None,
        columns: Sequence[str] | None = None,
        snapshot_id: int | None = None,
        as_of: datetime | int | None = None,
    ) -> list[dict[str, Any]]:
        """JSON shard descriptors of about ``target_bytes`` each (XCom-safe, for ``.expand()``)."""
        from airflow_provider_mlp.fastdata.fetch import properties_of
        from airflow_provider_mlp.fastdata.planning import plan_shards

        resolved = self._resolve_snapshot(snapshot_id, as_of)
        schema_id = self._schema_id(snapshot_id, as_of)
        schema = self._projection(resolved, None, schema_id)
        self._projection(resolved, columns, schema_id)
        expr, text = self._filter(row_filter, self.iceberg.schema())
        bind_filter(expr, schema, self.identifier, text)
        return plan_shards(
            table=self.identifier,
            catalog=self.catalog_name,
            snapshot_id=resolved,
            schema_id=schema.schema_id,
            row_filter=text,
            columns=columns,
            tasks=self._tasks(resolved, expr, text),
            target_bytes=target_bytes,
            io_properties=properties_of(self.iceberg.io),
            io_concurrency=self.io_concurrency,
            io=self.iceberg.io,
        )

    # -- reading ----------------------------------------------------------------------------------

    def _read_plan(
        self,
        shard: Any,
        columns: Sequence[str] | None,
        row_filter: Any,
        snapshot_id: int | None,
        as_of: datetime | int | None,
        dictionary_columns: Sequence[str],
        schema_id: int | None = None,
        string_view: bool = False,
    ) -> tuple[ReadPlan, list[tuple[FileScanTask, list[int] | None]]]:
        from pyiceberg.expressions import And

        from airflow_provider_mlp.fastdata.planning import validate_shard
        from airflow_provider_mlp.fastdata.reader import ReadPlan

        if shard is not None:
            descriptor = validate_shard(shard, self.identifier)
            if snapshot_id is not None or as_of is not None:
                raise ShardError(f"a shard of table {self.identifier!r} fixes its snapshot; drop snapshot_id/as_of")
            resolved = descriptor["snapshot_id"]
            if resolved is not None:
                try:
                    resolved = self._resolve_snapshot(resolved, None)
                except SnapshotError as exc:
                    raise ShardError(f"shard {descriptor.get('shard_id')!r}: {exc}") from None
            shard_expr, shard_text = self._filter(descriptor["row_filter"], self.iceberg.schema())
            if columns is None:
                columns = descriptor.get("columns")
            if schema_id is None:
                schema_id = descriptor.get("schema_id")
        else:
            descriptor = None
            # Snapshot first: it refreshes a table loaded earlier, and the schema is then the refreshed
            # one (a fresh Table loads its metadata once, not twice).
            resolved = self._resolve_snapshot(snapshot_id, as_of)
            if schema_id is None:
                schema_id = self._schema_id(snapshot_id, as_of)
        projected = self._projection(resolved, columns, schema_id)
        for name in dictionary_columns:
            if name not in projected.column_names:
                raise ColumnNotFoundError(
                    f"dictionary column {name!r} is not among the columns read from table {self.identifier!r} "
                    f"({', '.join(projected.column_names)})"
                )
        expr, text = self._filter(row_filter, self.iceberg.schema())
        if descriptor is not None:
            tasks = self._tasks(resolved, shard_expr, shard_text)
            by_path = {t.file.file_path: t for t in tasks}
            parts: list[tuple[FileScanTask, list[int] | None]] = []
            for entry in descriptor["files"]:
                task = by_path.get(entry["path"])
                if task is None:
                    raise ShardError(
                        f"shard {descriptor.get('shard_id')!r} names data file {entry['path']} which snapshot "
                        f"{resolved} of table {self.identifier!r} does not have (a descriptor from another snapshot?)"
                    )
                if task.file.file_size_in_bytes != entry.get("file_size", task.file.file_size_in_bytes):
                    raise ShardError(f"data file {entry['path']} changed size since shard was planned")
                parts.append((task, entry.get("row_groups")))
            expr = And(shard_expr, expr)  # And(x, AlwaysTrue()) is x itself
        else:
            parts = [(t, None) for t in self._tasks(resolved, expr, text)]
        plan = ReadPlan.create(
            self.identifier,
            self.iceberg.metadata,
            self.iceberg.io,
            projected,
            expr,
            dictionary_columns=dictionary_columns,
            io_concurrency=self.io_concurrency,
            decoder=self.decoder,
            string_view=string_view,
        )
        return plan, parts

    def read(
        self,
        shard: Any = None,
        columns: Sequence[str] | None = None,
        row_filter: Any = None,
        *,
        snapshot_id: int | None = None,
        as_of: datetime | int | None = None,
        dictionary_columns: Sequence[str] = (),
        string_view: bool = False,
    ) -> DataFrame:
        """Read a shard (or, with ``shard=None``, the whole table) into memory.

        The result has pyiceberg's projected schema (``large_string``, ``large_binary``, ``large_list``).
        ``string_view=True`` gives strings and binaries, nested ones included, as Arrow's
        ``string_view`` / ``binary_view`` instead: what polars holds, so the polars decoder's output
        is not copied into large strings and ``to_polars()`` does not copy it back. pyarrow 26 has
        no compute kernels for views (``filter``, ``take``, ``sort_by``, comparisons): for those,
        read with the default or ``cast`` first.
        """
        from airflow_provider_mlp.fastdata.reader import read_table

        plan, parts = self._read_plan(
            shard, columns, row_filter, snapshot_id, as_of, dictionary_columns, string_view=string_view
        )
        return DataFrame(read_table(plan, parts))

    def read_batches(
        self,
        shard: Any = None,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        columns: Sequence[str] | None = None,
        row_filter: Any = None,
        *,
        snapshot_id: int | None = None,
        as_of: datetime | int | None = None,
        dictionary_columns: Sequence[str] = (),
        prefetch: int = 2,
        string_view: bool = False,
    ) -> Iterator[pa.RecordBatch]:
        """Stream record batches of at most ``batch_rows`` rows; memory stays bounded by ``prefetch`` row groups.

        ``string_view`` as for ``read``.
        """
        from airflow_provider_mlp.fastdata.reader import iter_batches

        plan, parts = self._read_plan(
            shard, columns, row_filter, snapshot_id, as_of, dictionary_columns, string_view=string_view
        )
        return iter_batches(plan, parts, batch_rows, prefetch=prefetch)

    def scan_polars(
        self,
        shard: Any = None,
        *,
        snapshot_id: int | None = None,
        as_of: datetime | int | None = None,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        prefetch: int = 2,
    ) -> pl.LazyFrame:
        """A polars LazyFrame over the table (or ``shard``) that this reader executes on ``collect``.

        The columns polars needs and the parts of its filter that pyiceberg can evaluate (comparisons
        with literals, ``is_null``, ``is_in``, ``&``, ``|``, ``~``) reach the planner and the reader, so
        they prune files, row groups and columns; polars applies the full filter to what is read. The
        snapshot is fixed when the frame is made: collecting it twice reads the same data. Needs the
        ``polars`` extra.
        """
        from airflow_provider_mlp.fastdata.polars_scan import scan_polars

        return scan_polars(self, shard, snapshot_id=snapshot_id, as_of=as_of, batch_rows=batch_rows, prefetch=prefetch)

    # -- writing ----------------------------------------------------------------------------------

    def stage(
        self,
        data: Any,
        *,
        shard_id: Any,
        run_id: str,
        row_group_rows: int | None = None,
        row_group_bytes: int | None = None,
        target_file_bytes: int | None = None,
    ) -> dict[str, Any]:
        """Write ``data`` as data files for ``commit``; a retry with the same ids rewrites the same files.

        Row groups (the smallest piece ``shards`` can hand out) end at ``row_group_rows`` rows or about
        ``row_group_bytes`` uncompressed bytes, whichever comes first; files hold about
        ``target_file_bytes`` uncompressed bytes. Each defaults to the table property
        (``write.parquet.row-group-limit``, ``write.parquet.row-group-size-bytes``,
        ``write.target-file-size-bytes``), then to ``fastdata.defaults``.
        """
        from airflow_provider_mlp.fastdata.writer import WriteLayout, stage

        layout = WriteLayout(
            row_group_rows=row_group_rows, row_group_bytes=row_group_bytes, target_file_bytes=target_file_bytes
        )
        return stage(self.refresh().iceberg, self.identifier, data, shard_id=shard_id, run_id=run_id, layout=layout)

    def commit(
        self,
        staged: Any,
        *,
        run_id: str | None = None,
        idempotency_key: str | None = None,
        snapshot_properties: Mapping[str, Any] | None = None,
    ) -> int | None:
        """Add every staged file in ONE snapshot; a second commit with the same idempotency key is a no-op.

        ``run_id`` is the run that staged the files (default: the one the staged records name);
        ``idempotency_key`` (default: the run id) is what makes the commit happen once: a later run
        committing under a key an earlier run already committed adds nothing and removes the files
        it staged. ``snapshot_properties`` are added to the snapshot's summary (values as text), e.g.
        ``{"er.precision": 0.97}`` measured with ``read_staged`` before publishing. Returns the
        snapshot holding the data (the earlier one when already committed).
        """
        return self._commit(
            staged, run_id=run_id, idempotency_key=idempotency_key, snapshot_properties=snapshot_properties
        ).snapshot_id

    def read_staged(self, staged: Any, columns: Sequence[str] | None = None) -> pa.Table:
        """The rows of staged, not yet committed files (what ``stage`` returned), to audit before ``commit``.

        Readers of the table do not see these rows until the commit; this is the "audit" step of a
        write-audit-publish: measure the staged output, then commit it with the measurement in the
        snapshot summary (``snapshot_properties``).
        """
        from airflow_provider_mlp.fastdata.writer import read_staged

        return read_staged(self.refresh().iceberg, self.identifier, staged, columns)

    def overwrite(
        self,
        data: Any,
        row_filter: Any,
        *,
        run_id: str,
        shard_id: Any = "overwrite",
        idempotency_key: str | None = None,
    ) -> int | None:
        """Replace the rows matching ``row_filter`` (e.g. one partition) by ``data`` (a table or staged files).

        With the default key (the run id) each run replaces the rows again: the last run wins.
        """
        from airflow_provider_mlp.fastdata.writer import is_staged, stage

        self._filter(row_filter, self.refresh().iceberg.schema())  # a bad filter fails before anything is written
        # Staged files in any form commit takes (JSON text, nested lists) are committed as they are.
        staged = (
            data if is_staged(data) else stage(self.iceberg, self.identifier, data, shard_id=shard_id, run_id=run_id)
        )
        return self._commit(
            staged, run_id=run_id, idempotency_key=idempotency_key, overwrite_filter=row_filter
        ).snapshot_id

    def _commit(
        self,
        staged: Any,
        *,
        run_id: str | None,
        idempotency_key: str | None,
        overwrite_filter: Any = None,
        snapshot_properties: Mapping[str, Any] | None = None,
    ) -> CommitOutcome:
        """The commit behind ``commit``, ``overwrite`` and ``IcebergCommitOperator``, with its full outcome."""
        from airflow_provider_mlp.fastdata.writer import commit

        expr = None
        if overwrite_filter is not None:
            expr, _ = self._filter(overwrite_filter, self.refresh().iceberg.schema())
        return commit(
            lambda: self.refresh().iceberg,
            self.identifier,
            staged,
            run_id=run_id,
            idempotency_key=idempotency_key,
            overwrite_filter=expr,
            snapshot_properties=snapshot_properties,
        )
