"""Publish to real memcached servers and read back: value types, chunks, 10^5 keys, versions, bad input."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from pymemcache.client.base import Client

from airflow_provider_mlp.fastdata import Table
from airflow_provider_mlp.fastdata.catalog import default_catalog
from airflow_provider_mlp.precompute import (
    CacheInputError,
    CacheNamespace,
    CacheReader,
    DuplicateKeyError,
    MissingVersionError,
    publish,
)
from tests.integration.precompute.conftest import servers_of
from tests.support.memcached import MemcachedProcess, running_memcached

pytestmark = pytest.mark.integration


def _client(port: int) -> Client:
    return Client(("127.0.0.1", port), connect_timeout=2, timeout=5)


def _curr_items(port: int) -> int:
    client = _client(port)
    try:
        return int(client.stats()[b"curr_items"])
    finally:
        client.close()


def _rows(n: int, offset: int = 0) -> pa.Table:
    ids = np.arange(offset, offset + n)
    return pa.table(
        {
            "title_id": pa.array(ids // 3, pa.int64()),
            "country": pa.array(np.array(["US", "FR", "BR"])[ids % 3]),
            "views": pa.array(ids * 7, pa.int64()),
            "hours": pa.array(ids * 0.25),
        }
    )


def test_every_value_type_round_trips(memcached_pair: list[MemcachedProcess]) -> None:
    servers = servers_of(memcached_pair)
    table = pa.table(
        {
            "id": pa.array(range(8), pa.int32()),
            "small": pa.array([0, -1, 127, 128, -33, 2**40, None, -(2**63)], pa.int64()),
            "ratio": pa.array([0.5, -1e300, None, float("inf"), 0.0, 1.5, 2.5, 3.5]),
            "label": pa.array(["", "é€😀", None, "x" * 300, "a b", "\r\n", "z", "q"]),
            "tags": pa.array([[1, 2], [], None, [None], [3], [4] * 20, [5], [6]]),
            "words": pa.array([["a"], None, [], ["b", None], ["c"], ["d"], ["e"], ["f"]], pa.list_(pa.string())),
            "flag": pa.array([True, False, None, True, False, True, False, True]),
            "day": pa.array([datetime.date(2024, 1, i + 1) for i in range(8)]),
            "blob": pa.array([b"\x00\xff", None, b"", b"x", b"y", b"z", b"w", b"v"]),
            "attrs": pa.array([{"a": i, "b": str(i)} for i in range(8)]),
        }
    )
    result = publish(table, key="id", namespace="types", servers=servers)
    assert result.rows == 8 and result.switched
    with CacheReader("types", servers) as reader:
        got = reader.get_many(range(8))
    for row in table.to_pylist():
        key = row.pop("id")
        row["day"] = row["day"].isoformat()
        assert got[key] == row
    assert reader.version["value_types"][:2] == ["int64", "double"]


def test_chunked_values_are_split_and_reassembled(memcached: MemcachedProcess) -> None:
    big = "v" * 3_000_000  # larger than memcached's 1 MB item limit
    table = pa.table({"k": ["big", "small", "mid"], "text": [big, "s", "m" * 50_000]})
    result = publish(table, key="k", namespace="chunks", servers=memcached.address)
    assert result.chunked_values == 1
    small = publish(table, key="k", namespace="chunks2", servers=memcached.address, chunk_bytes=4096)
    assert small.chunked_values == 2
    for namespace in ("chunks", "chunks2"):
        with CacheReader(namespace, memcached.address) as reader:
            assert reader.get("big") == {"text": big}
            assert reader.get_many(["mid", "small", "nope"]) == {"mid": {"text": "m" * 50_000}, "small": {"text": "s"}}


def test_a_hundred_thousand_keys_over_two_servers(memcached_pair: list[MemcachedProcess]) -> None:
    servers = servers_of(memcached_pair)
    table = _rows(100_000)
    result = publish(table, key=["title_id", "country"], values=["views", "hours"], namespace="big", servers=servers)
    assert (result.rows, result.items) == (100_000, 100_000)
    per_server = [_curr_items(p.port) for p in memcached_pair]
    assert sum(per_server) >= 100_000 and min(per_server) > 40_000  # spread by consistent hashing
    with CacheReader("big", servers) as reader:
        keys = list(zip(table["title_id"].to_pylist(), table["country"].to_pylist(), strict=True))
        got = reader.get_many(keys)
    assert len(got) == 100_000
    assert got[(33_333, "US")] == {"views": 99_999 * 7, "hours": 99_999 * 0.25}


def test_versions_rollback_and_keep_n(memcached: MemcachedProcess) -> None:
    address = memcached.address
    results = [
        publish(
            _rows(30, offset=i * 1000), key=["title_id", "country"], namespace="perf", servers=address, keep_versions=2
        )
        for i in range(4)
    ]
    assert [r.seq for r in results] == [1, 2, 3, 4]
    assert results[2].dropped == [results[0].tag] and results[3].dropped == [results[1].tag]
    with CacheNamespace("perf", address) as ns:
        versions = ns.versions()
        assert [(v["seq"], v["current"]) for v in versions] == [(4, True), (3, False)]
        assert ns.metadata(results[0].tag) is None  # dropped versions' metadata is gone
        with CacheReader("perf", address, pointer_ttl=0) as reader:
            assert reader.get((1000, "FR")) is not None  # row 3001: only in version 4
            doc = ns.rollback()
            assert doc["current"] == results[2].tag and reader.version["seq"] == 3
            assert reader.get((1000, "FR")) is None and reader.get((667, "US")) == {
                "views": 2001 * 7,
                "hours": 2001 / 4,
            }
            with pytest.raises(CacheInputError, match="no version older than the current 3"):
                ns.rollback()
            with pytest.raises(CacheInputError, match=r"no retained version 1 \(retained: 4, 3\)"):
                ns.rollback(to=1)
            ns.rollback(to=4)
            assert reader.version["seq"] == 4


def test_duplicate_keys_fail_the_publish_and_keep_the_pointer(memcached: MemcachedProcess) -> None:
    first = publish(_rows(9), key=["title_id", "country"], namespace="dups", servers=memcached.address)
    doubled = pa.concat_tables([_rows(20_000), _rows(3, offset=5)])
    with pytest.raises(DuplicateKeyError, match=r"\(1, 'BR'\)|\(1, 'FR'\)|\(2, 'BR'\)") as caught:
        publish(doubled, key=["title_id", "country"], namespace="dups", servers=memcached.address)
    assert caught.value.count == 3 and (2, "US") in caught.value.keys
    with CacheNamespace("dups", memcached.address) as ns:
        assert ns.current()["tag"] == first.tag


def test_hostile_keys_are_stored_safely(memcached: MemcachedProcess) -> None:
    canary = _client(memcached.port)
    canary.set("canary", b"alive", noreply=False)
    keys = ["with space", "new\nline", "\r\nflush_all\r\n", "k" * 10_000, "\x01ctl", "%41", "A", "é"]
    table = pa.table({"k": keys, "v": list(range(len(keys)))})
    result = publish(table, key="k", namespace="hostile", servers=memcached.address)
    assert result.hashed_keys == 1
    binary = pa.table({"k": pa.array([b"\xff\xfe", b"\x00", b"ok", b"\x80" * 200]), "v": [1, 2, 3, 4]})
    publish(binary, key="k", namespace="binary", servers=memcached.address)
    assert canary.get("canary") == b"alive"  # no injected flush_all ran
    canary.close()
    with CacheReader("hostile", memcached.address) as reader:
        assert reader.get_many(keys) == {k: {"v": i} for i, k in enumerate(keys)}
        assert reader.get("k" * 9_999) is None and reader.get("%2541") is None
    with CacheReader("binary", memcached.address) as reader:
        assert reader.get_many([b"\xff\xfe", b"\x00", b"\x80" * 200, b"\xff"]) == {
            b"\xff\xfe": {"v": 1},
            b"\x00": {"v": 2},
            b"\x80" * 200: {"v": 4},
        }


def test_bad_input_is_refused_before_anything_is_written(memcached: MemcachedProcess) -> None:
    table = _rows(5)
    with pytest.raises(CacheInputError, match=r"Arrow table has no column 'user' \(columns: title_id, country"):
        publish(table, key="user", namespace="bad", servers=memcached.address)
    with pytest.raises(CacheInputError, match="no column 'minutes'"):
        publish(table, key="title_id", values=["minutes"], namespace="bad", servers=memcached.address)
    nulls = pa.table({"k": ["a", None, "c"], "v": [1, 2, 3]})
    with pytest.raises(CacheInputError, match=r"key column 'k' has 1 null value\(s\) \(first at row 1\)"):
        publish(nulls, key="k", namespace="bad", servers=memcached.address)
    with pytest.raises(CacheInputError, match="key column 'hours' has type double"):
        publish(table, key="hours", namespace="bad", servers=memcached.address)
    with pytest.raises(CacheInputError, match="namespace"):
        publish(table, key="title_id", namespace="has space", servers=memcached.address)
    with CacheNamespace("bad", memcached.address) as ns:
        assert ns.versions() == []
        with pytest.raises(MissingVersionError, match="no current version"), CacheReader("bad", memcached.address) as r:
            r.get("x")


def test_publishes_an_iceberg_table_and_records_its_origin(mlp_home: Path, memcached: MemcachedProcess) -> None:
    catalog = default_catalog()
    catalog.create_namespace("perf")
    catalog.create_table("perf.daily", schema=_rows(1).schema)
    table = Table("perf.daily")
    table.commit(table.stage(_rows(5_000), shard_id=0, run_id="r1"), run_id="r1")
    snapshot = table.refresh().current_snapshot_id
    result = publish(
        "perf.daily",
        key=["title_id", "country"],
        values=["views"],
        namespace="ice",
        servers=memcached.address,
        dag_id="daily",
        run_id="manual__1",
        batch_rows=1000,
    )
    assert result.rows == 5_000
    with CacheNamespace("ice", memcached.address) as ns:
        meta = ns.current()
    assert meta["source"] == {
        "kind": "iceberg",
        "table": "perf.daily",
        "catalog": "mlp",
        "snapshot_id": snapshot,
        "row_filter": None,
    }
    assert (meta["dag_id"], meta["run_id"], meta["row_count"]) == ("daily", "manual__1", 5_000)
    with CacheReader("ice", memcached.address) as reader:
        assert reader.get((10, "FR")) == {"views": 31 * 7}
    filtered = publish(
        table, key=["title_id", "country"], namespace="ice", servers=memcached.address, row_filter="views < 70"
    )
    assert filtered.rows == 10


def test_a_racing_publisher_cannot_move_the_pointer_backwards(memcached: MemcachedProcess) -> None:
    address = memcached.address
    published: list[str] = []

    def race(rows: int) -> None:
        if not published:  # while the first publish is writing, a second one runs to completion
            published.append(
                publish(_rows(10, offset=500), key=["title_id", "country"], namespace="race", servers=address).tag
            )

    slow = publish(
        _rows(3000), key=["title_id", "country"], namespace="race", servers=address, batch_rows=500, on_batch=race
    )
    assert not slow.switched and slow.current == published[0]
    with CacheNamespace("race", address) as ns:
        assert ns.current()["tag"] == published[0]
        assert [v["seq"] for v in ns.versions()] == [2, 1]  # the slow one (seq 1) is retained for rollback


def test_an_empty_table_publishes_an_empty_version(memcached: MemcachedProcess) -> None:
    result = publish(_rows(0), key=["title_id", "country"], namespace="empty", servers=memcached.address)
    assert (result.rows, result.switched) == (0, True)
    with CacheReader("empty", memcached.address) as reader:
        assert reader.get((1, "US")) is None and reader.version["row_count"] == 0


def test_memcached_with_a_small_item_limit_gets_smaller_chunks() -> None:
    with running_memcached(1, item_size="64k", args=("-o", "slab_chunk_max=32768")) as (server,):
        result = publish(
            pa.table({"k": ["a"], "t": ["x" * 200_000]}), key="k", namespace="small", servers=server.address
        )
        assert result.chunked_values == 1 and result.items >= 4
        with CacheReader("small", server.address) as reader:
            assert reader.get("a") == {"t": "x" * 200_000}
