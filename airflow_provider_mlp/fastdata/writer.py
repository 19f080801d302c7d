"""The exactly-once write path: stage Parquet files per shard, commit them all in one snapshot.

``stage`` names its files from (table, run id, shard id): a retried task rewrites the same files
and never adds copies. Staged files are invisible to readers until ``commit`` adds every one of
them in a single snapshot whose summary records the run id and the idempotency key (by default
the run id). A commit whose key, or whose run, a snapshot already recorded is a no-op: re-running
a day under the key ``"{{ ds }}"`` adds its rows once, and the files the re-run staged are removed.
"""

from __future__ import annotations

import base64
import itertools
import math
import random
import time
import uuid
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from airflow_provider_mlp.fastdata.defaults import (
    DEFAULT_ROW_GROUP_BYTES,
    DEFAULT_ROW_GROUP_ROWS,
    DEFAULT_TARGET_FILE_BYTES,
)
from airflow_provider_mlp.fastdata.errors import (
    ColumnNotFoundError,
    CommitError,
    DataFileError,
    SchemaMismatchError,
    ShardError,
)

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.expressions import BooleanExpression
    from pyiceberg.manifest import DataFile
    from pyiceberg.partitioning import PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.table import Table as IcebergTable

RUN_ID_PROPERTY = "mlp.run-id"
IDEMPOTENCY_KEY_PROPERTY = "mlp.idempotency-key"
# pyiceberg's table property names (its writer implements the first two; the third is Iceberg's
# row-group size, which pyiceberg's writer warns it does not implement, so stage implements it).
ROW_GROUP_LIMIT_PROPERTY = "write.parquet.row-group-limit"
TARGET_FILE_SIZE_PROPERTY = "write.target-file-size-bytes"
ROW_GROUP_SIZE_BYTES_PROPERTY = "write.parquet.row-group-size-bytes"
STAGED_KIND = "mlp.fastdata.staged"
STAGED_VERSION = 1
_NAMESPACE = uuid.UUID("6d1f2b8e-3f7c-4a53-9c1e-5b0f6a9d2c41")
_STAT_MAPS = ("column_sizes", "value_counts", "null_value_counts", "nan_value_counts")
_BOUND_MAPS = ("lower_bounds", "upper_bounds")


def write_uuid(table: str, run_id: str, shard_id: str) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"{table}\x00{run_id}\x00{shard_id}")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def data_file_to_json(data_file: DataFile, spec: PartitionSpec, schema: Schema) -> dict[str, Any]:
    """Every manifest field of a data file, as JSON (binary values base64, partition values typed)."""
    from pyiceberg.conversions import to_bytes

    partition_type = spec.partition_type(schema)
    partition = []
    for position, part_field in enumerate(partition_type.fields):
        value = data_file.partition[position]
        partition.append(None if value is None else _b64(to_bytes(part_field.field_type, value)))  # type: ignore[arg-type]
    out: dict[str, Any] = {
        "content": int(data_file.content),
        "file_path": data_file.file_path,
        "file_format": data_file.file_format.value,
        "partition": partition,
        "record_count": data_file.record_count,
        "file_size_in_bytes": data_file.file_size_in_bytes,
        "split_offsets": list(data_file.split_offsets) if data_file.split_offsets else None,
        "sort_order_id": data_file.sort_order_id,
        "spec_id": getattr(data_file, "_spec_id", spec.spec_id),
    }
    for name in _STAT_MAPS:
        values = getattr(data_file, name)
        out[name] = {str(k): int(v) for k, v in values.items()} if values else None
    for name in _BOUND_MAPS:
        values = getattr(data_file, name)
        out[name] = {str(k): _b64(v) for k, v in values.items()} if values else None
    return out


