"""The exactly-once write path on the real embedded catalog, including killed and racing writers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pyiceberg.catalog import Catalog

from airflow_provider_mlp.fastdata import (
    IDEMPOTENCY_KEY_PROPERTY,
    RUN_ID_PROPERTY,
    DataFileError,
    SchemaMismatchError,
    ShardError,
    Table,
)
from tests.unit.fastdata.helpers import create_shard_table, shard_rows


@pytest.fixture
def out(catalog: Catalog) -> Table:
    return create_shard_table(catalog, "w.out")


def _rows(shard: int, n: int = 100) -> pa.Table:
    return shard_rows(shard, n)


def test_stage_and_commit_one_snapshot_exactly_once(out: Table) -> None:
    staged = [out.stage(_rows(i), shard_id=i, run_id="run-1") for i in range(4)]
    json.dumps(staged)
    assert out.refresh().current_snapshot_id is None  # nothing visible before commit
    snapshot = out.commit(staged, run_id="run-1")
    assert out.current_snapshot_id == snapshot
    assert out.snapshots()[-1]["summary"][RUN_ID_PROPERTY] == "run-1"
    assert len(out.snapshots()) == 1
    assert out.commit(staged, run_id="run-1") == snapshot  # again: a no-op
    assert len(out.refresh().snapshots()) == 1
    assert sorted(out.read().to_arrow().column("id").to_pylist()) == list(range(400))


def test_retried_stage_rewrites_its_own_files(out: Table) -> None:
    first = out.stage(_rows(0), shard_id=0, run_id="r")
    again = out.stage(_rows(0), shard_id=0, run_id="r")
    assert [f["file_path"] for f in first["files"]] == [f["file_path"] for f in again["files"]]
    other_run = out.stage(_rows(0), shard_id=0, run_id="other")
    assert {f["file_path"] for f in other_run["files"]}.isdisjoint(f["file_path"] for f in first["files"])
    out.commit([first, again], run_id="r")
    assert out.read().num_rows == 100
    # A task re-run after its run committed must not rewrite committed files.
    rerun = out.stage(_rows(5), shard_id=0, run_id="r")
    assert rerun["files"] == [] and rerun["committed_snapshot_id"] == out.current_snapshot_id
    assert out.read().num_rows == 100


def test_partitioned_stage_names_do_not_depend_on_partition_discovery_order(events: Table) -> None:
    rows = events.read().to_arrow()
    names = {
        tuple((f["file_path"], f["record_count"]) for f in events.stage(rows, shard_id=3, run_id="p")["files"])
        for _ in range(4)
    }
    reordered = rows.take(list(range(rows.num_rows - 1, -1, -1)))
    staged = events.stage(reordered, shard_id=3, run_id="p")
    assert len(names) == 1 and len(next(iter(names))) == 4
    assert sorted(f["file_path"] for f in staged["files"]) == sorted(p for p, _ in next(iter(names)))


def test_schema_mismatch_names_the_column(out: Table) -> None:
    with pytest.raises(SchemaMismatchError, match="'surprise'"):
        out.stage(_rows(0).append_column("surprise", pa.array([1] * 100)), shard_id=0, run_id="r")
    bad = pa.table({"id": pa.array(["x"] * 3), "shard": ["a"] * 3})
    with pytest.raises(SchemaMismatchError, match="'id'"):
        out.stage(bad, shard_id=0, run_id="r")


def test_commit_refuses_foreign_or_missing_files(out: Table) -> None:
    staged = out.stage(_rows(0), shard_id=0, run_id="r")
    with pytest.raises(ShardError, match="run 'r'"):
        out.commit([staged], run_id="other")
    Path(staged["files"][0]["file_path"].removeprefix("file://")).unlink()
    with pytest.raises(DataFileError, match=staged["files"][0]["file_path"]):
        out.commit([staged], run_id="r")
    assert out.refresh().current_snapshot_id is None


def test_overwrite_replaces_a_partition(events: Table) -> None:
    views = events.read(row_filter="event_type = 'view'").to_arrow()
    doubled = views.set_column(views.schema.get_field_index("amount"), "amount", pc.multiply(views["amount"], 2))
    snapshot = events.overwrite(doubled, "event_type = 'view'", run_id="fix-views")
    assert events.overwrite(doubled, "event_type = 'view'", run_id="fix-views") == snapshot
    after = events.read().to_arrow()
    assert after.num_rows == 20_000
    new_views = events.read(row_filter="event_type = 'view'").to_arrow().sort_by("event_id")
    assert new_views.column("amount").to_pylist() == doubled.sort_by("event_id").column("amount").to_pylist()
    staged = events.stage(views, shard_id="back", run_id="undo")
    events.overwrite([staged], "event_type = 'view'", run_id="undo")
    assert events.read(row_filter="event_type = 'view'").num_rows == views.num_rows


_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    import pyarrow as pa
    from airflow_provider_mlp.fastdata import Table

    run_id, first, count, die = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "die"
    table = Table("w.out")
    staged = []
    for shard in range(first, first + count):
        ids = pa.array(range(shard * 100, shard * 100 + 100), pa.int64())
        rows = pa.table({"id": ids, "shard": [str(shard)] * 100})
        staged.append(table.stage(rows, shard_id=shard, run_id=run_id))
    if die:
        os.kill(os.getpid(), signal.SIGKILL)  # killed between stage and commit
    print(table.commit(staged, run_id=run_id))
    """
)


