"""The exactly-once write path: stage Parquet files per shard, commit them all in one snapshot.

``stage`` names its files from (table, run id, shard id): a retried task rewrites the same files
and never adds copies. Staged files are invisible to readers until ``commit`` adds every one of
them in a single snapshot whose summary records the run id; committing a run id twice is a no-op.
"""

from __future__ import annotations

import base64
import itertools
import random
import time
import uuid
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_mlp.fastdata.errors import CommitError, DataFileError, SchemaMismatchError, ShardError

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.expressions import BooleanExpression
    from pyiceberg.manifest import DataFile
    from pyiceberg.partitioning import PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.table import Table as IcebergTable

RUN_ID_PROPERTY = "mlp.run-id"
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
    from pyiceberg.io.pyarrow import _check_pyarrow_schema_compatible

    known = {f.name: f for f in schema.fields}
    for name in arrow_schema.names:
        if name not in known:
            raise SchemaMismatchError(f"column {name!r} is not in table {table_name!r} (columns: {', '.join(known)})")
    for table_field in schema.fields:
        if table_field.required and table_field.name not in arrow_schema.names:
            raise SchemaMismatchError(f"required column {table_field.name!r} of table {table_name!r} is missing")
    try:
        _check_pyarrow_schema_compatible(schema, arrow_schema, format_version=format_version)  # type: ignore[arg-type]
    except ValueError as exc:
        import re

        # pyiceberg reports mismatches as table rows marked with a cross: "❌ │ 1: name: ... │ ...".
        bad = [
            m.group(1)
            for line in str(exc).splitlines()
            if "❌" in line
            for m in [re.search(r"\d+: ([^:]+):", line)]
            if m
        ]
        named = f"column {bad[0]!r}" if bad else "the data"
        raise SchemaMismatchError(f"{named} does not fit table {table_name!r}: {exc}") from None


def stage(table: IcebergTable, table_name: str, data: Any, *, shard_id: Any, run_id: str) -> dict[str, Any]:
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
    files = _write_data_files(table, arrow, write_uuid(table_name, run_id, shard_key))
    record["files"] = [data_file_to_json(f, spec, schema) for f in files]
    return record


def _write_data_files(table: IcebergTable, arrow: pa.Table, file_uuid: uuid.UUID) -> list[DataFile]:
    """pyiceberg's own writer, with partitions taken in key order so file names never depend on
    the order a (multi-threaded) group-by happened to find them in: the same data gets the same names."""
    from pyiceberg.io.pyarrow import (
        _dataframe_to_data_files,
        _determine_partitions,
        bin_pack_arrow_table,
        pyarrow_to_schema,
        write_file,
    )
    from pyiceberg.table import DOWNCAST_NS_TIMESTAMP_TO_US_ON_WRITE, TableProperties, WriteTask
    from pyiceberg.utils.config import Config
    from pyiceberg.utils.properties import property_as_int

    metadata = table.metadata
    counter = itertools.count(0)
    if metadata.spec().is_unpartitioned():
        return list(_dataframe_to_data_files(metadata, arrow, table.io, write_uuid=file_uuid, counter=counter))
    target_file_size = property_as_int(
        metadata.properties,
        TableProperties.WRITE_TARGET_FILE_SIZE_BYTES,
        TableProperties.WRITE_TARGET_FILE_SIZE_BYTES_DEFAULT,
    )
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
        for batches in bin_pack_arrow_table(partition.arrow_table_partition, target_file_size)  # type: ignore[arg-type]
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


def flatten_staged(staged: Any, table_name: str, run_id: str) -> list[dict[str, Any]]:
    if isinstance(staged, str):
        staged = _staged_json(staged, table_name)
    if isinstance(staged, Mapping):
        staged = [staged]
    if not isinstance(staged, Iterable):
        raise ShardError(f"not staged-file metadata for table {table_name!r}: {str(staged)[:200]}")
    out: list[dict[str, Any]] = []
    for item in staged:
        if isinstance(item, str):
            item = _staged_json(item, table_name)
        if isinstance(item, Mapping) and item.get("kind") == STAGED_KIND:
            if item.get("table") != table_name:
                raise ShardError(f"staged files of table {item.get('table')!r} cannot be committed to {table_name!r}")
            if item.get("run_id") != run_id:
                raise ShardError(
                    f"staged files of shard {item.get('shard_id')!r} belong to run {item.get('run_id')!r}, "
                    f"not {run_id!r} (table {table_name!r})"
                )
            out.append(dict(item))
        elif isinstance(item, Iterable) and not isinstance(item, Mapping):
            out.extend(flatten_staged(list(item), table_name, run_id))
        else:
            raise ShardError(f"not staged-file metadata for table {table_name!r}: {str(item)[:200]}")
    return out


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


def commit(
    load: Any,
    table_name: str,
    staged: Any,
    *,
    run_id: str,
    overwrite_filter: BooleanExpression | None = None,
    max_attempts: int = 8,
) -> int | None:
    """Add every staged file in one snapshot (after deleting ``overwrite_filter`` rows, if given).

    ``load`` returns the freshly loaded table: each attempt starts from the catalog's newest metadata,
    so concurrent writers' snapshots are kept, and a run another attempt already committed is seen.
    """
    from pyiceberg.exceptions import CommitFailedException

    if not run_id:
        raise ValueError(f"commit to table {table_name!r} needs a non-empty run_id")
    records = flatten_staged(staged, table_name, run_id)
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
                    f"shards {owners[path]!r} and {shard_key!r} of run {run_id!r} both staged file {path} "
                    f"for table {table_name!r}; give every shard a distinct shard_id and stage again"
                )
            entries[path] = entry
    ordered = [entries[path] for path in sorted(entries)]
    properties = {RUN_ID_PROPERTY: run_id}
    for attempt in range(max_attempts):
        table: IcebergTable = load()
        existing = committed_snapshot(table, run_id)
        if existing is not None:
            return existing
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
            return None
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
        return committed_snapshot(table, run_id)
    raise CommitError(
        f"could not commit run {run_id!r} to table {table_name!r} after {max_attempts} attempts "
        "against concurrent writers"
    )
