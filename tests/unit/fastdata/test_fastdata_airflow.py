"""Airflow side: the hook's embedded fallback and connections, the shard/commit operators, asset URIs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pytest
from pyiceberg.catalog import Catalog

from airflow_provider_mlp.assets import create_asset, sanitize_uri, table_asset_uri
from airflow_provider_mlp.errors import ConfigurationError
from airflow_provider_mlp.fastdata import Table
from airflow_provider_mlp.hooks.iceberg import MlpIcebergHook
from airflow_provider_mlp.operators.fastdata import (
    IcebergCommitOperator,
    IcebergShardsOperator,
    iceberg_table_asset,
    stage_to_table,
)


def test_hook_falls_back_to_the_embedded_catalog(events: Table) -> None:
    for hook in (MlpIcebergHook(iceberg_conn_id=None), MlpIcebergHook()):
        assert hook.uses_embedded_catalog
        assert hook.catalog_name == "mlp"
        assert hook.get_table("demo.events").read().num_rows == 20_000
        assert hook.list_tables("demo") == ["demo.events"]


def test_named_connection_selects_its_catalog(events: Table, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    extra = {"type": "sql", "uri": f"sqlite:///{tmp_path / 'other.db'}", "warehouse": (tmp_path / "wh").as_uri()}
    (tmp_path / "wh").mkdir()
    monkeypatch.setenv("AIRFLOW_CONN_OTHER_ICEBERG", json.dumps({"conn_type": "iceberg", "extra": extra}))
    hook = MlpIcebergHook(iceberg_conn_id="other_iceberg")
    assert not hook.uses_embedded_catalog
    assert hook.catalog_name == "other_iceberg"
    hook.catalog.create_namespace("ns")
    hook.catalog.create_table("ns.t", schema=events.schema)
    table = Table("ns.t", conn_id="other_iceberg")
    assert table.catalog_name == "other_iceberg"
    staged = table.stage(events.read(row_filter="event_id < 10").to_arrow(), shard_id=0, run_id="r")
    table.commit(staged, run_id="r")
    assert table.read().num_rows == 10
    assert Table("demo.events").read().num_rows == 20_000  # the embedded catalog is untouched


class _Events(dict[Any, Any]):
    def __missing__(self, key: Any) -> Any:
        event = type("Event", (), {"extra": {}})()
        self[key] = event
        return event


def test_operators_fan_out_and_commit_once(events: Table, catalog: Catalog) -> None:
    catalog.create_table("demo.copy", schema=events.schema, partition_spec=events.spec)
    plan = IcebergShardsOperator(task_id="plan", table="demo.events", target_bytes=1, columns=None)
    shards = plan.execute(context={})
    assert len(shards) == 4 and json.loads(json.dumps(shards)) == shards
    staged = [
        stage_to_table("demo.copy", Table("demo.events").read(s).to_arrow(), shard=s, run_id="manual__1")
        for s in shards
    ]
    commit = IcebergCommitOperator(task_id="commit", table="demo.copy", staged=staged)
    asset = iceberg_table_asset("demo.copy")
    assert commit.outlets == [asset]
    outlet_events = _Events()
    result = commit.execute(context={"run_id": "manual__1", "outlet_events": outlet_events})
    assert result["uri"] == "iceberg://mlp/demo/copy"
    # An iceberg.snapshot event (the events protocol), with the commit's idempotency key.
    assert outlet_events[asset].extra == {
        "mlp.event": "iceberg.snapshot",
        "mlp.schema": 1,
        "mlp.producer": "adhoc_airflow/commit",
        "table": "demo.copy",
        "snapshot_id": result["snapshot_id"],
        "run_id": "manual__1",
        "idempotency_key": "manual__1",
    }
    again = commit.execute(context={"run_id": "manual__1"})
    assert again["snapshot_id"] == result["snapshot_id"]
    copy = Table("demo.copy")
    assert copy.read().num_rows == 20_000 and len(copy.snapshots()) == 1
    replace = IcebergCommitOperator(
        task_id="replace",
        table="demo.copy",
        staged=[stage_to_table("demo.copy", pa.Table.from_pylist([], schema=copy.arrow_schema), shard=0, run_id="r2")],
        overwrite_filter="event_type = 'view'",
    )
    replace.execute(context={"run_id": "r2"})
    assert copy.read(row_filter="event_type = 'view'").num_rows == 0


def test_asset_uris() -> None:
    assert table_asset_uri("mlp", "content.raw.titles") == "iceberg://mlp/content.raw/titles"
    for uri in ("iceberg://mlp/content/raw/titles/", "iceberg://mlp/content.raw/titles"):
        assert sanitize_uri(urlsplit(uri)).geturl() == "iceberg://mlp/content.raw/titles"
    for bad in ("iceberg:///ns/t", "iceberg://mlp/t", "iceberg://mlp/ns/t?x=1"):
        with pytest.raises(ValueError, match="iceberg"):
            sanitize_uri(urlsplit(bad))
    assert create_asset(catalog="mlp", table="demo.events").uri == "iceberg://mlp/demo/events"


class _LazyResults(Sequence[Any]):
    """Like the task SDK's LazyXComSequence: every item is a request, and one past the end fails."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items
        self.requests: list[Any] = []

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: Any) -> Any:
        self.requests.append(key)
        if isinstance(key, slice):
            return self.items[key]
        if key >= len(self.items):
            raise IndexError(key)  # the SDK has logged "XCom not found ... offset=<key>" by now
        return self.items[key]


