"""Which server holds a key: pymemcache ``HashClient``'s rendezvous hashing, computed for whole batches.

``HashClient`` sends key ``k`` to the node with the highest ``murmur3_32(f"{node}-{k}")``, in pure
Python (several microseconds per key and node). :class:`Router` computes the same choice for a
batch of keys with numpy, and checks itself against the client's own hasher when it is built, so
a reader that uses a plain ``HashClient`` over the same servers finds every key where the
publisher put it. A hasher it does not reproduce falls back to asking the hasher key by key.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_C1 = np.uint32(0xCC9E2D51)
_C2 = np.uint32(0x1B873593)
_PROBES = ("a", "mlp:x:1.ab:kuser-1", "mlp:namespace:12.beef:k" + "z" * 90, "", "0123", "01234567")


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def murmur3_32_many(data: np.ndarray, offsets: np.ndarray, prefix: bytes = b"", seed: int = 0) -> np.ndarray:
    """``murmur3_32(prefix + row)`` for each row of a ``(data, offsets)`` batch (as pymemcache computes it)."""
    n = len(offsets) - 1
    row_lengths = np.diff(offsets)
    lengths = row_lengths + len(prefix)
    width = ((int(lengths.max()) if n else 0) // 4 + 2) * 4
    padded = np.zeros((n, width), dtype=np.uint8)
    if prefix:
        padded[:, : len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
    total = int(row_lengths.sum())
    if total:
        flat_start = np.arange(n, dtype=np.int64) * width + len(prefix)
        index = np.repeat(flat_start - (offsets[:-1] - offsets[0]), row_lengths) + np.arange(total, dtype=np.int64)
        padded.reshape(-1)[index] = data[int(offsets[0]) : int(offsets[-1])]
    words = padded.view("<u4").astype(np.uint32)
    h = np.full(n, seed, dtype=np.uint32)
    blocks = lengths // 4
    for b in range(int(blocks.max()) if n else 0):
        k = words[:, b] * _C1
        k = _rotl(k, 15) * _C2
        mixed = _rotl(h ^ k, 13) * np.uint32(5) + np.uint32(0xE6546B64)
        h = np.where(b < blocks, mixed, h)
    tail = words[np.arange(n), blocks]
    k = _rotl(tail * _C1, 15) * _C2
    h = np.where((lengths & 3) > 0, h ^ k, h)
    h ^= lengths.astype(np.uint32)
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return h


class Router:
    """Routes keys to the nodes (``"host:port"``) of a pymemcache ``HashClient``, in bulk."""

    def __init__(self, hash_client: Any) -> None:
        self.hasher = hash_client.hasher
        self.nodes: list[str] = list(getattr(self.hasher, "nodes", []))
        self.seed = int(getattr(self.hasher, "seed", 0) or 0)
        self.vectorized = bool(self.nodes) and all(self._check(probe) for probe in _PROBES)

    def _check(self, key: str) -> bool:
        raw = key.encode("ascii")
        offsets = np.array([0, len(raw)], dtype=np.int64)
        data = np.frombuffer(raw, dtype=np.uint8)
        return self.nodes[int(self._route(data, offsets)[0])] == self.hasher.get_node(key)

    def node(self, key: str) -> str:
        """The node of one key."""
        return str(self.hasher.get_node(key))

    def route(self, data: np.ndarray, offsets: np.ndarray, prefix: bytes = b"") -> np.ndarray:
        """Index into :attr:`nodes` of each row's key ``prefix + row``."""
        n = len(offsets) - 1
        if len(self.nodes) == 1:
            return np.zeros(n, dtype=np.int64)
        if self.vectorized:
            return self._route(data, offsets, prefix)
        raw = data.tobytes()
        start = int(offsets[0])
        index = {node: i for i, node in enumerate(self.nodes)}
        text = prefix.decode("ascii")
        return np.array(
            [
                index[self.node(text + raw[offsets[i] - start : offsets[i + 1] - start].decode("ascii"))]
                for i in range(n)
            ],
            dtype=np.int64,
        )

    def _route(self, data: np.ndarray, offsets: np.ndarray, prefix: bytes = b"") -> np.ndarray:
        n = len(offsets) - 1
        best = np.zeros(n, dtype=np.int64)
        best_score = np.full(n, -1, dtype=np.int64)
        for i, node in enumerate(self.nodes):
            score = murmur3_32_many(data, offsets, f"{node}-".encode() + prefix, self.seed).astype(np.int64)
            better = score > best_score
            # pymemcache breaks ties by the larger node name.
            tie = (score == best_score) & np.array([node > self.nodes[j] for j in range(len(self.nodes))])[best]
            take = better | tie
            best = np.where(take, i, best)
            best_score = np.where(take, score, best_score)
        return best