def _writer(mlp_home: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "MLP_HOME": str(mlp_home)}
    return subprocess.Popen([sys.executable, "-c", _WRITER, *args], env=env, text=True, stdout=subprocess.PIPE)


def test_killed_between_stage_and_commit_then_rerun(out: Table, mlp_home: Path) -> None:
    killed = _writer(mlp_home, "run-k", "0", "5", "die")
    killed.communicate(timeout=120)
    assert killed.returncode == -signal.SIGKILL
    assert out.refresh().current_snapshot_id is None
    rerun = _writer(mlp_home, "run-k", "0", "5", "live")
    rerun.communicate(timeout=120)
    assert rerun.returncode == 0
    ids = out.refresh().read().to_arrow().column("id").to_pylist()
    assert sorted(ids) == list(range(500))
    again = _writer(mlp_home, "run-k", "0", "5", "live")  # the whole run retried after success
    again.communicate(timeout=120)
    assert sorted(out.refresh().read().to_arrow().column("id").to_pylist()) == list(range(500))


def test_concurrent_writers_keep_all_rows(out: Table, mlp_home: Path) -> None:
    writers = [_writer(mlp_home, f"run-{w}", str(w * 3), "3", "live") for w in range(3)]
    for writer in writers:
        writer.communicate(timeout=180)
        assert writer.returncode == 0
    table = out.refresh()
    assert sorted(table.read().to_arrow().column("id").to_pylist()) == list(range(900))
    runs = {s["summary"].get(RUN_ID_PROPERTY) for s in table.snapshots()}
    assert runs == {"run-0", "run-1", "run-2"}


def test_commit_on_a_stale_table_retries_on_the_refreshed_one(out: Table) -> None:
    from airflow_provider_mlp.fastdata.writer import commit

    stale = out.refresh().iceberg
    out.commit([out.stage(_rows(0), shard_id=0, run_id="winner")], run_id="winner")
    loads = iter([stale])

    def load() -> object:
        return next(loads, None) or out.refresh().iceberg

    staged = out.stage(_rows(1), shard_id=1, run_id="loser")
    commit(load, "w.out", [staged], run_id="loser")
    assert sorted(out.refresh().read().to_arrow().column("id").to_pylist()) == list(range(200))


def _row_groups(staged: dict[str, Any]) -> list[list[int]]:
    import pyarrow.parquet as pq

    out = []
    for entry in staged["files"]:
        metadata = pq.ParquetFile(entry["file_path"].removeprefix("file://")).metadata
        out.append([metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)])
    return out