def data_file_from_json(entry: Mapping[str, Any], spec: PartitionSpec, schema: Schema, format_version: int) -> DataFile:
    from pyiceberg.conversions import from_bytes
    from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
    from pyiceberg.typedef import Record

    partition_type = spec.partition_type(schema)
    if len(entry["partition"]) != len(partition_type.fields):
        raise ShardError(
            f"staged file {entry['file_path']} has {len(entry['partition'])} partition values, "
            f"the table's spec {spec.spec_id} has {len(partition_type.fields)}"
        )
    values = [
        None if raw is None else from_bytes(f.field_type, base64.b64decode(raw))  # type: ignore[arg-type]
        for f, raw in zip(partition_type.fields, entry["partition"], strict=True)
    ]
    kwargs: dict[str, Any] = {
        "content": DataFileContent(entry["content"]),
        "file_path": entry["file_path"],
        "file_format": FileFormat(entry["file_format"]),
        "partition": Record(*values),
        "record_count": entry["record_count"],
        "file_size_in_bytes": entry["file_size_in_bytes"],
        "split_offsets": entry.get("split_offsets"),
        "sort_order_id": entry.get("sort_order_id"),
        "spec_id": entry["spec_id"],
        "equality_ids": None,
        "key_metadata": None,
    }
    for name in _STAT_MAPS:
        raw = entry.get(name)
        kwargs[name] = {int(k): int(v) for k, v in raw.items()} if raw else None
    for name in _BOUND_MAPS:
        raw = entry.get(name)
        kwargs[name] = {int(k): base64.b64decode(v) for k, v in raw.items()} if raw else None
    return DataFile.from_args(_table_format_version=format_version, **kwargs)  # type: ignore[arg-type]


def committed_snapshot(table: IcebergTable, run_id: str) -> int | None:
    """The latest snapshot that recorded ``run_id``, if any snapshot still in the table's history did.

    An overwrite commits a delete and an append snapshot, both recording the run: the append, the
    last one, is the table's state after the run."""
    for snapshot in reversed(table.metadata.snapshots):
        summary = snapshot.summary
        if summary is not None and summary.additional_properties.get(RUN_ID_PROPERTY) == run_id:
            return snapshot.snapshot_id
    return None


def committed_key_snapshot(table: IcebergTable, key: str, run_id: str | None = None) -> tuple[int, str | None] | None:
    """(snapshot id, the run that committed it) of the latest snapshot that recorded idempotency key
    ``key``, or recorded ``run_id`` as its run (files of one run must never be added twice)."""
    for snapshot in reversed(table.metadata.snapshots):
        summary = snapshot.summary
        if summary is None:
            continue
        recorded = summary.additional_properties
        committed_run = recorded.get(RUN_ID_PROPERTY)
        # Snapshots from before idempotency keys recorded only the run id, which was their key.
        committed_key = recorded.get(IDEMPOTENCY_KEY_PROPERTY, committed_run)
        if committed_key == key or (run_id is not None and committed_run == run_id):
            return snapshot.snapshot_id, committed_run
    return None


def to_arrow_table(data: Any, table_name: str) -> pa.Table:
    import pyarrow as pa

    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if hasattr(data, "to_arrow"):  # polars, and our own DataFrame
        return data.to_arrow()
    module = type(data).__module__
    if module.startswith("pandas"):
        return pa.Table.from_pandas(data, preserve_index=False)
    raise SchemaMismatchError(
        f"data written to table {table_name!r} must be an Arrow table or record batch, a pandas or polars "
        f"DataFrame; got {type(data).__name__}"
    )


def check_schema(table_name: str, schema: Schema, arrow_schema: pa.Schema, format_version: int) -> None:
    """Raise SchemaMismatchError naming the first column that does not fit the table's schema."""
    known = {f.name: f for f in schema.fields}
    for name in arrow_schema.names:
        if name not in known:
            raise SchemaMismatchError(f"column {name!r} is not in table {table_name!r} (columns: {', '.join(known)})")
    for table_field in schema.fields:
        if table_field.required and table_field.name not in arrow_schema.names:
            raise SchemaMismatchError(f"required column {table_field.name!r} of table {table_name!r} is missing")
    report = _schema_compatibility(schema, arrow_schema, format_version)
    if report is None:
        return
    import re

    # pyiceberg reports mismatches as table rows marked with a cross: "❌ │ 1: name: ... │ ...".
    bad = [m.group(1) for line in report.splitlines() if "❌" in line for m in [re.search(r"\d+: ([^:]+):", line)] if m]
    named = f"column {bad[0]!r}" if bad else "the data"
    raise SchemaMismatchError(f"{named} does not fit table {table_name!r}:\n{report}")


