"""polars' Parquet decoder: the same rows and schemas as Arrow's and pyiceberg's, filters translated with
Arrow's semantics (NaN, nulls in ``in``), and Arrow used for whatever polars is not given."""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

import pyarrow as pa
import pytest
from pyiceberg.catalog import Catalog
from pyiceberg.schema import Schema
from pyiceberg.types import (
    BooleanType,
    DateType,
    DecimalType,
    DoubleType,
    IntegerType,
    ListType,
    LongType,
    MapType,
    NestedField,
    StringType,
    StructType,
    TimestamptzType,
)

import airflow_provider_mlp.fastdata.native_decode as native_decode
import airflow_provider_mlp.fastdata.polars_decode as polars_decode
from airflow_provider_mlp.errors import ConfigurationError, MissingExtraError
from airflow_provider_mlp.fastdata import Table
from tests.unit.fastdata.helpers import add_position_deletes

NAN = float("nan")


def _rows(table: pa.Table) -> list[tuple[str, ...]]:
    """Rows sorted by id, every value as text: NaN equals NaN, which ``pa.Table.equals`` does not say."""
    table = table.sort_by("id")
    return [tuple(str(v) for v in row.values()) for row in table.to_pylist()]


@pytest.fixture
def mixed(catalog: Catalog) -> Table:
    """Floats with NaN, signed zeros and nulls; ints, strings, dates, booleans and timestamps with nulls."""
    catalog.create_namespace_if_not_exists("pd")
    schema = Schema(
        NestedField(1, "id", LongType(), required=False),
        NestedField(2, "x", DoubleType(), required=False),
        NestedField(3, "i", IntegerType(), required=False),
        NestedField(4, "s", StringType(), required=False),
        NestedField(5, "d", DateType(), required=False),
        NestedField(6, "b", BooleanType(), required=False),
        NestedField(7, "ts", TimestamptzType(), required=False),
    )
    iceberg = catalog.create_table("pd.mixed", schema=schema)
    xs = [NAN, 1.0, -0.0, 0.0, None, 0.5, 2.5, -3.0]
    n = 64
    base = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    data = pa.table(
        {
            "id": pa.array(range(n), pa.int64()),
            "x": pa.array([xs[k % len(xs)] for k in range(n)], pa.float64()),
            "i": pa.array([None if k % 5 == 0 else k % 7 for k in range(n)], pa.int32()),
            "s": pa.array([None if k % 6 == 0 else ["a", "ab", "b", "ba"][k % 4] for k in range(n)]),
            "d": pa.array([None if k % 9 == 0 else dt.date(2020, 1, 1 + k % 5) for k in range(n)], pa.date32()),
            "b": pa.array([None if k % 4 == 0 else k % 3 == 0 for k in range(n)]),
            "ts": pa.array([base + dt.timedelta(hours=k) for k in range(n)], pa.timestamp("us", tz="UTC")),
        }
    )
    for half in (data.slice(0, n // 2), data.slice(n // 2)):
        iceberg.append(half)
    return Table("pd.mixed", catalog=catalog)


FILTERS = [
    "x > 0.5",
    "x >= 0",
    "x < 1",
    "x <= 0",
    "x = 0",
    "x != 1",
    "not x > 0.5",
    "x is nan",
    "x is not nan",
    "i in (1, 2)",
    "i not in (1, 2)",
    "s not in ('a')",
    "s in ('a', 'ba')",
    "s like 'a%'",
    "s not like 'a%'",
    "s >= 'b'",
    "d >= '2020-01-03'",
    "b = true",
    "b != true",
    "i is null or x > 1",
    "i is not null and not (s = 'a')",
    "ts > '2024-01-02T00:00:00+00:00'",
    "x > 0.5 and ts < '2024-01-02T00:00:00+00:00'",
]


@pytest.mark.parametrize("row_filter", FILTERS)
def test_filters_keep_what_arrow_and_pyiceberg_keep(mixed: Table, row_filter: str, monkeypatch: Any) -> None:
    decoded = []
    real = polars_decode.read_rows

    def spying(opened: Any, first: int, last: int) -> pa.Table:
        decoded.append(opened.polars_filter is not None)
        return real(opened, first, last)

    monkeypatch.setattr(polars_decode, "read_rows", spying)
    theirs = mixed.iceberg.scan(row_filter=row_filter).to_arrow()
    with_polars = Table("pd.mixed", catalog=mixed.catalog, decoder="polars").read(row_filter=row_filter).to_arrow()
    with_arrow = Table("pd.mixed", catalog=mixed.catalog, decoder="pyarrow").read(row_filter=row_filter).to_arrow()
    assert with_polars.schema == with_arrow.schema
    assert _rows(with_polars) == _rows(with_arrow) == _rows(theirs.cast(with_arrow.schema))
    assert decoded, "polars decoded nothing"
    if not row_filter.startswith("ts") and "ts <" not in row_filter:
        # Timestamps have no polars translation: Arrow filters what polars decoded. Everything else
        # is filtered by polars while it decodes.
        assert all(decoded), f"{row_filter!r} was not translated to polars"


def test_positional_deletes_with_and_without_filter(mixed: Table) -> None:
    files = sorted(t.file.file_path for t in mixed.iceberg.scan().plan_files())
    add_position_deletes(mixed.iceberg, files[0], [0, 3, 4, 31])
    add_position_deletes(mixed.iceberg, files[1], range(0, 32, 3))
    mixed.refresh()
    for row_filter in (None, "x > 0", "ts > '2024-01-02T00:00:00+00:00'"):
        theirs = mixed.iceberg.scan(row_filter=row_filter or "true").to_arrow()
        polars_read = Table("pd.mixed", catalog=mixed.catalog, decoder="polars")
        arrow_read = Table("pd.mixed", catalog=mixed.catalog, decoder="pyarrow")
        ours = polars_read.read(row_filter=row_filter).to_arrow()
        assert _rows(ours) == _rows(arrow_read.read(row_filter=row_filter).to_arrow())
        assert _rows(ours) == _rows(theirs.cast(ours.schema))
        streamed = pa.Table.from_batches(list(polars_read.read_batches(batch_rows=5, row_filter=row_filter)))
        assert _rows(streamed) == _rows(ours)


def test_row_groups_are_pruned_before_polars_and_streamed_one_at_a_time(catalog: Catalog, monkeypatch: Any) -> None:
    catalog.create_namespace_if_not_exists("pd")
    schema = Schema(NestedField(1, "id", LongType(), required=False), NestedField(2, "s", StringType(), required=False))
    iceberg = catalog.create_table("pd.rg", schema=schema, properties={"write.parquet.row-group-limit": "1000"})
    ids = pa.array(range(20_000), pa.int64())
    iceberg.append(pa.table({"id": ids, "s": pa.array([f"value-{i:08d}" for i in range(20_000)])}))
    table = Table("pd.rg", catalog=catalog, decoder="polars")
    # The native kernel would decode these flat columns itself: this test is about polars' runs.
    monkeypatch.setattr(native_decode, "usable", lambda opened, row_groups: False)
    monkeypatch.setattr(native_decode, "selectable", lambda opened, row_groups: False)
    runs: list[tuple[int, int]] = []
    real = polars_decode.read_rows

    def spying(opened: Any, first: int, last: int) -> pa.Table:
        runs.append((first, last))
        return real(opened, first, last)

    monkeypatch.setattr(polars_decode, "read_rows", spying)
    assert table.read().num_rows == 20_000
    assert runs == [(0, 19)]  # the whole file in one call
    runs.clear()
    ours = table.read(row_filter="id >= 4500 and id < 6500").to_arrow()
    assert sorted(ours.column("id").to_pylist()) == list(range(4500, 6500))
    assert runs == [(4, 6)]  # statistics ruled out the other row groups
    runs.clear()
    assert sum(b.num_rows for b in table.read_batches(batch_rows=700)) == 20_000
    assert runs == [(rg, rg) for rg in range(20)]  # streaming: one row group at a time


def test_types_polars_is_not_given_are_decoded_by_arrow(catalog: Catalog, monkeypatch: Any) -> None:
    catalog.create_namespace_if_not_exists("pd")
    schema = Schema(
        NestedField(1, "id", LongType(), required=False),
        NestedField(2, "amount", DecimalType(9, 2), required=False),
        NestedField(3, "tags", MapType(4, StringType(), 5, LongType(), value_required=False), required=False),
        NestedField(
            6,
            "point",
            StructType(
                NestedField(7, "x", DoubleType(), required=False),
                NestedField(8, "labels", ListType(9, StringType(), element_required=False), required=False),
            ),
            required=False,
        ),
    )
    iceberg = catalog.create_table("pd.types", schema=schema)
    arrow_schema = iceberg.schema().as_arrow()
    data = pa.table(
        {
            "id": pa.array([1, 2, 3], pa.int64()),
            "amount": pa.array([decimal.Decimal("1.25"), None, decimal.Decimal("-3.10")], pa.decimal128(9, 2)),
            "tags": pa.array([[("a", 1)], [], None], pa.map_(pa.large_string(), pa.int64())),
            "point": pa.array(
                [{"x": 1.0, "labels": ["p", "q"]}, None, {"x": NAN, "labels": []}],
                arrow_schema.field("point").type,
            ),
        },
        schema=arrow_schema,
    )
    iceberg.append(data)
    used = []
    real = polars_decode.read_rows
    monkeypatch.setattr(
        polars_decode, "read_rows", lambda o, f, la, columns=None: used.append(o.columns) or real(o, f, la, columns)
    )
    table = Table("pd.types", catalog=catalog, decoder="polars")
    theirs = iceberg.scan().to_arrow()
    for columns in (None, ["id", "amount"], ["id", "tags"], ["id", "point"]):
        used.clear()
        ours = table.read(columns=columns).to_arrow()
        arrow = Table("pd.types", catalog=catalog, decoder="pyarrow").read(columns=columns).to_arrow()
        assert ours.schema == arrow.schema
        assert _rows(ours) == _rows(arrow) == _rows(theirs.select(ours.column_names).cast(ours.schema))
        # Structs and lists of supported types go to polars; decimals and maps stay with Arrow.
        assert bool(used) == (columns == ["id", "point"])


def test_dictionary_columns_and_polars_errors_fall_back_to_arrow(mixed: Table, monkeypatch: Any) -> None:
    table = Table("pd.mixed", catalog=mixed.catalog, decoder="polars")
    arrow = Table("pd.mixed", catalog=mixed.catalog, decoder="pyarrow")
    called = []
    real = polars_decode.read_rows
    monkeypatch.setattr(polars_decode, "read_rows", lambda o, f, la: called.append(1) or real(o, f, la))
    frame = table.read(columns=["id", "s"], dictionary_columns=["s"]).to_arrow()
    assert pa.types.is_dictionary(frame.schema.field("s").type)
    assert not called  # dictionary columns are Arrow's
    assert frame.equals(arrow.read(columns=["id", "s"], dictionary_columns=["s"]).to_arrow())

    import polars as pl

    def refusing(*args: Any, **kwargs: Any) -> Any:
        raise pl.exceptions.ComputeError("not today")

    monkeypatch.setattr(pl, "scan_parquet", refusing)
    assert _rows(table.read(row_filter="x > 0").to_arrow()) == _rows(arrow.read(row_filter="x > 0").to_arrow())
    assert called


def test_decoder_is_checked_when_a_read_is_planned(mixed: Table, monkeypatch: Any) -> None:
    table = Table("pd.mixed", catalog=mixed.catalog, decoder="fastest")  # no validation when made
    with pytest.raises(ConfigurationError, match="'auto', 'polars' or 'pyarrow'"):
        table.read()
    monkeypatch.setattr(polars_decode, "polars_installed", lambda: False)
    assert polars_decode.resolve_decoder("auto") == "pyarrow"
    with pytest.raises(MissingExtraError, match=r"airflow-provider-mlp\[polars\]"):
        Table("pd.mixed", catalog=mixed.catalog, decoder="polars").read()
    assert Table("pd.mixed", catalog=mixed.catalog, decoder="auto").read().num_rows == 64


def test_string_view_reads_keep_polars_when_arrow_applies_the_filter(catalog: Catalog, monkeypatch: Any) -> None:
    catalog.create_namespace_if_not_exists("pd")
    schema = Schema(
        NestedField(1, "id", LongType(), required=False),
        NestedField(2, "ts", TimestamptzType(), required=False),
        NestedField(3, "s", StringType(), required=False),
    )
    iceberg = catalog.create_table("pd.views", schema=schema)
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    iceberg.append(
        pa.table(
            {
                "id": pa.array(range(1_000), pa.int64()),
                "ts": pa.array([start + dt.timedelta(hours=i) for i in range(1_000)], pa.timestamp("us", "UTC")),
                "s": pa.array([f"value {i}" for i in range(1_000)], pa.large_string()),
            },
            schema=iceberg.schema().as_arrow(),
        )
    )
    outcomes: list[str] = []
    real = polars_decode.read_rows

    def spying(opened: Any, first: int, last: int) -> pa.Table:
        try:
            result = real(opened, first, last)
        except polars_decode.PolarsDecodeError:
            outcomes.append("fell back to Arrow")
            raise
        outcomes.append("polars")
        return result

    monkeypatch.setattr(polars_decode, "read_rows", spying)
    table = Table("pd.views", catalog=catalog, decoder="polars")
    # polars is given no timestamp filter (see _ToPolarsMethods._literal): Arrow filters its output.
    row_filter = "ts >= '2026-01-21T00:00:00+00:00'"
    ours = table.read(row_filter=row_filter, string_view=True).to_arrow()
    assert ours.schema.field("s").type == pa.string_view()
    assert sorted(ours.column("id").to_pylist()) == list(range(480, 1_000))
    # Arrow filters no view column, so polars exports large strings here, to be cast after the filter.
    assert outcomes == ["polars"]
