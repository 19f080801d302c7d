"""One Arrow schema for every read: on tables whose schema and partitioning evolved at random, the
whole table, every shard and every streamed batch have the schema of the projection (pyiceberg's
``schema_to_pyarrow`` of it), whichever files they hold, and the shards together are the whole table."""

from __future__ import annotations

import itertools
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pyiceberg.catalog import Catalog
from pyiceberg.io.pyarrow import schema_to_pyarrow
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import IdentityTransform
from pyiceberg.types import (
    DoubleType,
    FloatType,
    IcebergType,
    IntegerType,
    ListType,
    LongType,
    NestedField,
    StringType,
    StructType,
)

from airflow_provider_mlp.fastdata import Table
from airflow_provider_mlp.fastdata.reader import output_schema
from tests.unit.fastdata.helpers import add_file_without_partition_column, assert_same, sort_all

# Both Parquet decoders (polars' and Arrow's) must give the same rows and schemas.
pytestmark = pytest.mark.usefixtures("each_decoder")

_names = itertools.count()
_field_ids = itertools.count(1000)


def _new_type(kind: str) -> IcebergType:
    if kind == "int":
        return IntegerType()
    if kind == "float":
        return FloatType()
    if kind == "string":
        return StringType()
    if kind == "struct":
        return StructType(
            NestedField(next(_field_ids), "a", StringType(), required=False),
            NestedField(next(_field_ids), "b", IntegerType(), required=False),
        )
    return ListType(next(_field_ids), StringType(), element_required=False)


KINDS = ("int", "float", "string", "struct", "list")
STEPS = ("add", "rename", "promote", "drop_and_readd", "partition")


def _values(arrow_type: pa.DataType, ids: range) -> pa.Array:
    """Values of ``arrow_type`` for rows ``ids``: every fourth null, the rest derived from the id."""
    values: list[Any] = []
    for i in ids:
        if i % 4 == 3:
            values.append(None)
        elif pa.types.is_integer(arrow_type):
            values.append(i % 7)
        elif pa.types.is_floating(arrow_type):
            values.append(i / 8)
        elif pa.types.is_struct(arrow_type):
            values.append({"a": f"s{i % 5}", "b": i % 3})
        elif pa.types.is_large_list(arrow_type) or pa.types.is_list(arrow_type):
            values.append([f"e{i % 3}"] * (i % 3))
        else:
            values.append(f"v{i % 6}")
    return pa.array(values, type=arrow_type)


@st.composite
def evolutions(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "initial": draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=3)),
        "steps": draw(st.lists(st.tuples(st.sampled_from(STEPS), st.integers(0, 99)), min_size=1, max_size=4)),
        "rows": draw(st.lists(st.integers(0, 30), min_size=2, max_size=5)),
        "hive_file": draw(st.booleans()),
        "target_bytes": draw(st.sampled_from([1, 600, 3000, 1 << 30])),
        "batch_rows": draw(st.integers(1, 40)),
        "projection_seed": draw(st.integers(0, 2**16)),
        "row_filter": draw(st.sampled_from([None, "id < 20", "id >= 10 and id < 45", "id > 10000"])),
        "dictionary": draw(st.booleans()),
    }


