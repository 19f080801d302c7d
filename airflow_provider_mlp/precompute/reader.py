"""``CacheReader``: serve a namespace's current version (runtime side, no Airflow).

::

    reader = CacheReader("content-perf")                    # servers from MLP_MEMCACHED_SERVERS
    reader.get((42, "US"))                                  # {"views": 1200, "hours": 310.5} or None
    reader.get_many([(42, "US"), (43, "FR")])               # {key: row} for the keys found
    await reader.aget_many([(42, "US")])                    # the same inside an event loop, never blocking it

The pointer is resolved at most once per ``pointer_ttl`` seconds (and each version's metadata
once), so a lookup is one memcached round trip per server involved. Every key of one call is read
from the same version. A version that is not wholly there raises :class:`CacheVersionError` (its
subclasses :class:`MissingVersionError`: no current version, its metadata gone, or a server that
lost its part, e.g. restarted empty; :class:`TornVersionError`: a chunked value with a chunk
missing or corrupt), so serving can fall back instead of answering from half a version.
A key that is simply not in the table is a miss (``None`` / absent from ``get_many``).
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Generator, Iterable
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_mlp.precompute.errors import MissingVersionError, TornVersionError
from airflow_provider_mlp.precompute.keys import FLAG_CHUNKED, FLAG_KEYED, KeySpace, canonical_key
from airflow_provider_mlp.precompute.namespace import CacheNamespace, _load_json
from airflow_provider_mlp.precompute.options import MemcachedOptions

_VECTOR_ROUTING_MIN_KEYS = 64

Found = dict[str, tuple[bytes, int]]
# A read as a generator: it yields ``{node: [memcached keys]}`` and is sent ``{node: {key: (value, flags)}}``,
# so one implementation of versions, markers, chunks and decoding serves blocking and asyncio callers.
Fetch = Generator[dict[str, list[str]], dict[str, Found], Found]
Resolve = Generator[dict[str, list[str]], dict[str, Found], "_Version"]
Reads = Generator[dict[str, list[str]], dict[str, Found], dict[Any, dict[str, Any]]]


@dataclass
class _Version:
    tag: str
    meta: dict[str, Any]
    keyspace: KeySpace
    resolved_at: float
    markers: dict[str, str] = field(default_factory=dict)


class CacheReader:
    """Reads the current version of a namespace published by :func:`~airflow_provider_mlp.precompute.publish`.

    :param namespace: the namespace to serve.
    :param servers: ``"host:port,..."`` (default ``settings().memcached_servers``); the same servers,
        in any order, as the publisher's.
    :param options: full :class:`MemcachedOptions` (timeouts, pool size, TLS); overrides ``servers``.
    :param pointer_ttl: seconds a resolved pointer is reused before asking the servers again.
    """

    def __init__(
        self,
        namespace: str,
        servers: str | Iterable[str] | None = None,
        *,
        options: MemcachedOptions | None = None,
        pointer_ttl: float = 1.0,
    ) -> None:
        self.namespace = namespace
        self.pointer_ttl = pointer_ttl
        self._ns = CacheNamespace(namespace, servers, options=options, pooled=True)
        self._lock = threading.Lock()
        self._version: _Version | None = None
        self._metadata: dict[str, dict[str, Any]] = {}
        self._router: Any = None
        self._only_node: str | None = None
        self._aclient: Any = None
        self._resolving: Any = None

    def close(self) -> None:
        self._ns.close()
        if self._aclient is not None:
            self._aclient.close()

    def __enter__(self) -> CacheReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the version ------------------------------------------------------------------------------

    @property
    def version(self) -> dict[str, Any]:
        """The metadata of the version being served (resolving the pointer if its TTL ran out)."""
        return self._current().meta

    def refresh(self) -> dict[str, Any]:
        """Resolve the pointer now."""
        with self._lock:
            self._version = None
        return self.version

    def _current(self) -> _Version:
        now = time.monotonic()
        version = self._version
        if version is not None and now - version.resolved_at < self.pointer_ttl:
            return version
        with self._lock:
            version = self._version
            if version is not None and now - version.resolved_at < self.pointer_ttl:
                return version
            self._version = self._run(self._resolve())
            return self._version

    def _resolve(self) -> Resolve:
        """The current version, as a read (see :data:`Reads`): pointer, metadata (once per version), markers."""
        ns = self._ns
        pointer_key = ns.keys.pointer
        pointer_node = ns.node(pointer_key)
        raw = (yield {pointer_node: [pointer_key]})[pointer_node].get(pointer_key)
        doc = None if raw is None else _load_json(raw[0], f"pointer of namespace {self.namespace!r}")
        if doc is None or not doc.get("current"):
            raise MissingVersionError(
                f"namespace {self.namespace!r} has no current version on memcached "
                f"{', '.join(ns.options.server_names)} (never published, or the server holding its "
                f"pointer ({pointer_node}) restarted)"
            )
        tag = str(doc["current"])
        meta = self._metadata.get(tag)
        if meta is None:
            meta_key = ns.keys.meta(tag)
            meta_node = ns.node(meta_key)
            raw = (yield {meta_node: [meta_key]})[meta_node].get(meta_key)
            if raw is None:
                raise MissingVersionError(
                    f"version {tag} of namespace {self.namespace!r} is current but its metadata is missing on "
                    f"memcached {meta_node}"
                )
            meta = _load_json(raw[0], f"metadata of version {tag} of namespace {self.namespace!r}")
        self._metadata = {tag: meta}
        version = _Version(tag, meta, ns.keys.version(tag), time.monotonic(), dict(meta.get("markers", {})))
        if version.markers:
            request: dict[str, list[str]] = {}
            for key in version.markers.values():
                request.setdefault(ns.node(key), []).append(key)
            answers = yield request
            found = {k: v for got in answers.values() for k, v in got.items()}
            self._missing_markers(version, found, list(version.markers))
        return version

    def _missing_markers(self, version: _Version, found: dict[str, Any], servers: Iterable[str]) -> None:
        for server in servers:
            key = version.markers.get(server)
            if key is not None and key not in found:
                raise MissingVersionError(
                    f"version {version.tag} of namespace {self.namespace!r} is missing on memcached {server} "
                    "(the server restarted or was flushed); its keys cannot be answered"
                )

    # -- lookups ----------------------------------------------------------------------------------

    def get(self, key: Any, default: Any = None) -> Any:
        """The value columns of ``key`` as a dict, or ``default`` when the key is not in the version."""
        found = self.get_many([key])
        return found.get(_hashable(key), default)

    def get_many(self, keys: Iterable[Any]) -> dict[Any, dict[str, Any]]:
        """``{key: {column: value}}`` for the keys found, all read from one version."""
        wanted = [_hashable(k) for k in keys]
        if not wanted:
            return {}
        for attempt in range(2):
            version = self._current()
            try:
                return self._run(self._read(version, wanted))
            except MissingVersionError:
                # The pointer may have moved on (and an old version been dropped) within our TTL.
                if attempt or not self._moved_on(version, self._current):
                    raise
        raise AssertionError("unreachable")

    # -- the same, for asyncio servers (the event loop is never blocked) --------------------------

    async def aget(self, key: Any, default: Any = None) -> Any:
        """:meth:`get` without blocking the event loop."""
        found = await self.aget_many([key])
        return found.get(_hashable(key), default)

    async def aget_many(self, keys: Iterable[Any]) -> dict[Any, dict[str, Any]]:
        """:meth:`get_many` without blocking the event loop: the same reads, versions and errors, sent
        through pipelined asyncio connections; the pointer is resolved off the loop when its TTL runs out."""
        rows, _ = await self.aget_many_with_version(keys)
        return rows

    async def aget_many_with_version(self, keys: Iterable[Any]) -> tuple[dict[Any, dict[str, Any]], dict[str, Any]]:
        """:meth:`aget_many` and the metadata of the version the rows were read from (a second lookup of
        the version could name a newer one, switched to in between)."""
        wanted = [_hashable(k) for k in keys]
        for attempt in range(2):
            version = await self._acurrent()
            if not wanted:
                return {}, version.meta
            try:
                return await self._arun(self._read(version, wanted)), version.meta
            except MissingVersionError:
                if attempt:
                    raise
                with self._lock:
                    if self._version is version:
                        self._version = None
                if (await self._acurrent()).tag == version.tag:
                    raise
        raise AssertionError("unreachable")

    async def aversion(self) -> dict[str, Any]:
        """:attr:`version` without blocking the event loop."""
        return (await self._acurrent()).meta

    async def _acurrent(self) -> _Version:
        version = self._version
        if version is not None and time.monotonic() - version.resolved_at < self.pointer_ttl:
            return version
        import asyncio

        # One resolution in flight at a time (through the asyncio client too); every request that
        # finds the TTL run out waits for it.
        if self._resolving is None or self._resolving.done():
            self._resolving = asyncio.ensure_future(self._aresolve())
        return await asyncio.shield(self._resolving)

    async def _aresolve(self) -> _Version:
        version: _Version = await self._arun(self._resolve())
        with self._lock:
            self._version = version
        return version

    def _moved_on(self, version: _Version, current: Any) -> bool:
        with self._lock:
            if self._version is version:
                self._version = None
        return bool(current().tag != version.tag)

    def _run(self, steps: Generator[dict[str, list[str]], dict[str, Found], Any]) -> Any:
        """Drive a read with blocking pymemcache calls."""
        try:
            request = next(steps)
            while True:
                request = steps.send({node: self._ns.get_many_on(node, keys) for node, keys in request.items()})
        except StopIteration as done:
            return done.value

    async def _arun(self, steps: Generator[dict[str, list[str]], dict[str, Found], Any]) -> Any:
        """Drive a read with the asyncio client."""
        if self._aclient is None:
            from airflow_provider_mlp.precompute.aio import AsyncCacheClient

            self._aclient = AsyncCacheClient(self._ns.options)
        try:
            request = next(steps)
            while True:
                request = steps.send(await self._aclient.get_by_node(request))
        except StopIteration as done:
            return done.value

    # -- what is read, without doing the I/O: each ``yield`` asks for {node: keys} -> {node: found} --

    def _read(self, version: _Version, keys: list[Any]) -> Reads:
        from airflow_provider_mlp.precompute.values import decode_row

        meta = version.meta
        columns = meta["key_columns"]
        kinds = meta["key_kinds"]
        value_columns = meta["value_columns"]
        by_key: dict[str, Any] = {}
        canonical_of: dict[str, bytes] = {}
        for key in keys:
            canonical = canonical_key(key, kinds, columns)
            memcached_key, hashed = version.keyspace.data_key(canonical)
            by_key[memcached_key] = key
            if hashed:
                canonical_of[memcached_key] = canonical
        found = yield from self._get_by_node(version, self._nodes(list(by_key)))
        chunked = {k: v for k, v in found.items() if v[1] & FLAG_CHUNKED}
        if chunked:
            found.update((yield from self._reassemble(version, chunked)))
        out: dict[Any, dict[str, Any]] = {}
        for memcached_key, (raw, flags) in found.items():
            if flags & FLAG_KEYED:
                own = _strip_key(raw, canonical_of.get(memcached_key))
                if own is None:  # another key's value behind the same hash: not ours
                    continue
                raw = own
            out[by_key[memcached_key]] = decode_row(raw, value_columns)
        return out

    def _nodes(self, keys: list[str]) -> dict[str, str]:
        if len(self._ns.options.servers) == 1:
            if self._only_node is None:
                self._only_node = self._ns.node(keys[0])
            return dict.fromkeys(keys, self._only_node)
        if len(keys) < _VECTOR_ROUTING_MIN_KEYS:
            return {k: self._ns.node(k) for k in keys}
        import numpy as np

        from airflow_provider_mlp.precompute.routing import Router

        if self._router is None:
            self._router = Router(self._ns.client)
        raw = [k.encode("ascii") for k in keys]
        offsets = np.concatenate(([0], np.cumsum([len(r) for r in raw]))).astype(np.int64)
        route = self._router.route(np.frombuffer(b"".join(raw), dtype=np.uint8), offsets)
        return {k: self._router.nodes[int(i)] for k, i in zip(keys, route.tolist(), strict=True)}

    def _get_by_node(self, version: _Version, nodes: dict[str, str]) -> Fetch:
        """The keys found, one request per server; each request also asks for the server's marker of the
        version (same round trip), so a server that lost the version is told apart from a key not in it."""
        grouped: dict[str, list[str]] = {}
        for key, node in nodes.items():
            grouped.setdefault(node, []).append(key)
        request: dict[str, list[str]] = {}
        for node, node_keys in grouped.items():
            marker = version.markers.get(node)
            request[node] = [*node_keys, marker] if marker else node_keys
        answers = yield request
        found: dict[str, tuple[bytes, int]] = {}
        for node in grouped:
            got = dict(answers[node])
            marker = version.markers.get(node)
            if marker:
                self._missing_markers(version, got, [node])
                got.pop(marker, None)
            found.update(got)
        return found

    def _reassemble(self, version: _Version, chunked: dict[str, tuple[bytes, int]]) -> Fetch:
        import msgpack

        headers: dict[str, tuple[int, int, int]] = {}
        chunk_keys: list[str] = []
        for key, (raw, _) in chunked.items():
            try:
                count, total, crc = msgpack.unpackb(raw)
            except Exception as exc:
                raise TornVersionError(
                    f"version {version.tag} of namespace {self.namespace!r}: the chunk header of {key} is corrupt"
                ) from exc
            headers[key] = (int(count), int(total), int(crc))
            chunk_keys += [version.keyspace.chunk_key(key, i) for i in range(int(count))]
        parts = yield from self._get_by_node(version, self._nodes(chunk_keys))
        out: dict[str, tuple[bytes, int]] = {}
        for key, (count, total, crc) in headers.items():
            names = [version.keyspace.chunk_key(key, i) for i in range(count)]
            lost = [n for n in names if n not in parts]
            if lost:
                raise TornVersionError(
                    f"version {version.tag} of namespace {self.namespace!r}: value {key} is torn: "
                    f"{len(lost)} of its {count} chunks are missing (first: {lost[0]} on memcached "
                    f"{self._ns.node(lost[0])})"
                )
            value = b"".join(parts[n][0] for n in names)
            if len(value) != total or zlib.crc32(value) != crc:
                raise TornVersionError(
                    f"version {version.tag} of namespace {self.namespace!r}: value {key} does not match its "
                    "checksum (chunks from different writes?)"
                )
            out[key] = (value, chunked[key][1] & ~FLAG_CHUNKED)
        return out


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


def _strip_key(raw: bytes, canonical: bytes | None) -> bytes | None:
    import msgpack

    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(raw)
    stored = unpacker.unpack()
    if canonical is None or stored != canonical:
        return None
    return raw[unpacker.tell() :]
