"""Regressions found in review: shard ids, overwrite snapshots, empty overwrites, templated inputs, catalogs."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pyarrow as pa
import pytest
from airflow.exceptions import AirflowNotFoundException
from pyiceberg.catalog import Catalog

from airflow_provider_mlp.fastdata import ShardError, Table
from airflow_provider_mlp.operators.fastdata import IcebergCommitOperator, stage_to_table
from tests.unit.fastdata.helpers import create_shard_table, shard_rows


@pytest.fixture
def out(catalog: Catalog) -> Table:
    return create_shard_table(catalog, "r.out")


def _rows(shard: int, n: int = 10) -> pa.Table:
    return shard_rows(shard, n)


def test_plain_dict_shards_never_share_files(out: Table) -> None:
    staged = [stage_to_table("r.out", _rows(i), shard={"part": i}, run_id="run") for i in range(3)]
    paths = [f["file_path"] for record in staged for f in record["files"]]
    assert len(set(paths)) == len(paths) == 3
    out.commit(staged, run_id="run")
    assert sorted(out.read().to_arrow().column("id").to_pylist()) == list(range(30))


def test_commit_refuses_two_shards_naming_one_file(out: Table) -> None:
    first = out.stage(_rows(0), shard_id="a", run_id="run")
    clash = copy.deepcopy(first)
    clash["shard_id"] = "b"
    with pytest.raises(ShardError, match=first["files"][0]["file_path"]):
        out.commit([first, clash], run_id="run")
    assert out.refresh().current_snapshot_id is None


def test_overwrite_returns_its_final_snapshot(events: Table) -> None:
    views = events.read(row_filter="event_type = 'view'").to_arrow()
    snapshot = events.overwrite(views, "event_type = 'view'", run_id="redo-views")
    assert len(events.refresh().snapshots()) == 3  # create, then the overwrite's delete and append
    assert snapshot == events.current_snapshot_id
    assert events.overwrite(views, "event_type = 'view'", run_id="redo-views") == snapshot


def test_overwrite_matching_nothing_with_nothing_is_a_no_op(out: Table) -> None:
    out.commit([out.stage(_rows(0), shard_id=0, run_id="base")], run_id="base")
    before = out.refresh().current_snapshot_id
    empty = out.stage(_rows(0).slice(0, 0), shard_id=0, run_id="none")
    assert out.overwrite([empty], "shard = 'absent'", run_id="none") is None
    assert out.refresh().current_snapshot_id == before and out.read().num_rows == 10


def test_commit_operator_takes_staged_json_text(out: Table) -> None:
    staged = [out.stage(_rows(i), shard_id=i, run_id="templated") for i in range(2)]
    commit = IcebergCommitOperator(task_id="commit", table="r.out", staged=json.dumps(staged))
    result = commit.execute(context={"run_id": "templated"})
    assert result["snapshot_id"] == out.refresh().current_snapshot_id and out.read().num_rows == 20
    broken = IcebergCommitOperator(task_id="broken", table="r.out", staged="[{not json")
    with pytest.raises(ShardError, match=r"table 'r\.out' is not valid JSON"):
        broken.execute(context={"run_id": "templated"})


def test_overwrite_takes_every_staged_form_commit_takes(out: Table) -> None:
    out.commit([out.stage(_rows(0), shard_id=0, run_id="base")], run_id="base")
    staged = out.stage(_rows(1), shard_id=1, run_id="redo")
    out.overwrite(json.dumps([[staged]]), "shard = '0'", run_id="redo")
    assert sorted(out.read().to_arrow().column("id").to_pylist()) == list(range(10, 20))
    with pytest.raises(ShardError, match="r.out"):
        out.overwrite("{not json", "shard = '1'", run_id="bad")


def test_default_connection_id_names_the_catalog_it_writes_to(
    out: Table, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    staged = out.stage(_rows(0), shard_id=0, run_id="conn")
    commit = IcebergCommitOperator(task_id="commit", table="r.out", staged=[staged], iceberg_conn_id="iceberg_default")
    # No such connection: an error, not a write to the embedded catalog under another catalog's asset URI.
    with pytest.raises(AirflowNotFoundException, match="iceberg_default"):
        commit.execute(context={"run_id": "conn"})
    assert out.refresh().current_snapshot_id is None
    extra = {"type": "sql", "uri": f"sqlite:///{tmp_path / 'default.db'}", "warehouse": (tmp_path / "wh").as_uri()}
    (tmp_path / "wh").mkdir()
    monkeypatch.setenv("AIRFLOW_CONN_ICEBERG_DEFAULT", json.dumps({"conn_type": "iceberg", "extra": extra}))
    other = Table("r.out", conn_id="iceberg_default")
    other.catalog.create_namespace("r")
    other.catalog.create_table("r.out", schema=out.schema)
    staged = other.stage(_rows(1), shard_id=1, run_id="conn")
    result = IcebergCommitOperator(
        task_id="commit2", table="r.out", staged=[staged], iceberg_conn_id="iceberg_default"
    ).execute(context={"run_id": "conn"})
    assert result["uri"] == commit.outlets[0].uri == "iceberg://iceberg_default/r/out"
    assert other.refresh().read().num_rows == 10 and out.refresh().current_snapshot_id is None


def test_commit_operator_does_not_validate_at_parse_time(out: Table) -> None:
    commit = IcebergCommitOperator(task_id="commit", table="r.", staged=[])
    assert commit.outlets == []
    with pytest.raises(ValueError, match=r"'r\.'"):
        commit.execute(context={"run_id": "bad-name"})
