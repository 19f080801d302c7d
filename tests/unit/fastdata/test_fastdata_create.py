"""Table.create and create-if-missing: schemas, partition_by text, namespaces, errors, racing creators."""

from __future__ import annotations

import threading
from typing import Any

import pyarrow as pa
import pytest
from pyiceberg.catalog import Catalog
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import BucketTransform, DayTransform, IdentityTransform, TruncateTransform
from pyiceberg.types import LongType, NestedField, StringType

from airflow_provider_mlp.errors import ConfigurationError
from airflow_provider_mlp.fastdata import (
    ColumnNotFoundError,
    PartitionSpecError,
    SchemaMismatchError,
    Table,
    TableExistsError,
)
from airflow_provider_mlp.operators.fastdata import IcebergCommitOperator, stage_to_table

EVENTS = pa.schema(
    [
        pa.field("event_id", pa.int64(), nullable=False),
        pa.field("region", pa.string()),
        pa.field("ts", pa.timestamp("us")),
        pa.field("title", pa.string()),
    ]
)


def _rows(start: int, n: int) -> pa.Table:
    return pa.table(
        {
            "event_id": pa.array(range(start, start + n), pa.int64()),
            "region": [("eu", "us")[i % 2] for i in range(n)],
            "ts": pa.array([1_700_000_000_000_000 + i * 3_600_000_000 for i in range(n)], pa.timestamp("us")),
            "title": [f"title {i}" for i in range(n)],
        },
        schema=EVENTS,
    )


def test_create_from_an_arrow_schema_with_transforms_and_properties(catalog: Catalog) -> None:
    table = Table.create(
        "fresh.events",
        EVENTS,
        partition_by=["region", "day(ts)", "bucket(16, event_id)", "truncate(4, title)"],
        properties={"write.parquet.row-group-limit": 5_000},
    )
    assert isinstance(table, Table) and "fresh" in [ns[0] for ns in catalog.list_namespaces()]
    fields = {f.name: f for f in table.schema.fields}
    assert fields["event_id"].required and not fields["region"].required
    spec = [(f.name, f.transform) for f in table.spec.fields]
    assert spec == [
        ("region", IdentityTransform()),
        ("ts_day", DayTransform()),
        ("event_id_bucket_16", BucketTransform(16)),
        ("title_trunc_4", TruncateTransform(4)),
    ]
    assert table.iceberg.properties["write.parquet.row-group-limit"] == "5000"
    table.commit(table.stage(_rows(0, 100), shard_id=0, run_id="load"), run_id="load")
    assert Table("fresh.events").read(row_filter="region = 'eu'").num_rows == 50


def test_create_from_a_pyiceberg_schema_and_spec(catalog: Catalog) -> None:
    schema = Schema(NestedField(1, "id", LongType(), required=True), NestedField(2, "s", StringType()))
    spec = PartitionSpec(PartitionField(source_id=2, field_id=1000, transform=IdentityTransform(), name="s"))
    table = Table.create("ns.deep.t", schema, partition_by=spec, catalog=catalog)
    assert table.identifier == "ns.deep.t" and [f.name for f in table.spec.fields] == ["s"]
    assert Table.create("ns.deep.u", schema).spec.is_unpartitioned()


