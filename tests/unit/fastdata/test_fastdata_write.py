"""The exactly-once write path on the real embedded catalog, including killed and racing writers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pyiceberg.catalog import Catalog

from airflow_provider_mlp.fastdata import RUN_ID_PROPERTY, DataFileError, SchemaMismatchError, ShardError, Table
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
