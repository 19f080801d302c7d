"""The asyncio reads of ``CacheReader`` (``aget``/``aget_many``) against real memcached: the same answers,
versions and errors as the blocking reads, and the event loop is never blocked."""

from __future__ import annotations

import asyncio
import signal

import numpy as np
import pyarrow as pa
import pytest

from airflow_provider_mlp.precompute import (
    CacheReader,
    CacheServerError,
    MissingVersionError,
    TornVersionError,
    publish,
)
from airflow_provider_mlp.precompute.aio import AsyncCacheClient
from airflow_provider_mlp.precompute.keys import KeySpace
from airflow_provider_mlp.precompute.options import MemcachedOptions
from tests.integration.precompute.conftest import servers_of
from tests.support.memcached import MemcachedProcess

pytestmark = pytest.mark.integration


def _table(rows: int = 2_000) -> pa.Table:
    keys = np.arange(rows)
    return pa.table({"k": pa.array(keys), "v": pa.array(keys * 3), "name": pa.array([f"n{i}" for i in keys])})


def test_async_reads_answer_like_blocking_reads_over_two_servers(memcached_pair: list[MemcachedProcess]) -> None:
    servers = servers_of(memcached_pair)
    publish(_table(), key="k", namespace="aio", servers=servers)
    wanted = [*range(0, 2_000, 7), 5_000_000]  # one key not in the table: a miss, not an error

    async def scenario() -> None:
        with CacheReader("aio", servers) as reader:
            expected = reader.get_many(wanted)
            assert 5_000_000 not in expected and expected[7] == {"v": 21, "name": "n7"}
            # Many lookups in flight at once share each server's one connection.
            parts = await asyncio.gather(*(reader.aget_many(wanted[i::10]) for i in range(10)))
            assert {k: v for part in parts for k, v in part.items()} == expected
            assert await reader.aget(14) == {"v": 42, "name": "n14"}
            assert await reader.aget(5_000_000, "absent") == "absent"

    asyncio.run(scenario())


def test_async_reads_reassemble_chunks_and_refuse_torn_ones(memcached: MemcachedProcess) -> None:
    from pymemcache.client.base import Client

    text = "".join(chr(65 + i % 26) for i in range(20_000))
    result = publish(
        pa.table({"k": ["doc", "other"], "text": [text, "short"]}),
        key="k",
        namespace="aio-torn",
        servers=memcached.address,
        chunk_bytes=4096,
    )

    async def read(*keys: str) -> object:
        with CacheReader("aio-torn", memcached.address) as reader:
            return await reader.aget_many(keys)

    assert asyncio.run(read("doc", "other")) == {"doc": {"text": text}, "other": {"text": "short"}}
    space = KeySpace("aio-torn").version(result.tag)
    main_key, _ = space.data_key(b"doc")
    client = Client(("127.0.0.1", memcached.port))
    try:
        assert client.delete(space.chunk_key(main_key, 2), noreply=False)
    finally:
        client.close()
    with pytest.raises(TornVersionError, match="1 of its 5"):
        asyncio.run(read("doc"))


def test_a_server_restarted_empty_is_a_missing_version_and_a_dead_one_is_named(
    memcached_pair: list[MemcachedProcess],
) -> None:
    servers = servers_of(memcached_pair)
    publish(_table(), key="k", namespace="aio-restart", servers=servers)
    with CacheReader("aio-restart", servers) as reader:
        pointer_node = reader._ns.node(reader._ns.keys.pointer)
    victim = next(p for p in memcached_pair if p.address != pointer_node)

    async def scenario() -> None:
        with CacheReader("aio-restart", servers, pointer_ttl=3600) as reader:
            assert await reader.aget(1) == {"v": 3, "name": "n1"}
            victim.restart()
            with pytest.raises(MissingVersionError, match=f"missing on memcached {victim.address}"):
                await reader.aget_many(range(200))
            victim.kill()
            with pytest.raises(CacheServerError, match=victim.address):
                await reader.aget_many(range(200))

    asyncio.run(scenario())


def test_the_client_reconnects_when_its_server_comes_back(memcached: MemcachedProcess) -> None:
    publish(_table(10), key="k", namespace="aio-back", servers=memcached.address)

    async def scenario() -> None:
        with CacheReader("aio-back", memcached.address, pointer_ttl=0.0) as reader:
            assert await reader.aget(2) == {"v": 6, "name": "n2"}
            memcached.stop()
            with pytest.raises(CacheServerError, match=memcached.address):
                await reader.aget(2)
            memcached.start()
            publish(_table(10), key="k", namespace="aio-back", servers=memcached.address)
            assert await reader.aget(2) == {"v": 6, "name": "n2"}

    asyncio.run(scenario())


def test_a_silent_server_times_out_by_name(memcached: MemcachedProcess) -> None:
    options = MemcachedOptions.resolve(memcached.address, timeout=0.2)
    client = AsyncCacheClient(options)

    async def scenario() -> None:
        assert await client.get_many_on(memcached.address, ["nothing-here"]) == {}
        assert memcached.process is not None
        memcached.process.send_signal(signal.SIGSTOP)  #: connected, but no answer comes
        try:
            with pytest.raises(CacheServerError, match=rf"{memcached.address}: no answer within 0.2 s"):
                await client.get_many_on(memcached.address, ["nothing-here"])
        finally:
            memcached.process.send_signal(signal.SIGCONT)
        assert await client.get_many_on(memcached.address, ["nothing-here"]) == {}
        client.close()

    asyncio.run(scenario())