@pytest.mark.parametrize(
    ("partition_by", "error", "message"),
    [
        (["nope"], ColumnNotFoundError, r"column 'nope' is not in the schema.*columns: event_id, region, ts, title"),
        (["day(nope)"], ColumnNotFoundError, r"'nope'"),
        (["week(ts)"], PartitionSpecError, r"unknown transform 'week' \(transforms: bucket, date, "),
        (["bucket(ts)"], PartitionSpecError, r"bucket takes a width and a column, e\.g\. 'bucket\(16, column\)'"),
        (["bucket(x, ts)"], PartitionSpecError, r"width must be a positive integer, got 'x'"),
        (["truncate(0, title)"], PartitionSpecError, r"positive integer, got '0'"),
        (["day(title)"], PartitionSpecError, r"day cannot partition column 'title' of type string"),
        (["day(ts, 2)"], PartitionSpecError, r"day takes one column"),
        (["region", "region"], PartitionSpecError, r"repeats 'region'"),
        (["region)"], PartitionSpecError, r"not of the form"),
        ("region", PartitionSpecError, r"must be a list"),
    ],
)
def test_bad_partition_by_is_named(catalog: Catalog, partition_by: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        Table.create("bad.t", EVENTS, partition_by=partition_by)
    assert not catalog.table_exists("bad.t")


def test_bad_schemas_and_existing_tables(catalog: Catalog) -> None:
    with pytest.raises(SchemaMismatchError, match=r"cannot be stored in Iceberg: Null type.*Field: empty"):
        Table.create("x.t", pa.schema([("empty", pa.null())]))
    with pytest.raises(SchemaMismatchError, match="pyarrow Schema or a pyiceberg Schema, got dict"):
        Table.create("x.t", {"id": "long"})  # type: ignore[arg-type]
    first = Table.create("x.t", EVENTS)
    with pytest.raises(TableExistsError, match=r"'x\.t' already exists in catalog 'mlp' \(pass exist_ok=True"):
        Table.create("x.t", EVENTS)
    again = Table.create("x.t", pa.schema([("other", pa.int32())]), exist_ok=True)
    assert again.schema == first.schema  # the existing table, as it is


def test_racing_creators_all_get_the_one_table(catalog: Catalog) -> None:
    barrier = threading.Barrier(4)
    made: list[Table] = []
    errors: list[BaseException] = []

    def create() -> None:
        barrier.wait()
        try:
            made.append(Table.create("race.t", EVENTS, partition_by=["region"], exist_ok=True))
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(made) == 4
    assert {t.refresh().iceberg.metadata.table_uuid for t in made} == {made[0].iceberg.metadata.table_uuid}


def test_stage_to_table_creates_the_output_from_the_data(catalog: Catalog) -> None:
    shards = [_rows(i * 10, 10) for i in range(3)]
    staged = [
        stage_to_table("made.out", rows, shard=i, run_id="r", create_if_missing=True, partition_by=["region"])
        for i, rows in enumerate(shards)
    ]
    table = Table("made.out")
    assert [f.name for f in table.spec.fields] == ["region"]
    assert table.arrow_schema.field("event_id").nullable is False  # from the data's Arrow schema
    table.commit(staged, run_id="r")
    assert table.read().num_rows == 30
    # A later shard with data that does not fit the table (created by an earlier one) is refused.
    with pytest.raises(SchemaMismatchError, match="'title'"):
        stage_to_table(
            "made.out", _rows(0, 2).drop_columns(["title"]).append_column("title", pa.array([1, 2])), shard=9,
            run_id="r2", create_if_missing=True,
        )  # fmt: skip
    with pytest.raises(ConfigurationError, match="create_if_missing=True creates"):
        stage_to_table("made.out", _rows(0, 1), shard=0, run_id="r", partition_by=["region"])


def test_commit_operator_creates_an_empty_table_when_nothing_was_staged(catalog: Catalog) -> None:
    commit = IcebergCommitOperator(
        task_id="commit", table="made.empty", staged=[], create_if_missing=True, schema=EVENTS, partition_by=["region"]
    )
    result = commit.execute(context={"run_id": "manual__1"})
    assert result["snapshot_id"] is None
    table = Table("made.empty")
    assert table.read().num_rows == 0 and [f.name for f in table.spec.fields] == ["region"]
    no_schema = IcebergCommitOperator(task_id="c2", table="made.other", staged=[], create_if_missing=True)
    with pytest.raises(ConfigurationError, match=r"c2: table 'made\.other' is missing.*schema="):
        no_schema.execute(context={"run_id": "manual__1"})
