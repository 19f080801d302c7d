"""Test helpers: tables with deletes and files pyiceberg itself cannot write."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.catalog import Catalog
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat, ManifestContent, ManifestWriterV2
from pyiceberg.schema import Schema
from pyiceberg.table import Table as IcebergTable
from pyiceberg.typedef import Record
from pyiceberg.types import LongType, NestedField, StringType

from airflow_provider_mlp.fastdata import Table

FILE_PATH_ID = b"2147483546"
POS_ID = b"2147483545"


class _DeleteManifestWriter(ManifestWriterV2):
    def content(self) -> ManifestContent:
        return ManifestContent.DELETES


def _write_data_file(
    table: IcebergTable, arrow: pa.Table, name: str, content: DataFileContent, **fields: Any
) -> DataFile:
    """Write ``arrow`` as Parquet under the table's data folder and describe it as a v2 DataFile."""
    path = f"{table.location()}/data/{name}-{uuid.uuid4()}.parquet"
    with table.io.new_output(path).create(overwrite=True) as stream:
        pq.write_table(arrow, stream)
    return DataFile.from_args(
        _table_format_version=2,
        content=content,
        file_path=path,
        file_format=FileFormat.PARQUET,
        record_count=arrow.num_rows,
        file_size_in_bytes=len(table.io.new_input(path)),
        **fields,
    )


def _commit_delete_file(table: IcebergTable, delete_file: DataFile, spec_id: int) -> None:
    txn = table.transaction()
    producer: Any = txn.update_snapshot().fast_append()
    target_spec = table.specs()[spec_id]

    def delete_writer(spec: Any = None) -> ManifestWriterV2:
        return _DeleteManifestWriter(
            target_spec, producer.schema(), producer.new_manifest_output(), producer._snapshot_id, producer._compression
        )

    # pyiceberg writes merge-on-read deletes for no operation: write the delete file ourselves and
    # commit it in a delete manifest through pyiceberg's own snapshot producer.
    producer.new_manifest_writer = delete_writer
    with producer:
        producer.append_data_file(delete_file)
    txn.commit_transaction()


def add_position_deletes(table: IcebergTable, data_file_path: str, positions: Sequence[int]) -> str:
    """Commit a positional delete file removing ``positions`` of ``data_file_path``."""
    target = next(t.file for t in table.scan().plan_files() if t.file.file_path == data_file_path)
    schema = pa.schema(
        [
            pa.field("file_path", pa.string(), nullable=False, metadata={b"PARQUET:field_id": FILE_PATH_ID}),
            pa.field("pos", pa.int64(), nullable=False, metadata={b"PARQUET:field_id": POS_ID}),
        ]
    )
    ordered = sorted(positions)
    arrow = pa.table({"file_path": [data_file_path] * len(ordered), "pos": ordered}, schema=schema)
    delete_file = _write_data_file(
        table,
        arrow,
        "pos-deletes",
        DataFileContent.POSITION_DELETES,
        partition=target.partition,
        spec_id=target.spec_id,
    )
    _commit_delete_file(table, delete_file, target.spec_id)
    return delete_file.file_path


def add_equality_deletes(table: IcebergTable, column: str, values: Sequence[Any]) -> str:
    field = table.schema().find_field(column)
    arrow = pa.table({column: values})
    arrow = arrow.cast(
        pa.schema(
            [pa.field(column, arrow.schema.field(0).type, metadata={b"PARQUET:field_id": str(field.field_id).encode()})]
        )
    )
    spec = table.spec()
    target = next(iter(table.scan().plan_files())).file
    delete_file = _write_data_file(
        table,
        arrow,
        "eq-deletes",
        DataFileContent.EQUALITY_DELETES,
        partition=target.partition if spec.fields else Record(),
        equality_ids=[field.field_id],
        spec_id=spec.spec_id,
    )
    _commit_delete_file(table, delete_file, spec.spec_id)
    return delete_file.file_path


def add_file_without_partition_column(table: IcebergTable, arrow: pa.Table, partition_value: Any) -> str:
    """A data file that does not store its identity partition column (as Hive-style writers do)."""
    schema = table.schema()
    fields = [
        pa.field(f.name, f.type, metadata={b"PARQUET:field_id": str(schema.find_field(f.name).field_id).encode()})
        for f in arrow.schema
    ]
    arrow = arrow.cast(pa.schema(fields))
    data_file = _write_data_file(
        table,
        arrow,
        "no-partition-column",
        DataFileContent.DATA,
        partition=Record(partition_value),
        spec_id=table.spec().spec_id,
    )
    with table.transaction() as txn, txn.update_snapshot().fast_append() as append:
        append.append_data_file(data_file)
    return data_file.file_path


def sort_all(table: pa.Table, key: str) -> pa.Table:
    return table.sort_by([(key, "ascending")])


def projected_types(theirs: pa.Schema) -> pa.Schema:
    """pyiceberg's scan schema with the types of its projection: it returns a column as ``string``
    or ``large_string`` (``list`` or ``large_list``) depending on the files read, ours always has the
    projection's large types."""
    from pyiceberg.io.pyarrow import _pyarrow_schema_ensure_large_types

    return _pyarrow_schema_ensure_large_types(theirs)


def assert_same(ours: pa.Table, theirs: pa.Table, key: str) -> None:
    """The same schema (up to pyiceberg's file-dependent string/list widths) and equal rows, order aside
    (``key`` must be unique)."""
    expected = projected_types(theirs.schema)
    assert ours.schema == expected, f"schemas differ:\n{ours.schema}\n---\n{expected}"
    assert ours.num_rows == theirs.num_rows
    theirs = theirs.cast(expected)
    left, right = sort_all(ours, key).combine_chunks(), sort_all(theirs, key).combine_chunks()
    assert left.equals(right), "rows differ"


def create_shard_table(catalog: Catalog, identifier: str) -> Table:
    """An empty ``(id long, shard string)`` table, the target of the write-path tests."""
    catalog.create_namespace_if_not_exists(identifier.split(".")[0])
    schema = Schema(
        NestedField(1, "id", LongType(), required=False), NestedField(2, "shard", StringType(), required=False)
    )
    catalog.create_table(identifier, schema=schema)
    return Table(identifier, catalog=catalog)


def shard_rows(shard: int, n: int) -> pa.Table:
    """Shard ``shard``'s ``n`` rows: ids ``shard * n`` up to ``(shard + 1) * n``."""
    return pa.table({"id": pa.array(range(shard * n, (shard + 1) * n), pa.int64()), "shard": [str(shard)] * n})
