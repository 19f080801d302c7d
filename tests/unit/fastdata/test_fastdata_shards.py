"""Planning: pruning through pyiceberg's planner, balance by bytes, row-group splits, JSON descriptors."""

from __future__ import annotations

import json
import logging
from typing import Any

import pyarrow as pa
import pytest
from pyiceberg.catalog import Catalog
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField, StringType

from airflow_provider_mlp.fastdata import ShardError, Table
from tests.unit.fastdata.helpers import add_position_deletes, assert_same

# Both Parquet decoders (polars' and Arrow's) must give the same rows and schemas.
pytestmark = pytest.mark.usefixtures("each_decoder")


def _many_row_groups(catalog: Catalog) -> Table:
    catalog.create_namespace_if_not_exists("rg")
    schema = Schema(NestedField(1, "id", LongType(), required=False), NestedField(2, "s", StringType(), required=False))
    iceberg = catalog.create_table("rg.t", schema=schema, properties={"write.parquet.row-group-limit": "1000"})
    for start in (0, 20_000):
        ids = pa.array(range(start, start + 20_000), pa.int64())
        iceberg.append(pa.table({"id": ids, "s": pa.array([f"value-{i:08d}" for i in range(20_000)])}))
    return Table("rg.t", catalog=catalog)


def test_shards_are_json_deterministic_and_cover_the_table(events: Table) -> None:
    shards = events.shards(target_bytes=1)
    assert json.loads(json.dumps(shards)) == shards
    assert shards == events.shards(target_bytes=1)
    assert len(shards) == 4
    assert [s["index"] for s in shards] == [0, 1, 2, 3]
    assert {s["snapshot_id"] for s in shards} == {events.current_snapshot_id}
    paths = [f["path"] for s in shards for f in s["files"]]
    assert len(paths) == len(set(paths)) == 4
    whole = pa.concat_tables(events.read(s).to_arrow() for s in shards)
    assert_same(whole, events.iceberg.scan().to_arrow(), "event_id")
    assert len(events.shards()) == 1


def test_partition_pruning_and_projection_travel_in_the_descriptor(events: Table) -> None:
    shards = events.shards(target_bytes=1, row_filter="event_type = 'view'", columns=["event_id", "amount"])
    assert len(shards) == 1
    assert shards[0]["row_filter"] == "event_type = 'view'"
    frame = events.read(shards[0]).to_arrow()
    assert frame.column_names == ["event_id", "amount"]
    theirs = events.iceberg.scan(row_filter="event_type = 'view'", selected_fields=("event_id", "amount")).to_arrow()
    assert_same(frame, theirs, "event_id")
    narrowed = events.read(shards[0], row_filter="amount > 40").to_arrow()
    assert narrowed.num_rows == theirs.filter(pa.compute.greater(theirs["amount"], 40)).num_rows