def _evolve(catalog: Catalog, case: dict[str, Any]) -> tuple[Table, int]:
    """A table through ``case``'s evolution, a small append after each step; returns it and its row count."""
    catalog.create_namespace_if_not_exists("schema")
    fields = [NestedField(1, "id", LongType(), required=False), NestedField(2, "part", StringType(), required=False)]
    for index, kind in enumerate(case["initial"]):
        fields.append(NestedField(3 + index, f"c{index}_{kind}", _new_type(kind), required=False))
    spec = PartitionSpec(PartitionField(2, 1000, IdentityTransform(), "part"))
    identifier = f"schema.t{next(_names)}"
    iceberg = catalog.create_table(identifier, schema=Schema(*fields), partition_spec=spec)
    next_id = 0
    # By field id: a renamed partition source is still one, and dropping it would break the spec.
    partitioned = {iceberg.schema().find_field("part").field_id}
    sizes = iter(itertools.cycle(case["rows"]))

    def append() -> None:
        nonlocal next_id, iceberg
        n = next(sizes)
        if not n:
            return
        schema = iceberg.schema().as_arrow()
        ids = range(next_id, next_id + n)
        columns = {
            f.name: pa.array(ids, pa.int64())
            if f.name == "id"
            else pa.array([f"p{i % 2}" for i in ids])
            if f.name == "part"
            else _values(f.type, ids)
            for f in schema
        }
        iceberg.append(pa.table(columns, schema=schema))
        iceberg = catalog.load_table(identifier)
        next_id += n

    append()
    for step, pick in case["steps"]:
        current = iceberg.schema()
        others = [f for f in current.fields if f.name not in ("id", "part")]
        with iceberg.transaction() as txn:
            if step == "add" or not others:
                kind = KINDS[pick % len(KINDS)]
                with txn.update_schema() as update:
                    update.add_column(f"n{next(_field_ids)}_{kind}", _new_type(kind))
            elif step == "rename":
                chosen = others[pick % len(others)]
                with txn.update_schema() as update:
                    update.rename_column(chosen.name, f"{chosen.name}_r{pick}")
            elif step == "promote":
                promotable = [f for f in others if isinstance(f.field_type, (IntegerType, FloatType))]
                if promotable:
                    chosen = promotable[pick % len(promotable)]
                    wider = LongType() if isinstance(chosen.field_type, IntegerType) else DoubleType()
                    with txn.update_schema() as update:
                        update.update_column(chosen.name, wider)
            elif step == "drop_and_readd":
                droppable = [f for f in others if f.field_id not in partitioned]
                if droppable:
                    chosen = droppable[pick % len(droppable)]
                    with txn.update_schema() as update:
                        update.delete_column(chosen.name)
                    # The same name again: a new field id, so older files do not have it.
                    with txn.update_schema() as update:
                        update.add_column(chosen.name, StringType())
            else:
                identity = [f for f in others if isinstance(f.field_type, (IntegerType, StringType))]
                spec_fields = {f.name for f in iceberg.spec().fields}
                with txn.update_spec() as spec_update:
                    if "part" in spec_fields and pick % 2:
                        spec_update.remove_field("part")
                    elif "part" not in spec_fields:
                        spec_update.add_identity("part")
                    elif identity:
                        chosen = identity[pick % len(identity)]
                        if chosen.name not in spec_fields:
                            spec_update.add_identity(chosen.name)
                            partitioned.add(chosen.field_id)
        iceberg = catalog.load_table(identifier)
        append()
    spec_fields = [f.name for f in iceberg.spec().fields]
    if case["hive_file"] and spec_fields == ["part"]:
        # A file that does not store its identity partition column.
        ids = range(next_id, next_id + 3)
        add_file_without_partition_column(iceberg, pa.table({"id": pa.array(ids, pa.int64())}), "hive")
        next_id += 3
    return Table(identifier, catalog=catalog), next_id


def _projection(table: Table, seed: int) -> list[str] | None:
    names = table.schema.column_names
    if seed % 3 == 0:
        return None
    chosen = [name for index, name in enumerate(names) if name != "id" and (seed >> index) & 1]
    return ["id", *chosen]


