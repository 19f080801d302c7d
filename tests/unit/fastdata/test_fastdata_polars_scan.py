"""``Table.scan_polars()`` on real Iceberg tables: polars' answers, with projection and filter pushed
into this package's planner and reader."""

from __future__ import annotations

import datetime as dt
import sys
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from pyiceberg.catalog import Catalog
from pyiceberg.expressions import AlwaysTrue
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import IdentityTransform
from pyiceberg.types import DateType, DoubleType, LongType, NestedField, StringType

from airflow_provider_mlp.errors import MissingExtraError
from airflow_provider_mlp.fastdata import Table
from airflow_provider_mlp.fastdata.polars_scan import predicate_to_iceberg


@pytest.fixture
def mixed(catalog: Catalog) -> Table:
    """Four files (partitioned by ``kind``) with nulls, NaN and dates."""
    catalog.create_namespace_if_not_exists("pl")
    schema = Schema(
        NestedField(1, "id", LongType(), required=False),
        NestedField(2, "kind", StringType(), required=False),
        NestedField(3, "x", DoubleType(), required=False),
        NestedField(4, "day", DateType(), required=False),
        NestedField(5, "label", StringType(), required=False),
    )
    spec = PartitionSpec(PartitionField(2, 1000, IdentityTransform(), "kind"))
    iceberg = catalog.create_table("pl.mixed", schema=schema, partition_spec=spec)
    n = 400
    x = [None if i % 11 == 0 else float("nan") if i % 13 == 0 else (i % 100) / 100 for i in range(n)]
    iceberg.append(
        pa.table(
            {
                "id": pa.array(range(n), pa.int64()),
                "kind": [["a", "b", "c", "d"][i % 4] for i in range(n)],
                "x": pa.array(x, pa.float64()),
                "day": pa.array([dt.date(2024, 1, 1) + dt.timedelta(days=i % 30) for i in range(n)], pa.date32()),
                "label": [None if i % 7 == 0 else f"l{i % 9}" for i in range(n)],
            }
        )
    )
    return Table("pl.mixed", catalog=catalog)


PREDICATES = [
    pl.col("id") < 50,
    pl.col("kind") == "b",
    pl.lit(100) <= pl.col("id"),
    pl.col("x") > 0.5,  # NaN rows are kept by polars
    pl.col("x") != 0.25,
    pl.col("x") <= 0.5,
    pl.col("x").is_null(),
    pl.col("label").is_not_null() & (pl.col("kind") != "a"),
    pl.col("kind").is_in(["a", "c"]) | (pl.col("id") == 3),
    pl.col("label").is_in(["l1", None], nulls_equal=True),
    ~(pl.col("id") >= 10),
    pl.col("day") >= dt.date(2024, 1, 20),
    (pl.col("id") * 2 < 30) & (pl.col("kind") == "c"),  # arithmetic: only the second part is pushed down
    ~((pl.col("id") * 2 < 30) & (pl.col("kind") == "c")),  # a negated inexact part is not pushed down
    pl.col("label").str.starts_with("l1") | (pl.col("id") > 390),
    pl.col("id") < 2.5,  # a float literal on a long column is not pushed down (no rounding)
]


@pytest.mark.parametrize("predicate", PREDICATES, ids=[str(p) for p in PREDICATES])
def test_filter_and_projection_give_polars_answer(mixed: Table, predicate: pl.Expr) -> None:
    expected = mixed.read().to_polars().filter(predicate).select("id", "label").sort("id")
    ours = mixed.scan_polars().filter(predicate).select("id", "label").collect().sort("id")
    assert ours.equals(expected, null_equal=True)
    assert ours.schema == expected.schema


def test_projection_and_filter_reach_the_reader(mixed: Table, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, list[Any]]] = []
    real = Table._read_plan

    def spy(self: Table, *args: Any, **kwargs: Any) -> Any:
        plan, parts = real(self, *args, **kwargs)
        calls.append((plan, parts))
        return plan, parts

    frame = mixed.scan_polars()
    monkeypatch.setattr(Table, "_read_plan", spy)
    result = frame.filter((pl.col("kind") == "b") & (pl.col("id") < 100)).select("id").collect()
    assert sorted(result["id"].to_list()) == [i for i in range(100) if i % 4 == 1]
    ((plan, parts),) = calls
    assert plan.projected_schema.column_names == ["id", "kind"]
    assert "kind" in str(plan.bound_row_filter) and "id" in str(plan.bound_row_filter)
    # The filter on the partition column leaves one file of four to read.
    assert len(parts) == 1


def test_shards_together_are_the_table(mixed: Table) -> None:
    shards = mixed.shards(target_bytes=1)
    assert len(shards) == 4
    parts = [mixed.scan_polars(shard).filter(pl.col("x") > 0.5).collect() for shard in shards]
    whole = mixed.scan_polars().filter(pl.col("x") > 0.5).collect()
    assert pl.concat(parts).sort("id").equals(whole.sort("id"), null_equal=True)


def test_head_empty_results_and_fixed_snapshot(mixed: Table) -> None:
    frame = mixed.scan_polars(batch_rows=16)
    assert frame.head(5).collect().height == 5
    empty = frame.filter(pl.col("id") > 10_000).collect()
    assert empty.height == 0
    assert empty.schema == frame.collect_schema()
    assert frame.collect_schema()["label"] == pl.String
    mixed.iceberg.append(mixed.read(row_filter="id < 10").to_arrow().cast(mixed.iceberg.schema().as_arrow()))
    assert frame.collect().height == 400  # the snapshot of when the frame was made
    assert mixed.scan_polars().collect().height == 410


def test_predicate_translation() -> None:
    schema = Schema(NestedField(1, "id", LongType(), required=False), NestedField(2, "x", DoubleType(), required=False))
    assert predicate_to_iceberg(None, schema) == AlwaysTrue()
    assert predicate_to_iceberg(pl.col("nope") == 1, schema) == AlwaysTrue()
    assert predicate_to_iceberg(pl.col("id") == "text", schema) == AlwaysTrue()
    assert "IsNaN" in str(predicate_to_iceberg(pl.col("x") > 1.0, schema))
    assert "IsNaN" not in str(predicate_to_iceberg(pl.col("x") < 1.0, schema))
    assert predicate_to_iceberg(pl.col("x") == float("nan"), schema) == AlwaysTrue()


def test_without_polars_names_the_extra(mixed: Table, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "polars", None)
    with pytest.raises(MissingExtraError, match=r"airflow-provider-mlp\[polars\]"):
        mixed.scan_polars()