def test_large_files_split_by_row_groups_and_balance(catalog: Catalog) -> None:
    table = _many_row_groups(catalog)
    total = sum(t.file.file_size_in_bytes for t in table.iceberg.scan().plan_files())
    shards = table.shards(target_bytes=total // 8)
    assert len(shards) >= 6
    split = [f for s in shards for f in s["files"] if f["row_groups"] is not None]
    assert split, "expected files cut between row groups"
    assert all(f["byte_range"][0] < f["byte_range"][1] for f in split)
    sizes = [s["bytes"] for s in shards]
    assert max(sizes) <= 2 * min(sizes)
    assert shards == table.shards(target_bytes=total // 8)
    parts = [table.read(s).to_arrow() for s in shards]
    assert_same(pa.concat_tables(parts), table.iceberg.scan().to_arrow(), "id")
    streamed = [b for s in shards for b in table.read_batches(s, batch_rows=4096)]
    assert sum(b.num_rows for b in streamed) == 40_000


def test_split_shards_with_deletes_and_filter(catalog: Catalog) -> None:
    table = _many_row_groups(catalog)
    first = sorted(t.file.file_path for t in table.iceberg.scan().plan_files())[0]
    add_position_deletes(table.iceberg, first, list(range(500, 2500)) + [19_999])
    table.refresh()
    shards = table.shards(target_bytes=50_000, row_filter="id >= 1000 and id < 30000")
    # Empty shards included: every shard has the same schema, so they concatenate as they are.
    parts = pa.concat_tables(table.read(s).to_arrow() for s in shards)
    theirs = table.iceberg.scan(row_filter="id >= 1000 and id < 30000").to_arrow()
    assert_same(parts, theirs, "id")
    assert all(f["deletes"] for s in shards for f in s["files"] if f["path"] == first)


def test_shard_from_another_table_or_snapshot_is_refused(events: Table, catalog: Catalog) -> None:
    shard = events.shards()[0]
    other = Table("demo.other", catalog=catalog)
    with pytest.raises(ShardError, match="demo.events"):
        other.read(shard)
    foreign = dict(shard, snapshot_id=12345)
    with pytest.raises(ShardError, match="12345"):
        events.read(foreign)
    run = "r"
    events.overwrite(events.read(row_filter="event_type = 'view'").to_arrow(), "event_type = 'view'", run_id=run)
    current = events.current_snapshot_id
    stale = dict(shard, snapshot_id=current)
    with pytest.raises(ShardError, match="does not have"):
        events.read(stale)
    with pytest.raises(ShardError, match="kind"):
        events.read({"files": []})
    with pytest.raises(ShardError, match="JSON"):
        events.read("{not json")


def test_filter_columns_first_and_row_groups_skipped(catalog: Catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    import airflow_provider_mlp.fastdata.reader as reader

    table = _many_row_groups(catalog)
    table.decoder = "pyarrow"  # how Arrow's decode orders its work (polars': test_fastdata_polars_decode)
    decoded: list[tuple[int, tuple[str, ...]]] = []
    real_decode = reader._decode

    def counting_decode(opened: Any, source: Any, rg: int, columns: Any) -> Any:
        decoded.append((rg, tuple(columns)))
        return real_decode(opened, source, rg, columns)

    monkeypatch.setattr(reader, "_decode", counting_decode)
    # Statistics rule out all but two of the 40 row groups (files are pruned by the planner first).
    ours = table.read(row_filter="id >= 500 and id < 1500").to_arrow()
    assert sorted(ours.column("id").to_pylist()) == list(range(500, 1500))
    assert sorted(rg for rg, _ in decoded if _ == ("id",)) == [0, 1]
    assert sorted(rg for rg, cols in decoded if cols == ("s",)) == [0, 1]
    decoded.clear()
    # A value inside every row group's min/max but in none: only the filter column is decoded.
    assert table.read(row_filter="s = 'value-00000500x'").num_rows == 0
    assert decoded and all(cols == ("s",) for _, cols in decoded)
    decoded.clear()
    found = table.read(row_filter="s = 'value-00000500'", columns=["id"]).to_arrow()
    assert sorted(found.column("id").to_pylist()) == [500, 20_500]
    assert {cols for _, cols in decoded} == {("s",), ("id",)}
    assert len([1 for _, cols in decoded if cols == ("id",)]) == 2


def _title_pairs(rows: int) -> pa.Table:
    """Pairs of titles of 2-5 words, about 70 bytes a row in Arrow (issue 15's 200k-row table)."""
    import numpy as np

    rng = np.random.default_rng(15)
    words = np.array([f"{w}{i}" for i, w in enumerate(["night", "star", "war", "home", "blue", "last"] * 500)])

    def titles() -> list[str]:
        return [" ".join(words[rng.integers(0, len(words), k)]) for k in rng.integers(2, 6, rows)]

    return pa.table({"pair_id": pa.array(np.arange(rows), pa.int64()), "left": titles(), "right": titles()})


def test_a_table_written_by_stage_fans_out(catalog: Catalog, caplog: pytest.LogCaptureFixture) -> None:
    pairs = _title_pairs(200_000)
    catalog.create_namespace("content")
    catalog.create_table("content.title_pairs", schema=pairs.schema)
    table = Table("content.title_pairs")
    table.commit(table.stage(pairs, shard_id=0, run_id="load"), run_id="load")
    with caplog.at_level(logging.INFO, logger="airflow_provider_mlp.fastdata.planning"):
        shards = table.shards(target_bytes=512 << 10)
    assert len(shards) >= 5, [s["bytes"] for s in shards]
    assert sum(s["records"] for s in shards) == 200_000
    assert max(s["bytes"] for s in shards) <= 2 * min(s["bytes"] for s in shards)
    assert pa.concat_tables(table.read(s).to_arrow() for s in shards).num_rows == 200_000
    # Row groups of about 2 MiB in Arrow are ~0.9 MB on disk: above 512 KiB, and the planner says so.
    assert "shards cannot be smaller than a row group" in caplog.text


def test_the_planner_says_why_shards_are_bigger_than_asked(catalog: Catalog, caplog: pytest.LogCaptureFixture) -> None:
    pairs = _title_pairs(20_000)  # 1.4 MB in Arrow: one row group
    catalog.create_namespace("content")
    catalog.create_table("content.one_group", schema=pairs.schema)
    table = Table("content.one_group")
    staged = table.stage(pairs, shard_id=0, run_id="load")
    table.commit(staged, run_id="load")
    path = staged["files"][0]["file_path"]
    with caplog.at_level(logging.INFO, logger="airflow_provider_mlp.fastdata.planning"):
        assert len(table.shards(target_bytes=64 << 10)) == 1
    (record,) = [r for r in caplog.records if r.name == "airflow_provider_mlp.fastdata.planning"]
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert f"file {path} has 1 row group of " in message and "kB" in message
    assert "shards cannot be smaller than a row group" in message and "write.parquet.row-group-limit" in message
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="airflow_provider_mlp.fastdata.planning"):
        assert len(table.shards(target_bytes=64 << 20)) == 1  # a reachable target: nothing to say
    assert not caplog.records
