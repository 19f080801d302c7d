"""Property tests: on random schemas, data, partitioning, filters and projections, our reader returns
exactly what pyiceberg's ``scan().to_arrow()`` returns (row order aside)."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyiceberg.catalog import Catalog
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import IdentityTransform
from pyiceberg.types import BooleanType, DateType, DoubleType, IntegerType, LongType, NestedField, StringType

from airflow_provider_mlp.fastdata import Table
from tests.unit.fastdata.helpers import add_position_deletes, assert_same

# Both Parquet decoders (polars' and Arrow's) must give the same rows and schemas.
pytestmark = pytest.mark.usefixtures("each_decoder")

# (iceberg type, arrow type, value strategy, literal writer)
KINDS: dict[str, tuple[Any, pa.DataType, st.SearchStrategy[Any], Any]] = {
    "long": (LongType(), pa.int64(), st.integers(-1000, 1000), str),
    "int": (IntegerType(), pa.int32(), st.integers(-50, 50), str),
    "double": (DoubleType(), pa.float64(), st.floats(-100, 100, allow_nan=False).map(lambda f: round(f, 2)), str),
    "string": (StringType(), pa.string(), st.text("abcxyz", max_size=4), lambda v: "'" + v + "'"),
    "bool": (BooleanType(), pa.bool_(), st.booleans(), lambda v: "true" if v else "false"),
    "date": (
        DateType(),
        pa.date32(),
        st.dates(dt.date(2020, 1, 1), dt.date(2020, 3, 1)),
        lambda v: f"'{v.isoformat()}'",
    ),
}
OPS = ("=", "!=", "<", "<=", ">", ">=")
_names = itertools.count()


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    kinds = draw(st.lists(st.sampled_from(sorted(KINDS)), min_size=1, max_size=4))
    columns = [("id", "long")] + [(f"c{i}_{k}", k) for i, k in enumerate(kinds)]
    batches = []
    next_id = 0
    for _ in range(draw(st.integers(1, 3))):
        n = draw(st.integers(0, 40))
        data: dict[str, Any] = {"id": list(range(next_id, next_id + n))}
        next_id += n
        for name, kind in columns[1:]:
            values = draw(st.lists(st.one_of(st.none(), KINDS[kind][2]), min_size=n, max_size=n))
            data[name] = values
        batches.append(data)
    partition = draw(st.sampled_from([None] + [name for name, kind in columns[1:] if kind in ("string", "int")]))
    name, kind = draw(st.sampled_from(columns))
    op = draw(st.sampled_from(("=", "!=") if kind == "bool" else OPS))
    value = draw(KINDS[kind][2])
    row_filter = draw(
        st.sampled_from(
            [
                None,
                f"{name} {op} {KINDS[kind][3](value)}",
                f"{name} is null",
                f"{name} is not null or id < 5",
            ]
        )
    )
    projection = draw(st.one_of(st.none(), st.lists(st.sampled_from([c for c, _ in columns]), min_size=1, unique=True)))
    return {
        "columns": columns,
        "batches": batches,
        "partition": partition,
        "filter": row_filter,
        "projection": projection,
        "deletes": draw(st.lists(st.integers(0, 40), max_size=10)),
    }


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=cases())
def test_reader_matches_pyiceberg(catalog: Catalog, case: dict[str, Any]) -> None:
    catalog.create_namespace_if_not_exists("prop")
    fields = [
        NestedField(i + 1, name, KINDS[kind][0], required=False) for i, (name, kind) in enumerate(case["columns"])
    ]
    schema = Schema(*fields)
    spec = PartitionSpec()
    if case["partition"] is not None:
        source = schema.find_field(case["partition"]).field_id
        spec = PartitionSpec(PartitionField(source, 1000, IdentityTransform(), case["partition"]))
    identifier = f"prop.t{next(_names)}"
    iceberg = catalog.create_table(identifier, schema=schema, partition_spec=spec)
    arrow_schema = pa.schema([pa.field(name, KINDS[kind][1]) for name, kind in case["columns"]])
    for data in case["batches"]:
        iceberg.append(pa.table(data, schema=arrow_schema))
    files = sorted((t.file.file_path, t.file.record_count) for t in iceberg.scan().plan_files())
    if files and case["deletes"]:
        path, count = files[0]
        positions = sorted({p for p in case["deletes"] if p < count})
        if positions:
            add_position_deletes(iceberg, path, positions)
            iceberg = catalog.load_table(identifier)
    table = Table(identifier, catalog=catalog)
    projection = case["projection"]
    if projection is not None and "id" not in projection:
        projection = ["id", *projection]
    selected = tuple(projection) if projection else ("*",)
    theirs = table.iceberg.scan(row_filter=case["filter"] or "true", selected_fields=selected).to_arrow()
    ours = table.read(columns=projection, row_filter=case["filter"]).to_arrow()
    if theirs.num_rows == 0:
        assert ours.num_rows == 0
    else:
        assert_same(ours, theirs, "id")
    shards = table.shards(target_bytes=1, row_filter=case["filter"], columns=projection)
    from_shards = sum(table.read(s).num_rows for s in shards)
    assert from_shards == theirs.num_rows
