"""Bulk routing picks the same server as pymemcache's HashClient, key by key."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from pymemcache.client.hash import HashClient
from pymemcache.client.murmur3 import murmur3_32

from airflow_provider_mlp.precompute.routing import Router, murmur3_32_many

ASCII_KEYS = st.lists(st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=120), min_size=1)


def _batch(keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
    raw = [k.encode() for k in keys]
    offsets = np.concatenate(([0], np.cumsum([len(r) for r in raw]))).astype(np.int64)
    return np.frombuffer(b"".join(raw), dtype=np.uint8), offsets


@given(ASCII_KEYS)
@settings(max_examples=50, deadline=None)
def test_murmur3_matches_pymemcache(keys: list[str]) -> None:
    data, offsets = _batch(keys)
    assert murmur3_32_many(data, offsets, b"node-").tolist() == [murmur3_32("node-" + k) for k in keys]


@given(ASCII_KEYS, st.integers(2, 5))
@settings(max_examples=30, deadline=None)
def test_router_agrees_with_the_hash_client(keys: list[str], servers: int) -> None:
    client = HashClient([("127.0.0.1", 20000 + i) for i in range(servers)])
    router = Router(client)
    assert router.vectorized
    data, offsets = _batch(keys)
    routed = router.route(data, offsets, b"mlp:ns:1.ab:k")
    assert [router.nodes[i] for i in routed] == [client.hasher.get_node("mlp:ns:1.ab:k" + k) for k in keys]


def test_an_unknown_hasher_is_asked_key_by_key() -> None:
    class FirstNode:
        def __init__(self) -> None:
            self.nodes: list[str] = []

        def add_node(self, node: str) -> None:
            self.nodes.append(node)

        def remove_node(self, node: str) -> None:
            self.nodes.remove(node)

        def get_node(self, key: str) -> str:
            return self.nodes[len(key) % len(self.nodes)]

    client = HashClient([("127.0.0.1", 1), ("127.0.0.1", 2)], hasher=FirstNode)
    router = Router(client)
    assert not router.vectorized
    data, offsets = _batch(["a", "bb", "ccc"])
    assert router.route(data, offsets).tolist() == [1, 0, 1]