def test_stage_sizes_row_groups_and_files(catalog: Catalog) -> None:
    from airflow_provider_mlp.fastdata.defaults import DEFAULT_ROW_GROUP_ROWS

    catalog.create_namespace("sz")
    narrow = pa.table({"id": pa.array(range(300_000), pa.int64())})  # 8 bytes a row: the row limit applies
    table = Table.create("sz.narrow", narrow.schema)
    groups = _row_groups(table.stage(narrow, shard_id=0, run_id="a"))
    assert groups == [[100_000] * 3] and DEFAULT_ROW_GROUP_ROWS < 300_000  # even groups, none above the limit
    assert _row_groups(table.stage(narrow, shard_id=0, run_id="b", row_group_rows=50_000)) == [[50_000] * 6]
    wide = pa.table({"id": pa.array(range(4_000), pa.int64()), "blob": ["x" * 2_000] * 4_000})  # 8 MB
    wide_table = Table.create("sz.wide", wide.schema)
    assert _row_groups(wide_table.stage(wide, shard_id=0, run_id="c")) == [[1_000] * 4]  # the 2 MiB limit applies
    # Iceberg's byte limit (pyiceberg's writer warns it does not implement it; stage does).
    wide_table.iceberg.transaction().set_properties(
        {"write.parquet.row-group-size-bytes": str(4 << 20)}
    ).commit_transaction()
    assert _row_groups(wide_table.refresh().stage(wide, shard_id=0, run_id="c2")) == [[2_000] * 2]
    files = table.stage(narrow, shard_id=0, run_id="d", target_file_bytes=600_000)["files"]
    assert len(files) == 4 and sum(f["record_count"] for f in files) == 300_000
    # Table properties (pyiceberg's keys) apply when a call does not say otherwise.
    props = Table.create(
        "sz.props",
        narrow.schema,
        properties={"write.parquet.row-group-limit": 30_000, "write.target-file-size-bytes": 1_200_000},
    )
    assert _row_groups(props.stage(narrow, shard_id=0, run_id="e")) == [[30_000] * 5] * 2
    assert _row_groups(
        props.stage(narrow, shard_id=0, run_id="f", row_group_rows=75_000, target_file_bytes=1 << 30)
    ) == [[75_000] * 4]
    with pytest.raises(ValueError, match="row_group_rows=0 must be a positive integer"):
        table.stage(narrow, shard_id=0, run_id="g", row_group_rows=0)
    broken = Table.create("sz.broken", narrow.schema, properties={"write.parquet.row-group-limit": "many"})
    with pytest.raises(ValueError, match="table property write.parquet.row-group-limit='many'"):
        broken.stage(narrow, shard_id=0, run_id="h")


def _on_disk(staged: dict[str, Any]) -> list[bool]:
    return [Path(f["file_path"].removeprefix("file://")).exists() for f in staged["files"]]


def test_an_idempotency_key_commits_a_day_once_across_runs(out: Table) -> None:
    first = [out.stage(_rows(i), shard_id=i, run_id="manual__1") for i in range(2)]
    snapshot = out.commit(first, idempotency_key="2026-02-01")
    summary = out.snapshots()[-1]["summary"]
    assert summary[RUN_ID_PROPERTY] == "manual__1" and summary[IDEMPOTENCY_KEY_PROPERTY] == "2026-02-01"
    # The same logical date again, under a new run id: nothing is added, and its staged files go.
    second = [out.stage(_rows(i), shard_id=i, run_id="manual__2") for i in range(2)]
    assert all(all(_on_disk(s)) for s in second)
    assert out.commit(second, idempotency_key="2026-02-01") == snapshot
    assert not any(any(_on_disk(s)) for s in second) and all(all(_on_disk(s)) for s in first)
    assert out.refresh().read().num_rows == 200 and len(out.snapshots()) == 1
    # Another day is another key; the run's own files are never committed twice, whatever the key.
    third = out.stage(_rows(7), shard_id=0, run_id="manual__3")
    assert out.commit([third], idempotency_key="2026-02-02") != snapshot
    assert out.commit([third], idempotency_key="something-else") == out.current_snapshot_id
    assert out.refresh().read().num_rows == 300 and all(_on_disk(third))