def test_commit_asks_for_no_result_that_is_not_there(events: Table, catalog: Catalog) -> None:
    catalog.create_table("demo.copy", schema=events.schema, partition_spec=events.spec)
    shards = events.shards(target_bytes=1)
    results = _LazyResults(
        [stage_to_table("demo.copy", events.read(s).to_arrow(), shard=s, run_id="manual__1") for s in shards]
    )
    commit = IcebergCommitOperator(task_id="commit", table="demo.copy", staged=results)
    commit.execute(context={"run_id": "manual__1"})
    assert Table("demo.copy").read().num_rows == 20_000
    assert all(isinstance(r, slice) or r < len(results) for r in results.requests), results.requests
    assert len(results.requests) == 1  # one request for all of them


def test_commit_operator_idempotency_key_and_its_run_id_alias(events: Table, catalog: Catalog) -> None:
    catalog.create_table("demo.copy", schema=events.schema, partition_spec=events.spec)
    rows = events.read(row_filter="event_id < 100").to_arrow()

    def run(dag_run_id: str, **kwargs: Any) -> dict[str, Any]:
        staged = [stage_to_table("demo.copy", rows, shard=0, run_id=dag_run_id)]
        return IcebergCommitOperator(task_id="commit", table="demo.copy", staged=staged, **kwargs).execute(
            context={"run_id": dag_run_id}
        )

    first = run("manual__1", idempotency_key="2026-02-01")
    again = run("manual__2", idempotency_key="2026-02-01")
    assert again["already_committed"] and again["snapshot_id"] == first["snapshot_id"]
    assert again["run_id"] == "manual__2" and again["idempotency_key"] == "2026-02-01"
    assert Table("demo.copy").read().num_rows == 100
    alias = run("manual__3", run_id="2026-02-01")  # the older argument name means the same
    assert alias["already_committed"] and alias["snapshot_id"] == first["snapshot_id"]
    assert not run("manual__4", run_id="2026-02-02")["already_committed"]
    with pytest.raises(ConfigurationError, match="idempotency_key='a' and run_id='b' differ"):
        run("manual__5", idempotency_key="a", run_id="b")
    assert Table("demo.copy").read().num_rows == 200


def test_commit_operator_records_snapshot_properties(events: Table, catalog: Catalog) -> None:
    catalog.create_table("demo.copy", schema=events.schema, partition_spec=events.spec)
    rows = events.read(row_filter="event_id < 100").to_arrow()
    staged = [stage_to_table("demo.copy", rows, shard=0, run_id="manual__1")]
    commit = IcebergCommitOperator(
        task_id="commit", table="demo.copy", staged=staged, snapshot_properties='{"audit.precision": 0.5}'
    )
    assert "snapshot_properties" in commit.template_fields
    commit.execute(context={"run_id": "manual__1"})
    assert Table("demo.copy").snapshots()[-1]["summary"]["audit.precision"] == "0.5"
    bad = IcebergCommitOperator(task_id="commit", table="demo.copy", staged=staged, snapshot_properties="[1]")
    with pytest.raises(ConfigurationError, match="snapshot_properties must be a mapping"):
        bad.execute(context={"run_id": "manual__1"})