# No shrinking phase: a failing case of a table built step by step takes minutes to shrink.
@settings(
    max_examples=25,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(case=evolutions(), string_view=st.booleans())
def test_every_shard_and_batch_has_the_projection_schema(
    catalog: Catalog, case: dict[str, Any], string_view: bool
) -> None:
    table, _ = _evolve(catalog, case)
    columns = _projection(table, case["projection_seed"])
    row_filter = case["row_filter"]
    strings = [f.name for f in table.schema.fields if isinstance(f.field_type, StringType)]
    selected = [f.name for f in table.schema.fields if columns is None or f.name in columns]
    dictionary = [name for name in strings if name in selected][:1] if case["dictionary"] else []

    scan = table.iceberg.scan(row_filter=row_filter or "true", selected_fields=tuple(columns or ("*",)))
    expected = schema_to_pyarrow(scan.projection(), include_field_ids=False)
    if dictionary or string_view:
        expected = output_schema(scan.projection(), dictionary, string_view)
    views = {"string_view": string_view}

    whole = table.read(columns=columns, row_filter=row_filter, dictionary_columns=dictionary, **views).to_arrow()
    assert whole.schema == expected
    plain_schema = schema_to_pyarrow(scan.projection(), include_field_ids=False)
    plain = whole.cast(plain_schema)
    assert_same(plain, scan.to_arrow(), "id")

    shards = table.shards(target_bytes=case["target_bytes"], row_filter=row_filter, columns=columns)
    parts = []
    for shard in shards:
        part = table.read(shard, row_filter=row_filter, dictionary_columns=dictionary, **views).to_arrow()
        assert part.schema == expected, f"shard {shard['shard_id']} ({len(shard['files'])} files)"
        parts.append(part)
        for batch in table.read_batches(
            shard, batch_rows=case["batch_rows"], row_filter=row_filter, dictionary_columns=dictionary, **views
        ):
            assert batch.schema == expected
            assert 0 < batch.num_rows <= case["batch_rows"]
    for batch in table.read_batches(
        batch_rows=case["batch_rows"], columns=columns, row_filter=row_filter, dictionary_columns=dictionary, **views
    ):
        assert batch.schema == expected
    # Concatenated as they are: no promotion needed.
    union = pa.concat_tables(parts, promote_options="none") if parts else expected.empty_table()
    # (Dictionaries differ from chunk to chunk: compared by value.)
    assert sort_all(union.cast(plain_schema), "id").combine_chunks().equals(sort_all(plain, "id").combine_chunks())


def test_shard_of_files_from_before_a_column_was_added(catalog: Catalog) -> None:
    """The issue's case: a string column added after the first files were written."""
    catalog.create_namespace_if_not_exists("added")
    iceberg = catalog.create_table(
        "added.t",
        schema=Schema(NestedField(1, "id", LongType(), required=False), NestedField(2, "s", StringType())),
    )
    iceberg.append(pa.table({"id": pa.array([1, 2], pa.int64()), "s": ["a", "b"]}))
    with iceberg.update_schema() as update:
        update.add_column("note", StringType())
    iceberg = catalog.load_table("added.t")
    iceberg.append(pa.table({"id": pa.array([3], pa.int64()), "s": ["c"], "note": ["n"]}))
    table = Table("added.t", catalog=catalog)
    shards = table.shards(target_bytes=1)
    assert len(shards) == 2
    parts = [table.read(shard).to_arrow() for shard in shards]
    assert parts[0].schema == parts[1].schema == table.read().schema == table.arrow_schema
    assert table.arrow_schema.field("note").type == pa.large_string()
    assert pa.concat_tables(parts).num_rows == 3


@pytest.mark.parametrize("columns", [None, ["id"], ["s"]])
def test_empty_reads_have_the_projection_schema(catalog: Catalog, columns: list[str] | None) -> None:
    catalog.create_namespace_if_not_exists("empty")
    identifier = f"empty.t{next(_names)}"
    iceberg = catalog.create_table(
        identifier, schema=Schema(NestedField(1, "id", LongType(), required=False), NestedField(2, "s", StringType()))
    )
    iceberg.append(pa.table({"id": pa.array([1, 2], pa.int64()), "s": ["a", "b"]}))
    table = Table(identifier, catalog=catalog)
    empty = table.read(columns=columns, row_filter="id > 100").to_arrow()
    full = table.read(columns=columns).to_arrow()
    assert empty.num_rows == 0
    assert empty.schema == full.schema
