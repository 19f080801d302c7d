"""A namespace's state on the servers: the ``current`` pointer, version metadata, rollback.

The pointer (``mlp:<namespace>:current``, no expiry) is a small JSON document naming the current
version and the retained ones. It is only ever changed by compare-and-swap (memcached ``gets`` /
``cas``, or ``add`` for the first publish), so two publishers or a publish and a rollback racing
on one namespace cannot overwrite each other's decision, and it only ever names a version whose
data, markers and metadata were written and verified before. Each version's metadata
(``mlp:<namespace>:meta:<tag>``) records where the version came from and how to read it.

Data items of versions dropped from the retained list are not deleted one by one (that would
need every key again); nothing refers to them any more, so memcached's LRU reclaims them first.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable, Iterable
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_mlp.precompute.errors import (
    CacheInputError,
    CacheServerError,
    MissingVersionError,
    PublishError,
)
from airflow_provider_mlp.precompute.keys import KeySpace
from airflow_provider_mlp.precompute.options import MemcachedOptions

if TYPE_CHECKING:
    from pymemcache.client.hash import HashClient

FORMAT = 1
_CAS_ATTEMPTS = 50
_READS = frozenset({"get", "gets", "get_many"})


class FlaggedSerde:
    """pymemcache serde that stores bytes as they are and reads ``(bytes, client flags)``."""

    def serialize(self, key: Any, value: Any) -> tuple[bytes, int]:
        if isinstance(value, tuple):
            return bytes(value[0]), int(value[1])
        return bytes(value), 0

    def deserialize(self, key: Any, value: bytes, flags: int) -> tuple[bytes, int]:
        return value, flags


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class CacheNamespace:
    """Versions of one namespace: list them, read the current one, roll back, and (for the publisher) switch.

    :param namespace: the namespace (letters, digits, ``_ . -``).
    :param servers: ``"host:port,..."``; default ``settings().memcached_servers``.
    :param options: full :class:`MemcachedOptions` (timeouts, TLS); overrides ``servers``.
    """

    def __init__(
        self,
        namespace: str,
        servers: str | Iterable[str] | None = None,
        *,
        options: MemcachedOptions | None = None,
        pooled: bool = False,
    ) -> None:
        self.keys = KeySpace(namespace)
        self.namespace = namespace
        self.options = options or MemcachedOptions.resolve(servers)
        self._pooled = pooled

    @cached_property
    def client(self) -> HashClient:
        return self.options.hash_client(pooled=self._pooled, serde=FlaggedSerde())

    def close(self) -> None:
        if "client" in self.__dict__:
            self.__dict__.pop("client").close()

    def __enter__(self) -> CacheNamespace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one key at a time, failures named --------------------------------------------------------

    def node(self, key: str) -> str:
        return str(self.client.hasher.get_node(key))

    def server_client(self, node: str) -> Any:
        return self.client.clients[node]

    def call(self, key: str, operation: str, *args: Any, **kwargs: Any) -> Any:
        node = self.node(key)
        return self.on_server(node, lambda c: getattr(c, operation)(key, *args, **kwargs), retry=operation in _READS)

    def on_server(self, node: str, action: Callable[[Any], Any], *, retry: bool = False) -> Any:
        """Run ``action`` on the server's client; a read is tried once more on a fresh connection (a
        pooled socket goes stale when its server restarts); failures name the server."""
        from pymemcache.exceptions import MemcacheError, MemcacheUnexpectedCloseError

        for attempt in (1, 2):
            try:
                return action(self.server_client(node))
            except (OSError, MemcacheError) as exc:
                stale = isinstance(exc, MemcacheUnexpectedCloseError | ConnectionError | BrokenPipeError)
                if retry and stale and attempt == 1:
                    continue
                raise CacheServerError(f"memcached {node}: {type(exc).__name__}: {exc}", server=node) from exc
        raise AssertionError("unreachable")

    def get_many(self, keys: Iterable[str]) -> dict[str, tuple[bytes, int]]:
        """``{key: (value, flags)}`` of the keys found, one request per server."""
        by_node: dict[str, list[str]] = {}
        for key in keys:
            by_node.setdefault(self.node(key), []).append(key)
        found: dict[str, tuple[bytes, int]] = {}
        for node, node_keys in by_node.items():
            found.update(self.get_many_on(node, node_keys))
        return found

    def get_many_on(self, node: str, keys: list[str]) -> dict[str, tuple[bytes, int]]:
        """``{key: (value, flags)}`` of the keys found on one server."""

        def fetch(client: Any) -> dict[str, tuple[bytes, int]]:
            return dict(client.get_many(keys))

        return dict(self.on_server(node, fetch, retry=True))

    # -- pointer and metadata ---------------------------------------------------------------------

    def pointer(self) -> tuple[dict[str, Any] | None, Any]:
        """``(pointer document, cas token)``; ``(None, None)`` when the namespace has no pointer."""
        value, cas = self.call(self.keys.pointer, "gets")
        if value is None:
            return None, None
        return _load_json(value[0], f"pointer of namespace {self.namespace!r}"), cas

    def metadata(self, tag: str) -> dict[str, Any] | None:
        value = self.call(self.keys.meta(tag), "get")
        if value is None:
            return None
        return _load_json(value[0], f"metadata of version {tag} of namespace {self.namespace!r}")

    def write_metadata(self, meta: dict[str, Any]) -> None:
        key = self.keys.meta(meta["tag"])
        if not self.call(key, "set", json.dumps(meta).encode(), expire=0, noreply=False):
            raise PublishError(f"memcached {self.node(key)}: metadata of version {meta['tag']} was not stored")

    def next_seq(self) -> int:
        """A fresh version number: ``incr`` of the namespace's counter, started above any retained version."""
        counter = self.keys.counter
        seq = self.call(counter, "incr", 1, noreply=False)
        if seq is not None:
            return int(seq)
        doc, _ = self.pointer()
        start = max((int(v["seq"]) for v in (doc or {}).get("versions", [])), default=0)
        self.call(counter, "add", str(start).encode(), expire=0, noreply=False)
        seq = self.call(counter, "incr", 1, noreply=False)
        if seq is None:
            raise PublishError(
                f"memcached {self.node(counter)}: cannot allocate a version number for {self.namespace!r}"
            )
        return int(seq)

    def _store_pointer(self, doc: dict[str, Any], cas: Any) -> bool:
        payload = json.dumps(doc).encode()
        if cas is None:
            return bool(self.call(self.keys.pointer, "add", payload, expire=0, noreply=False))
        return bool(self.call(self.keys.pointer, "cas", payload, cas, expire=0, noreply=False))

    def switch_to_published(self, entry: dict[str, Any], keep_versions: int) -> tuple[bool, str, list[str]]:
        """Make a verified version current unless a newer one (higher seq) already is.

        Returns ``(switched, current tag, dropped tags)``; the version joins the retained list either way.
        """
        for _ in range(_CAS_ATTEMPTS):
            doc, cas = self.pointer()
            versions = [v for v in (doc or {}).get("versions", []) if v["tag"] != entry["tag"]] + [entry]
            versions.sort(key=lambda v: int(v["seq"]), reverse=True)
            current = (doc or {}).get("current")
            current_entry = next((v for v in versions if v["tag"] == current), None)
            switched = current_entry is None or int(current_entry["seq"]) < int(entry["seq"])
            new_current = entry["tag"] if switched else str(current)
            kept = versions[:keep_versions]
            if all(v["tag"] != new_current for v in kept):
                kept = [*versions[: keep_versions - 1], next(v for v in versions if v["tag"] == new_current)]
            dropped = [v["tag"] for v in versions if v not in kept]
            new_doc = {
                "format": FORMAT,
                "namespace": self.namespace,
                "current": new_current,
                "versions": kept,
                "updated_at": now_iso(),
                "action": "publish" if switched else (doc or {}).get("action", "publish"),
            }
            if self._store_pointer(new_doc, cas):
                return switched, new_current, dropped
        raise PublishError(
            f"the pointer of namespace {self.namespace!r} kept changing; gave up after {_CAS_ATTEMPTS} tries"
        )

    def drop(self, tags: Iterable[str]) -> None:
        """Forget dropped versions' metadata (best effort: their data is left to memcached's LRU)."""
        for tag in tags:
            try:
                self.call(self.keys.meta(tag), "delete", noreply=False)
            except CacheServerError:
                pass

    # -- listing, checking, rolling back ----------------------------------------------------------

    def versions(self) -> list[dict[str, Any]]:
        """The retained versions, newest first, each with its metadata and whether it is current."""
        doc, _ = self.pointer()
        if doc is None:
            return []
        out = []
        for entry in doc.get("versions", []):
            meta = self.metadata(entry["tag"]) or {}
            out.append({**meta, **entry, "current": entry["tag"] == doc.get("current"), "metadata_found": bool(meta)})
        return out

    def current(self) -> dict[str, Any]:
        """The current version's metadata, or :class:`MissingVersionError`."""
        doc, _ = self.pointer()
        if doc is None or not doc.get("current"):
            raise MissingVersionError(
                f"namespace {self.namespace!r} has no current version on {', '.join(self.options.server_names)}"
            )
        meta = self.metadata(doc["current"])
        if meta is None:
            raise MissingVersionError(
                f"the metadata of version {doc['current']} of namespace {self.namespace!r} is missing "
                f"(key {self.keys.meta(doc['current'])} on memcached {self.node(self.keys.meta(doc['current']))})"
            )
        return {**meta, "pointer": doc}

    def problems(self, meta: dict[str, Any]) -> list[str]:
        """What is missing or wrong of a version on the servers (markers, sampled items); empty when whole."""
        markers: dict[str, str] = meta.get("markers", {})
        sample: list[list[Any]] = meta.get("sample", [])
        found = self.get_many([*markers.values(), *(s[0] for s in sample)])
        problems = [
            f"marker {key} missing on memcached {server} (restarted or flushed?)"
            for server, key in markers.items()
            if key not in found
        ]
        for key, flags, crc in sample:
            item = found.get(key)
            if item is None:
                problems.append(f"item {key} missing on memcached {self.node(key)}")
            elif item[1] != flags or zlib.crc32(item[0]) != crc:
                problems.append(f"item {key} on memcached {self.node(key)} differs from what was published")
        return problems

    def rollback(self, to: int | str | None = None) -> dict[str, Any]:
        """Switch the pointer to the previous retained version (or version ``to``: its seq or tag).

        The target is checked first (its markers and sampled items must be on the servers).
        Returns the new pointer document.
        """
        for _ in range(_CAS_ATTEMPTS):
            doc, cas = self.pointer()
            if doc is None:
                raise MissingVersionError(f"namespace {self.namespace!r} has no versions to roll back")
            versions = sorted(doc.get("versions", []), key=lambda v: int(v["seq"]), reverse=True)
            current = next((v for v in versions if v["tag"] == doc.get("current")), None)
            listing = ", ".join(str(v["seq"]) for v in versions) or "none"
            if to is None:
                if current is None:
                    raise MissingVersionError(f"namespace {self.namespace!r}: the current version is not retained")
                older = [v for v in versions if int(v["seq"]) < int(current["seq"])]
                if not older:
                    raise CacheInputError(
                        f"namespace {self.namespace!r}: no version older than the current {current['seq']} "
                        f"to roll back to (retained: {listing})"
                    )
                target = older[0]
            else:
                target = next((v for v in versions if str(v["seq"]) == str(to) or v["tag"] == str(to)), None)
                if target is None:
                    raise CacheInputError(
                        f"namespace {self.namespace!r} has no retained version {to!r} (retained: {listing})"
                    )
            meta = self.metadata(target["tag"])
            if meta is None:
                raise MissingVersionError(
                    f"version {target['seq']} of namespace {self.namespace!r} has lost its metadata; not switching"
                )
            problems = self.problems(meta)
            if problems:
                raise MissingVersionError(
                    f"version {target['seq']} of namespace {self.namespace!r} is no longer whole on the servers "
                    f"({'; '.join(problems[:3])}); not switching"
                )
            new_doc = {**doc, "current": target["tag"], "updated_at": now_iso(), "action": "rollback"}
            if self._store_pointer(new_doc, cas):
                return new_doc
        raise PublishError(
            f"the pointer of namespace {self.namespace!r} kept changing; gave up after {_CAS_ATTEMPTS} tries"
        )


def _load_json(raw: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise MissingVersionError(f"{what} is not valid JSON ({exc}); was it written by another program?") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise MissingVersionError(f"{what} has an unknown format; expected format {FORMAT}")
    return doc