def _schema_compatibility(schema: Schema, arrow_schema: pa.Schema, format_version: int) -> str | None:
    """pyiceberg's compatibility table of the data against ``schema`` when they do not fit, else None.

    This is ``pyiceberg.io.pyarrow._check_pyarrow_schema_compatible`` with the visitor's console
    recording into memory: pyiceberg's own prints the table to stdout before raising it."""
    import io

    from pyiceberg.io.pyarrow import pyarrow_to_schema
    from pyiceberg.schema import _SchemaCompatibilityVisitor, pre_order_visit
    from rich.console import Console

    try:
        provided = pyarrow_to_schema(arrow_schema, name_mapping=schema.name_mapping, format_version=format_version)  # type: ignore[arg-type]
    except ValueError as exc:
        return str(exc)
    visitor = _SchemaCompatibilityVisitor(provided)
    # Wide enough that a row never wraps: the message is read in logs, not in a terminal.
    visitor.console = Console(record=True, file=io.StringIO(), width=240)
    try:
        pre_order_visit(schema, visitor)
    except ValueError as exc:
        return str(exc).removeprefix("Mismatch in fields:\n").rstrip()
    return None


@dataclass(frozen=True)
class WriteLayout:
    """How ``stage`` sizes row groups and files (``None``: the table property, then the default)."""

    row_group_rows: int | None = None
    row_group_bytes: int | None = None
    target_file_bytes: int | None = None

    def resolve(self, properties: Mapping[str, str], arrow: pa.Table) -> tuple[int, int]:
        """(rows per row group, target file bytes) for writing ``arrow`` into a table with ``properties``."""
        rows = self._setting("row_group_rows", properties, ROW_GROUP_LIMIT_PROPERTY, DEFAULT_ROW_GROUP_ROWS)
        group_bytes = self._setting(
            "row_group_bytes", properties, ROW_GROUP_SIZE_BYTES_PROPERTY, DEFAULT_ROW_GROUP_BYTES
        )
        file_bytes = self._setting(
            "target_file_bytes", properties, TARGET_FILE_SIZE_PROPERTY, DEFAULT_TARGET_FILE_BYTES
        )
        if arrow.num_rows:
            row_bytes = max(1.0, arrow.nbytes / arrow.num_rows)
            rows = max(1, min(rows, int(group_bytes / row_bytes)))
            # Even groups rather than full ones and a small remainder: shards then balance.
            groups = math.ceil(arrow.num_rows / rows)
            rows = math.ceil(arrow.num_rows / groups)
        return rows, file_bytes

    def _setting(self, name: str, properties: Mapping[str, str], key: str, default: int) -> int:
        value: Any = getattr(self, name)
        source = f"{name}="
        if value is None and key in properties:
            value, source = properties[key], f"table property {key}="
        if value is None:
            return default
        try:
            number = int(value)
        except (TypeError, ValueError):
            number = 0
        if number <= 0 or isinstance(value, bool | float):
            raise ValueError(f"{source}{value!r} must be a positive integer")
        return number


def stage(
    table: IcebergTable,
    table_name: str,
    data: Any,
    *,
    shard_id: Any,
    run_id: str,
    layout: WriteLayout | None = None,
) -> dict[str, Any]:
    """Write ``data`` as Parquet files under the table's location; return their JSON metadata."""
    if not run_id:
        raise ValueError(f"stage into table {table_name!r} needs a non-empty run_id")
    shard_key = str(shard_id)
    arrow = to_arrow_table(data, table_name)
    metadata = table.metadata
    schema = metadata.schema()
    spec = metadata.spec()
    record: dict[str, Any] = {
        "kind": STAGED_KIND,
        "version": STAGED_VERSION,
        "table": table_name,
        "run_id": run_id,
        "shard_id": shard_key,
        "schema_id": schema.schema_id,
        "spec_id": spec.spec_id,
        "rows": arrow.num_rows,
        "files": [],
    }
    committed = committed_snapshot(table, run_id)
    if committed is not None:
        # A task re-run after its run committed: rewriting its files would change committed data.
        record["committed_snapshot_id"] = committed
        return record
    check_schema(table_name, schema, arrow.schema, metadata.format_version)
    if arrow.num_rows == 0:
        return record
    files = _write_data_files(table, arrow, write_uuid(table_name, run_id, shard_key), layout or WriteLayout())
    record["files"] = [data_file_to_json(f, spec, schema) for f in files]
    return record


