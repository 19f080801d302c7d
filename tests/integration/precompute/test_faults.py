"""Faults during publishes and reads, against real memcached processes: readers never see half a version."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from airflow_provider_mlp.precompute import (
    CacheError,
    CacheNamespace,
    CacheReader,
    MissingVersionError,
    PublishServerError,
    TornVersionError,
    publish,
)
from airflow_provider_mlp.precompute.keys import KeySpace
from tests.integration.precompute.conftest import servers_of
from tests.support.memcached import MemcachedProcess

pytestmark = pytest.mark.integration

ROWS = 60_000

PUBLISHER = textwrap.dedent(
    """
    import os, pathlib, sys, time
    import numpy as np, pyarrow as pa
    from airflow_provider_mlp.precompute import publish

    servers, flag = sys.argv[1], pathlib.Path(sys.argv[2])
    keys = np.arange({rows})
    table = pa.table({{"k": pa.array(keys), "v": pa.array(keys + 1_000_000)}})

    def stall(rows):
        if rows >= 20_000:  # part of the version is on the servers: stop here until killed
            # Renamed into place: the test waits for the flag to exist and reads it, so it must
            # never see the file created but not yet written.
            partial = flag.with_suffix(".partial")
            partial.write_text(str(rows))
            os.replace(partial, flag)
            time.sleep(120)

    publish(table, key="k", namespace="faults", servers=servers, batch_rows=5_000, on_batch=stall)
    """
).format(rows=ROWS)


def _table(offset: int = 0) -> pa.Table:
    keys = np.arange(ROWS)
    return pa.table({"k": pa.array(keys), "v": pa.array(keys + offset)})


def _wait_for(path: Path, process: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"publisher exited early: {process.stderr.read().decode() if process.stderr else ''}")
        if time.monotonic() > deadline:
            raise AssertionError("publisher never reached the middle of its publish")
        time.sleep(0.05)


def test_publisher_killed_mid_publish_leaves_readers_on_the_previous_version(
    memcached_pair: list[MemcachedProcess], tmp_path: Path
) -> None:
    servers = servers_of(memcached_pair)
    first = publish(_table(), key="k", namespace="faults", servers=servers)
    flag = tmp_path / "halfway"
    script = tmp_path / "publisher.py"
    script.write_text(PUBLISHER)
    process = subprocess.Popen(
        [sys.executable, str(script), servers, str(flag)],
        cwd=Path(__file__).resolve().parents[3],
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for(flag, process)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()
    assert int(flag.read_text()) >= 20_000
    with CacheReader("faults", servers, pointer_ttl=0) as reader:
        assert reader.version["tag"] == first.tag
        got = reader.get_many(range(0, ROWS, 7))
        assert got == {k: {"v": k} for k in range(0, ROWS, 7)}  # every value from the previous version
        second = publish(_table(offset=5), key="k", namespace="faults", servers=servers)
        assert second.switched and second.seq == 3  # seq 2 was the killed publish
        assert reader.get_many([0, ROWS - 1]) == {0: {"v": 5}, ROWS - 1: {"v": ROWS - 1 + 5}}


def test_a_server_killed_mid_publish_fails_it_by_name_and_the_pointer_stays(
    memcached_pair: list[MemcachedProcess],
) -> None:
    servers = servers_of(memcached_pair)
    first = publish(_table(), key="k", namespace="halfdead", servers=servers)
    with CacheNamespace("halfdead", servers) as ns:
        pointer_node = ns.node(ns.keys.pointer)
    victim = next(p for p in memcached_pair if p.address != pointer_node)

    def kill_one(rows: int) -> None:
        if rows == 5_000:
            victim.kill()

    with pytest.raises(PublishServerError, match=victim.address) as caught:
        publish(_table(offset=9), key="k", namespace="halfdead", servers=servers, batch_rows=5_000, on_batch=kill_one)
    assert caught.value.server == victim.address
    with CacheNamespace("halfdead", servers) as ns:
        doc, _ = ns.pointer()
    assert doc is not None and doc["current"] == first.tag and len(doc["versions"]) == 1
    with CacheReader("halfdead", servers) as reader, pytest.raises(CacheError, match=victim.address):
        reader.get_many(range(100))  # the dead server's keys cannot be answered, and it is named


def test_a_server_restarted_empty_is_reported_as_a_missing_version(memcached_pair: list[MemcachedProcess]) -> None:
    servers = servers_of(memcached_pair)
    publish(_table(), key="k", namespace="restart", servers=servers)
    with CacheNamespace("restart", servers) as ns:
        pointer_node = ns.node(ns.keys.pointer)
    victim = next(p for p in memcached_pair if p.address != pointer_node)
    with CacheReader("restart", servers, pointer_ttl=3600) as cached, CacheReader("restart", servers) as fresh:
        assert cached.get(1) == {"v": 1}
        victim.restart()
        # A reader holding the version (long pointer TTL) and a new one both refuse to answer.
        for reader in (cached, fresh):
            with pytest.raises(MissingVersionError, match=f"missing on memcached {victim.address}"):
                reader.get_many(range(200))
    other = next(p for p in memcached_pair if p is not victim)
    other.restart()  # now the pointer's server is empty too
    with CacheReader("restart", servers) as reader, pytest.raises(MissingVersionError, match="no current version"):
        reader.get(1)


def test_a_torn_chunked_value_raises_its_own_error(memcached: MemcachedProcess) -> None:
    from pymemcache.client.base import Client

    result = publish(
        pa.table({"k": ["doc"], "text": ["x" * 20_000]}),
        key="k",
        namespace="torn",
        servers=memcached.address,
        chunk_bytes=4096,
    )
    space = KeySpace("torn").version(result.tag)
    main_key, _ = space.data_key(b"doc")
    client = Client(("127.0.0.1", memcached.port))
    try:
        assert client.delete(space.chunk_key(main_key, 2), noreply=False)
    finally:
        client.close()
    with CacheReader("torn", memcached.address) as reader, pytest.raises(TornVersionError, match="1 of its 5 chunks"):
        reader.get("doc")


def test_readers_keep_their_version_for_the_pointer_ttl(memcached: MemcachedProcess) -> None:
    publish(_table().slice(0, 10), key="k", namespace="ttl", servers=memcached.address)
    with CacheReader("ttl", memcached.address, pointer_ttl=3600) as reader:
        assert reader.get(3) == {"v": 3}
        publish(_table(offset=100).slice(0, 10), key="k", namespace="ttl", servers=memcached.address)
        assert reader.get(3) == {"v": 3}  # still the version it resolved, whole
        reader.refresh()
        assert reader.get(3) == {"v": 103}