def test_commit_outcomes_say_what_happened(out: Table) -> None:
    staged = out.stage(_rows(0), shard_id=0, run_id="manual__1")
    made = out._commit([staged], run_id=None, idempotency_key="2026-02-01")
    assert made.describe("iceberg://mlp/w/out") == (
        f"Committed 1 file(s), 100 row(s), of run manual__1 to iceberg://mlp/w/out as snapshot {made.snapshot_id} "
        "(idempotency key '2026-02-01')"
    )
    again = out._commit([staged], run_id=None, idempotency_key="2026-02-01")
    assert again.already_committed and again.files == 0
    assert again.describe("T") == f"Run manual__1 was already committed to T as snapshot {made.snapshot_id}"
    rerun = out._commit(
        [out.stage(_rows(0), shard_id=0, run_id="manual__2")], run_id=None, idempotency_key="2026-02-01"
    )
    assert rerun.describe("T") == (
        f"Idempotency key '2026-02-01' was already committed to T as snapshot {made.snapshot_id} by run manual__1; "
        "run manual__2 added nothing and removed the 1 file(s) it had staged"
    )
    empty = out._commit([out.stage(_rows(0).slice(0, 0), shard_id=0, run_id="r0")], run_id=None, idempotency_key=None)
    assert empty.snapshot_id is None and empty.describe("T") == "Run r0 staged no rows for T: no snapshot made"
    with pytest.raises(ShardError, match="come from runs a, b"):
        out.commit([out.stage(_rows(1), shard_id=1, run_id="a"), out.stage(_rows(2), shard_id=2, run_id="b")])


def test_orphans_are_removed_only_when_no_snapshot_lists_them(out: Table) -> None:
    from airflow_provider_mlp.fastdata.writer import _remove_orphans

    kept = out.stage(_rows(0), shard_id=0, run_id="a")
    out.commit([kept], idempotency_key="day-1")
    out.commit([out.stage(_rows(1), shard_id=1, run_id="b")], idempotency_key="day-2")
    first = out.snapshots()[0]["snapshot_id"]
    out.iceberg.maintenance.expire_snapshots().by_id(first).commit()
    # Run a's snapshot is gone from the history, but its files are still in b's: they must stay.
    assert _remove_orphans(out.refresh().iceberg, kept["files"], "a") == 0 and all(_on_disk(kept))
    late = out.stage(_rows(2), shard_id=2, run_id="c")
    assert out.commit([late], idempotency_key="day-2") == out.current_snapshot_id
    assert not any(_on_disk(late))
    assert sorted(out.refresh().read().to_arrow().column("id").to_pylist()) == list(range(200))


def test_a_schema_mismatch_is_reported_once_in_the_error_not_on_stdout(
    out: Table, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = pa.table({"id": pa.array(["x"] * 3), "shard": ["a"] * 3})
    with pytest.raises(SchemaMismatchError) as raised:
        out.stage(bad, shard_id=0, run_id="r")
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    message = str(raised.value)
    assert message.startswith("column 'id' does not fit table 'w.out':\n")
    assert message.count("Table field") == 1 and message.count("Dataframe field") == 1
    assert "❌ │ 1: id: optional long" in message and "1: id: optional string" in message


def test_read_staged_audits_rows_before_commit_and_summary_records_the_result(out: Table) -> None:
    staged = [out.stage(_rows(i), shard_id=i, run_id="run-1") for i in range(3)]
    audited = out.read_staged(staged)
    assert out.refresh().current_snapshot_id is None  # reading staged rows publishes nothing
    assert sorted(audited.column("id").to_pylist()) == list(range(300))
    assert out.read_staged(json.dumps(staged), columns=["id"]).column_names == ["id"]
    assert out.read_staged([]).num_rows == 0
    with pytest.raises(Exception, match="no column"):
        out.read_staged(staged, columns=["nope"])
    snapshot = out.commit(
        staged, run_id="run-1", snapshot_properties={"audit.rows": audited.num_rows, "audit.ok": True}
    )
    summary = out.snapshots()[-1]["summary"]
    assert out.current_snapshot_id == snapshot
    assert summary["audit.rows"] == "300" and summary["audit.ok"] == "True"
    assert summary[RUN_ID_PROPERTY] == "run-1"


def test_snapshot_properties_cannot_replace_the_commits_own_keys(out: Table) -> None:
    staged = [out.stage(_rows(0), shard_id=0, run_id="run-1")]
    with pytest.raises(ValueError, match=IDEMPOTENCY_KEY_PROPERTY):
        out.commit(staged, run_id="run-1", snapshot_properties={IDEMPOTENCY_KEY_PROPERTY: "x"})
    with pytest.raises(TypeError, match="must be a mapping"):
        out.commit(staged, run_id="run-1", snapshot_properties=["a"])  # type: ignore[arg-type]
    assert out.refresh().current_snapshot_id is None