def _write_data_files(
    table: IcebergTable, arrow: pa.Table, file_uuid: uuid.UUID, layout: WriteLayout
) -> list[DataFile]:
    """pyiceberg's own writer, with partitions taken in key order so file names never depend on
    the order a (multi-threaded) group-by happened to find them in: the same data gets the same names.

    Row groups and files are sized by ``layout``: pyiceberg's writer reads both sizes from the
    table's properties, so it is given the table's metadata with those two properties set."""
    from pyiceberg.io.pyarrow import (
        _dataframe_to_data_files,
        _determine_partitions,
        bin_pack_arrow_table,
        pyarrow_to_schema,
        write_file,
    )
    from pyiceberg.table import DOWNCAST_NS_TIMESTAMP_TO_US_ON_WRITE, WriteTask
    from pyiceberg.utils.config import Config

    row_group_rows, target_file_size = layout.resolve(table.metadata.properties, arrow)
    properties = {
        **table.metadata.properties,
        ROW_GROUP_LIMIT_PROPERTY: str(row_group_rows),
        TARGET_FILE_SIZE_PROPERTY: str(target_file_size),
    }
    properties.pop(ROW_GROUP_SIZE_BYTES_PROPERTY, None)  # applied above, through the row limit
    metadata = table.metadata.model_copy(update={"properties": properties})
    counter = itertools.count(0)
    if metadata.spec().is_unpartitioned():
        return list(_dataframe_to_data_files(metadata, arrow, table.io, write_uuid=file_uuid, counter=counter))
    task_schema = pyarrow_to_schema(
        arrow.schema,
        name_mapping=metadata.schema().name_mapping,
        downcast_ns_timestamp_to_us=Config().get_bool(DOWNCAST_NS_TIMESTAMP_TO_US_ON_WRITE) or False,
        format_version=metadata.format_version,
    )
    partitions = sorted(
        _determine_partitions(spec=metadata.spec(), schema=metadata.schema(), arrow_table=arrow),
        key=lambda partition: partition.partition_key.to_path(),
    )
    tasks = (
        WriteTask(
            write_uuid=file_uuid,
            task_id=next(counter),
            record_batches=batches,
            partition_key=partition.partition_key,
            schema=task_schema,
        )
        for partition in partitions
        for batches in bin_pack_arrow_table(partition.arrow_table_partition, target_file_size)
    )
    return list(write_file(io=table.io, table_metadata=metadata, tasks=tasks))


def _staged_json(text: str, table_name: str) -> Any:
    import json

    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ShardError(f"staged-file metadata for table {table_name!r} is not valid JSON: {exc}") from None


def is_staged(data: Any) -> bool:
    """Whether ``data`` is staged-file metadata in one of the forms ``commit`` takes (a record, JSON text,
    nested sequences of them) rather than rows to write: rows never come as text or as plain lists."""
    if isinstance(data, str):
        return True
    if isinstance(data, Mapping):
        return data.get("kind") == STAGED_KIND
    if isinstance(data, Sequence) and not isinstance(data, bytes | bytearray):
        return all(is_staged(item) for item in data)
    return False


def _items(items: Any) -> list[Any]:
    """The items of a sequence, fetched at once.

    Airflow hands a commit task the results of a mapped task as a lazy sequence: iterating it asks
    for one item after another until a request for the index past the last one fails, and the task
    SDK logs that failure as an error ("XCom not found ... offset=N"). A slice is one request for
    every item and asks for nothing that is not there."""
    if isinstance(items, list | tuple):
        return list(items)
    if isinstance(items, Sequence):
        return list(items[:])
    return list(items)


def flatten_staged(staged: Any, table_name: str, run_ids: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Every staged record in ``staged`` (a record, JSON text, or nested sequences of them), checked to
    be for ``table_name`` and, if ``run_ids`` are given, staged by one of those runs."""
    if isinstance(staged, str):
        staged = _staged_json(staged, table_name)
    if isinstance(staged, Mapping):
        staged = [staged]
    if not isinstance(staged, Iterable):
        raise ShardError(f"not staged-file metadata for table {table_name!r}: {str(staged)[:200]}")
    out: list[dict[str, Any]] = []
    for item in _items(staged):
        if isinstance(item, str):
            item = _staged_json(item, table_name)
        if isinstance(item, Mapping) and item.get("kind") == STAGED_KIND:
            if item.get("table") != table_name:
                raise ShardError(f"staged files of table {item.get('table')!r} cannot be committed to {table_name!r}")
            if run_ids and item.get("run_id") not in run_ids:
                expected = " or ".join(repr(r) for r in dict.fromkeys(run_ids))
                raise ShardError(
                    f"staged files of shard {item.get('shard_id')!r} belong to run {item.get('run_id')!r}, "
                    f"not {expected} (table {table_name!r})"
                )
            out.append(dict(item))
        elif isinstance(item, Iterable) and not isinstance(item, Mapping):
            out.extend(flatten_staged(item, table_name, run_ids))
        else:
            raise ShardError(f"not staged-file metadata for table {table_name!r}: {str(item)[:200]}")
    return out


def read_staged(table: IcebergTable, table_name: str, staged: Any, columns: Sequence[str] | None = None) -> pa.Table:
    """The rows of staged files (uncommitted, so invisible to readers), in shard order, through the table's FileIO."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyiceberg.io.pyarrow import schema_to_pyarrow

    from airflow_provider_mlp.fastdata.fetch import io_pool

    expected = schema_to_pyarrow(table.metadata.schema(), include_field_ids=False)
    if columns is not None:
        missing = [name for name in columns if name not in expected.names]
        if missing:
            raise ColumnNotFoundError(
                f"staged files of table {table_name!r} have no column(s) {', '.join(missing)}; "
                f"its columns are {', '.join(expected.names)}"
            )
        expected = pa.schema([expected.field(name) for name in columns])
    records = sorted(flatten_staged(staged, table_name), key=lambda r: str(r.get("shard_id")))
    paths = [entry["file_path"] for record in records for entry in record["files"]]

    def load(path: str) -> pa.Table:
        try:
            with table.io.new_input(path).open() as handle:
                data = pq.read_table(handle, columns=list(expected.names))
        except FileNotFoundError:
            raise DataFileError(
                f"staged data file {path} of table {table_name!r} is missing; re-run the task that staged it"
            ) from None
        return data.cast(expected)

    parts = list(io_pool().map(load, paths))
    return pa.concat_tables(parts) if parts else expected.empty_table()


def _check_files_exist(table: IcebergTable, entries: Sequence[Mapping[str, Any]]) -> None:
    # Through the table's own FileIO, the one stage wrote with: no extra filesystem package per scheme.
    from airflow_provider_mlp.fastdata.fetch import io_pool

    def size(entry: Mapping[str, Any]) -> None:
        path = entry["file_path"]
        input_file = table.io.new_input(path)
        try:
            actual = len(input_file)  # one metadata request; a missing file raises FileNotFoundError
        except FileNotFoundError:
            actual = None
        if actual is None:
            raise DataFileError(f"staged data file {path} is missing; re-run the task that staged it")
        if actual != entry["file_size_in_bytes"]:
            raise DataFileError(
                f"staged data file {path} has {actual} bytes, its staging metadata says "
                f"{entry['file_size_in_bytes']}; re-run the task that staged it"
            )

    list(io_pool().map(size, entries))


@dataclass(frozen=True)
class CommitOutcome:
    """What ``commit`` did: the snapshot holding the data, and whether this call added it."""

    snapshot_id: int | None
    run_id: str
    idempotency_key: str
    files: int
    rows: int
    # An earlier commit had recorded the key (or this run): nothing was added now.
    already_committed: bool = False
    # The run that made that earlier snapshot.
    committed_by: str | None = None
    # Files this run staged that were removed because another run had committed the key.
    removed_files: int = 0

    def describe(self, table: str) -> str:
        """One log line: what happened, in words a re-run user understands."""
        if self.already_committed:
            if self.committed_by in (None, self.run_id):
                return f"Run {self.run_id} was already committed to {table} as snapshot {self.snapshot_id}"
            line = (
                f"Idempotency key {self.idempotency_key!r} was already committed to {table} as snapshot "
                f"{self.snapshot_id} by run {self.committed_by}; run {self.run_id} added nothing"
            )
            if self.removed_files:
                line += f" and removed the {self.removed_files} file(s) it had staged"
            return line
        if self.snapshot_id is None:
            return f"Run {self.run_id} staged no rows for {table}: no snapshot made"
        return (
            f"Committed {self.files} file(s), {self.rows} row(s), of run {self.run_id} to {table} as snapshot "
            f"{self.snapshot_id} (idempotency key {self.idempotency_key!r})"
        )


def _referenced_paths(table: IcebergTable, paths: set[str]) -> set[str]:
    """Which of ``paths`` a manifest of any snapshot still in the table's metadata lists."""
    from airflow_provider_mlp.fastdata.fetch import io_pool

    io = table.io
    manifests = {m.manifest_path: m for s in table.metadata.snapshots for m in s.manifests(io)}

    def listed(manifest: Any) -> set[str]:
        return {e.data_file.file_path for e in manifest.fetch_manifest_entry(io, discard_deleted=False)} & paths

    return set().union(*io_pool().map(listed, manifests.values()))


def _remove_orphans(table: IcebergTable, entries: Sequence[Mapping[str, Any]], run_id: str) -> int:
    """Delete the files ``run_id`` staged when another run committed the idempotency key first.

    Files are named from their run and only a commit of that run adds them; still, a file is
    deleted only if no manifest of any snapshot in the table's metadata lists it (a snapshot of the
    run may have been expired while later snapshots kept its files)."""
    if any(
        s.summary is not None and s.summary.additional_properties.get(RUN_ID_PROPERTY) == run_id
        for s in table.metadata.snapshots
    ):
        return 0
    paths = {entry["file_path"] for entry in entries}
    paths -= _referenced_paths(table, paths)
    removed = 0
    for path in sorted(paths):
        try:
            table.io.delete(path)
            removed += 1
        except FileNotFoundError:
            pass  # an earlier try of this commit removed it
    return removed


def summary_properties(properties: Mapping[str, Any] | None, table_name: str) -> dict[str, str]:
    """Extra snapshot summary properties as text; the commit's own ``mlp.`` keys cannot be given."""
    if properties is None:
        return {}
    if not isinstance(properties, Mapping):
        raise TypeError(
            f"snapshot_properties for a commit to table {table_name!r} must be a mapping of names to values, "
            f"got {type(properties).__name__}"
        )
    text = {str(name): str(value) for name, value in properties.items()}
    reserved = sorted(name for name in text if name in (RUN_ID_PROPERTY, IDEMPOTENCY_KEY_PROPERTY))
    if reserved:
        raise ValueError(
            f"snapshot_properties for a commit to table {table_name!r} give {', '.join(reserved)}, which the commit "
            "records itself; pass run_id/idempotency_key instead"
        )
    return text


def commit(
    load: Any,
    table_name: str,
    staged: Any,
    *,
    run_id: str | None = None,
    idempotency_key: str | None = None,
    overwrite_filter: BooleanExpression | None = None,
    snapshot_properties: Mapping[str, Any] | None = None,
    max_attempts: int = 8,
) -> CommitOutcome:
    """Add every staged file in one snapshot (after deleting ``overwrite_filter`` rows, if given).

    ``run_id`` is the run that staged the files (default: the one run the staged records name).
    ``idempotency_key`` (default: the run id) is recorded in the snapshot: a later commit under
    a key that a snapshot recorded adds nothing, and removes the files its own run staged.
    ``snapshot_properties`` go into the snapshot's summary as well (values as text), e.g. a data
    quality metric measured on the staged rows; the ``mlp.`` keys are the commit's own.

    ``load`` returns the freshly loaded table: each attempt starts from the catalog's newest metadata,
    so concurrent writers' snapshots are kept, and a run another attempt already committed is seen.
    """
    from pyiceberg.exceptions import CommitFailedException

    if run_id is not None and not run_id:
        raise ValueError(f"commit to table {table_name!r} needs a non-empty run_id")
    if idempotency_key is not None and not idempotency_key:
        raise ValueError(f"commit to table {table_name!r} needs a non-empty idempotency_key")
    records = flatten_staged(staged, table_name, [run_id] if run_id else ())
    runs = sorted({str(r.get("run_id")) for r in records})
    if len(runs) > 1:
        raise ShardError(
            f"staged files for table {table_name!r} come from runs {', '.join(runs)}; commit one run's files at a time"
        )
    staging_run = runs[0] if runs else (run_id or idempotency_key)
    if not staging_run:
        raise ValueError(f"commit to table {table_name!r} needs a run_id or an idempotency_key")
    key = idempotency_key or run_id or staging_run
    entries: dict[str, dict[str, Any]] = {}
    owners: dict[str, str] = {}
    for record in sorted(records, key=lambda r: str(r.get("shard_id"))):
        shard_key = str(record.get("shard_id"))
        for entry in record["files"]:
            path = entry["file_path"]
            # The same shard staged twice (a retry) names the same files; two shards naming one file
            # means one overwrote the other's data, so committing would silently lose rows.
            if owners.setdefault(path, shard_key) != shard_key:
                raise ShardError(
                    f"shards {owners[path]!r} and {shard_key!r} of run {staging_run!r} both staged file {path} "
                    f"for table {table_name!r}; give every shard a distinct shard_id and stage again"
                )
            entries[path] = entry
    ordered = [entries[path] for path in sorted(entries)]
    rows = sum(int(entry["record_count"]) for entry in ordered)
    outcome = CommitOutcome(snapshot_id=None, run_id=staging_run, idempotency_key=key, files=len(ordered), rows=rows)
    properties = {
        **summary_properties(snapshot_properties, table_name),
        RUN_ID_PROPERTY: staging_run,
        IDEMPOTENCY_KEY_PROPERTY: key,
    }
    for attempt in range(max_attempts):
        table: IcebergTable = load()
        existing = committed_key_snapshot(table, key, staging_run if records else None)
        if existing is not None:
            snapshot_id, committed_by = existing
            removed = 0
            if ordered and committed_by != staging_run:
                removed = _remove_orphans(table, ordered, staging_run)
            return replace(
                outcome,
                files=0,
                rows=0,
                snapshot_id=snapshot_id,
                already_committed=True,
                committed_by=committed_by,
                removed_files=removed,
            )
        metadata = table.metadata
        spec = metadata.spec()
        schema = metadata.schema()
        for entry in ordered:
            if entry["spec_id"] != spec.spec_id:
                raise ShardError(
                    f"staged file {entry['file_path']} was written for partition spec {entry['spec_id']} but table "
                    f"{table_name!r} is now partitioned by spec {spec.spec_id}; stage the data again"
                )
        if attempt == 0:
            _check_files_exist(table, ordered)
        files = [data_file_from_json(e, spec, schema, metadata.format_version) for e in ordered]
        if not files and overwrite_filter is None:
            return outcome
        try:
            with table.transaction() as txn:
                if overwrite_filter is not None:
                    with warnings.catch_warnings():
                        # Replacing rows that are not there yet (a first backfill of a day) is routine.
                        warnings.filterwarnings("ignore", "Delete operation did not match any records")
                        txn.delete(delete_filter=overwrite_filter, snapshot_properties=properties)
                if files:
                    with txn.update_snapshot(snapshot_properties=properties).fast_append() as append:
                        for data_file in files:
                            append.append_data_file(data_file)
        except CommitFailedException:
            # Another writer won the race: back off, reload and try again on its snapshot.
            time.sleep(min(2.0, 0.05 * (2**attempt)) * (0.5 + random.random()))
            continue
        # The transaction went through and left the committed metadata on ``table`` (no reload); an
        # overwrite that matched no rows and added no files makes no snapshot, and there is nothing to retry.
        committed = committed_key_snapshot(table, key)
        return replace(outcome, snapshot_id=committed[0] if committed else None)
    raise CommitError(
        f"could not commit run {staging_run!r} (idempotency key {key!r}) to table {table_name!r} after "
        f"{max_attempts} attempts against concurrent writers"
    )
