"""Publish a table's rows to memcached as a new, verified version of a namespace, then switch readers to it.

::

    from airflow_provider_mlp.precompute import publish

    result = publish("perf.daily_aggregates", key=["title_id", "country"], values=["views", "hours"],
                     namespace="content-perf", keep_versions=3)

Steps: (1) allocate a version (``incr`` of the namespace counter plus a random tag, so a version's
keys are never reused); (2) stream the input in batches (an Iceberg table through the Fast Data
reader's ``read_batches``, so memory stays bounded), encode keys and values in bulk and pipeline
them to every server over one socket each (:mod:`wire`); (3) write one marker item per server;
(4) verify: every write acknowledged, the row count against the Iceberg snapshot, a random sample
read back byte for byte; (5) write the version's metadata; (6) compare-and-swap the ``current``
pointer (written last, no expiry); (7) drop versions beyond ``keep_versions``.

Any failure before (6) leaves the pointer where it was: readers keep the previous version.

**Duplicate keys** in the input are an error (:class:`DuplicateKeyError`, naming the keys), and
nothing is switched. A precomputed table with two rows for one key is a bug upstream (a join that
fanned out, a missing group-by); picking either row would serve an arbitrary answer. Detection is
exact and costs nothing: every key is written in memcached's *add* mode under the version's fresh
prefix, so the second write of a key is refused by the server itself (``NS``), whatever batch or
server it is in, without keeping a set of every key in memory.
"""

from __future__ import annotations

import logging
import secrets
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_mlp.config import format_server
from airflow_provider_mlp.precompute.errors import (
    CacheInputError,
    DuplicateKeyError,
    PublishError,
    PublishServerError,
    VerificationError,
)
from airflow_provider_mlp.precompute.keys import (
    FLAG_CHUNKED,
    FLAG_KEYED,
    KeySpace,
    check_namespace,
    decode_key,
    key_kind,
    unescape,
)
from airflow_provider_mlp.precompute.namespace import FORMAT, CacheNamespace, now_iso
from airflow_provider_mlp.precompute.options import MemcachedOptions

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from airflow_provider_mlp.precompute.wire import ServerWriter

log = logging.getLogger(__name__)

DEFAULT_BATCH_ROWS = 32_768
DEFAULT_VERIFY_SAMPLE = 256
# Room for the item header and key inside memcached's item_size_max.
_ITEM_OVERHEAD = 1024
_METADATA_SAMPLE = 16


@dataclass
class PublishResult:
    """What a publish did (also the operator's XCom)."""

    namespace: str
    seq: int
    tag: str
    rows: int
    items: int
    switched: bool
    current: str
    dropped: list[str] = field(default_factory=list)
    seconds: float = 0.0
    bytes_sent: int = 0
    chunked_values: int = 0
    hashed_keys: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Source:
    description: str
    schema: pa.Schema
    batches: Iterator[pa.RecordBatch]
    info: dict[str, Any]
    expected_rows: int | None = None


def _as_list(value: str | Sequence[str] | None, what: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    items = list(value)
    if not all(isinstance(v, str) and v for v in items):
        raise CacheInputError(f"{what} must be column names, got {value!r}")
    return items


def _open_source(
    source: Any, columns: list[str] | None, batch_rows: int, snapshot_id: int | None, row_filter: Any
) -> _Source:
    import sys

    import pyarrow as pa

    if isinstance(source, str):
        from airflow_provider_mlp.fastdata import Table

        source = Table(source)
    # A fastdata Table can only exist once its module is imported; pyiceberg is not imported for Arrow input.
    fastdata = sys.modules.get("airflow_provider_mlp.fastdata.table")
    if fastdata is not None and isinstance(source, fastdata.Table):
        snapshot = snapshot_id if snapshot_id is not None else source.current_snapshot_id
        schema = source.arrow_schema
        _check_columns(f"Iceberg table {source.identifier!r}", schema, columns or [])
        batches = (
            source.read_batches(batch_rows=batch_rows, columns=columns, row_filter=row_filter, snapshot_id=snapshot)
            if snapshot is not None
            else iter(())
        )
        expected = None
        if snapshot is not None and row_filter is None:
            entry: dict[str, Any] = next((s for s in source.snapshots() if s.get("snapshot_id") == snapshot), {})
            summary: dict[str, Any] = entry.get("summary", {})
            deletes = int(summary.get("total-position-deletes", 0) or 0) + int(
                summary.get("total-equality-deletes", 0) or 0
            )
            if "total-records" in summary and deletes == 0:
                expected = int(summary["total-records"])
        info = {
            "kind": "iceberg",
            "table": source.identifier,
            "catalog": source.catalog_name,
            "snapshot_id": snapshot,
            "row_filter": None if row_filter is None else str(row_filter),
        }
        return _Source(f"Iceberg table {source.identifier!r}", schema, _resliced(batches, batch_rows), info, expected)
    if snapshot_id is not None or row_filter is not None:
        raise CacheInputError("snapshot_id and row_filter apply to Iceberg tables only")
    if isinstance(source, pa.Table):
        return _Source(
            "Arrow table",
            source.schema,
            iter(source.to_batches(max_chunksize=batch_rows)),
            {"kind": "arrow"},
            source.num_rows,
        )
    if isinstance(source, pa.RecordBatch):
        return _Source(
            "record batch", source.schema, _resliced(iter([source]), batch_rows), {"kind": "arrow"}, source.num_rows
        )
    if isinstance(source, pa.RecordBatchReader):
        return _Source("record batch reader", source.schema, _resliced(iter(source), batch_rows), {"kind": "arrow"})
    if hasattr(source, "__arrow_c_stream__"):
        reader = pa.RecordBatchReader.from_stream(source)
        return _Source("Arrow stream", reader.schema, _resliced(iter(reader), batch_rows), {"kind": "arrow"})
    if isinstance(source, Iterable):
        iterator = iter(source)
        first = next(iterator, None)
        if first is None:
            raise CacheInputError(
                "the record batch iterator gave no batches, so its columns are unknown; pass a pyarrow Table "
                "(even an empty one) to publish an empty version"
            )
        if not isinstance(first, pa.RecordBatch):
            raise CacheInputError(f"expected pyarrow RecordBatches, got {type(first).__name__}")
        return _Source(
            "record batches", first.schema, _resliced(_chain(first, iterator), batch_rows), {"kind": "arrow"}
        )
    raise CacheInputError(
        f"cannot publish a {type(source).__name__}: pass an Iceberg table name or fastdata Table, a pyarrow "
        "Table, RecordBatchReader, or an iterable of RecordBatches"
    )


def _chain(first: pa.RecordBatch, rest: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    yield first
    yield from rest


def _resliced(batches: Iterator[pa.RecordBatch], batch_rows: int) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        for start in range(0, batch.num_rows, batch_rows):
            yield batch.slice(start, batch_rows)


def _check_columns(description: str, schema: pa.Schema, columns: Sequence[str]) -> None:
    names = schema.names
    for column in columns:
        if column not in names:
            raise CacheInputError(f"{description} has no column {column!r} (columns: {', '.join(names) or 'none'})")


class _Encoder:
    """Turns record batches into per-server command buffers for one version."""

    def __init__(
        self,
        keyspace: KeySpace,
        source: _Source,
        key_columns: list[str],
        value_columns: list[str],
        kinds: list[str],
        router: Any,
        chunk_limit: int,
        sample_size: int,
    ) -> None:
        import numpy as np

        from airflow_provider_mlp.precompute.values import array_header

        self.keyspace = keyspace
        self.source = source
        self.key_columns = key_columns
        self.value_columns = value_columns
        self.kinds = kinds
        self.router = router
        self.node_index = {node: i for i, node in enumerate(router.nodes)}
        self.chunk_limit = chunk_limit
        self.header = array_header(len(value_columns))
        prefix = keyspace.prefix.encode("ascii")
        self.key_prefix = prefix + b"k"
        self.command_head = b"\r\nms " + self.key_prefix
        self.max_escaped = keyspace.max_escaped_length()
        self.rows = 0
        self.items = 0
        self.chunked_values = 0
        self.hashed_keys = 0
        self.hashed: dict[str, bytes] = {}
        self.sample_size = sample_size
        self.sample: dict[int, tuple[str, int, bytes]] = {}
        self.rng = np.random.default_rng(zlib.crc32(keyspace.prefix.encode()))
        self.types: dict[str, pa.DataType] = {}

    def _check_batch(self, batch: pa.RecordBatch) -> None:
        import numpy as np

        if not self.types:
            self.types = {c: batch.schema.field(c).type for c in [*self.key_columns, *self.value_columns]}
        for column, expected in self.types.items():
            index = batch.schema.get_field_index(column)
            if index < 0:
                raise CacheInputError(f"{self.source.description}: a batch has no column {column!r}")
            if batch.schema.field(index).type != expected:
                raise CacheInputError(
                    f"{self.source.description}: column {column!r} changed type from {expected} to "
                    f"{batch.schema.field(index).type} between batches"
                )
        for column in self.key_columns:
            array = batch.column(column)
            if array.null_count:
                first = int(np.flatnonzero(np.asarray(array.is_null().to_numpy(zero_copy_only=False)))[0])
                raise CacheInputError(
                    f"{self.source.description}: key column {column!r} has {array.null_count} null value(s) "
                    f"(first at row {self.rows + first}); every row needs a key"
                )

    def encode(self, batch: pa.RecordBatch) -> list[tuple[list[bytes | memoryview], int]]:
        """Per server (router order): the buffers to send and how many commands they hold."""
        import numpy as np

        from airflow_provider_mlp.precompute.keys import canonical_keys, escape_many
        from airflow_provider_mlp.precompute.ragged import Pieces, Pool, concat_rows, gather, split, take_rows
        from airflow_provider_mlp.precompute.values import encode_rows

        self._check_batch(batch)
        n = batch.num_rows
        servers = len(self.router.nodes)
        out: list[tuple[list[bytes | memoryview], int]] = [([], 0) for _ in range(servers)]
        if n == 0:
            return out
        canonical, canonical_offsets = canonical_keys([batch.column(c) for c in self.key_columns], self.kinds)
        escaped, escaped_offsets = escape_many(canonical, canonical_offsets)
        escaped_lengths = np.diff(escaped_offsets)
        pool = Pool()
        cells = encode_rows(pool, [batch.column(c) for c in self.value_columns])
        value_lengths = cells.row_lengths() + len(self.header)
        rare = (escaped_lengths > self.max_escaped) | (value_lengths > self.chunk_limit)
        normal = np.flatnonzero(~rare)
        key_pieces = Pieces.uniform(pool.add(escaped) + escaped_offsets[:-1], escaped_lengths)
        route = self.router.route(escaped, escaped_offsets, self.key_prefix)

        if servers > 1:
            normal = normal[np.argsort(route[normal], kind="stable")]
        identity = servers == 1 and len(normal) == n
        lengths = value_lengths[normal]
        present, inverse = np.unique(lengths, return_inverse=True)
        tails = [b" %d ME q k\r\n" % length + self.header for length in present.tolist()]
        tail_start = np.array([pool.const(t) for t in tails], dtype=np.int64)
        tail_length = np.array([len(t) for t in tails], dtype=np.int64)
        head = pool.const(self.command_head)
        commands = concat_rows(
            [
                Pieces.constant(head, len(self.command_head), len(normal)),
                key_pieces if identity else take_rows(key_pieces, normal),
                Pieces.uniform(tail_start[inverse], tail_length[inverse]),
                cells if identity else take_rows(cells, normal),
            ]
        )
        pool_bytes = pool.array()
        data, row_offsets = gather(pool_bytes, commands)
        bounds = np.searchsorted(route[normal], np.arange(servers + 1))
        view = memoryview(data.data)
        for s in range(servers):
            first, last = int(bounds[s]), int(bounds[s + 1])
            if last > first:
                out[s] = ([view[int(row_offsets[first]) + 2 : int(row_offsets[last])], b"\r\n"], last - first)

        rare_rows = np.flatnonzero(rare)
        sampled = self._sample_rows(n)
        wanted = np.union1d(rare_rows, sampled).astype(np.int64)
        materialized: dict[int, tuple[str, int, bytes]] = {}
        if len(wanted):
            values_data, values_offsets = gather(pool_bytes, take_rows(cells, wanted))
            values = [self.header + v for v in split(values_data, values_offsets)]
            keys_data, keys_offsets = gather(pool_bytes, take_rows(key_pieces, wanted))
            raw_keys = split(keys_data, keys_offsets)
            canon = {
                int(r): canonical[int(canonical_offsets[r]) : int(canonical_offsets[r + 1])].tobytes()
                for r in rare_rows
            }
            extra: list[list[bytes]] = [[] for _ in range(servers)]
            extra_count = [0] * servers
            is_rare = set(rare_rows.tolist())
            for i, row in enumerate(wanted.tolist()):
                if row in is_rare:
                    key, flags, value = self._rare_items(canon[row], values[i], extra, extra_count)
                else:
                    key, flags, value = self.key_prefix.decode() + raw_keys[i].decode("ascii"), 0, values[i]
                materialized[row] = (key, flags, value)
            for s in range(servers):
                if extra[s]:
                    parts, count = out[s]
                    out[s] = ([*parts, b"".join(extra[s])], count + extra_count[s])
        for row, slot in self._sample_slots(sampled):
            self.sample[slot] = materialized[row]
        self.rows += n
        self.items += sum(count for _, count in out)
        return out

    def _rare_items(
        self, canonical: bytes, value: bytes, extra: list[list[bytes]], extra_count: list[int]
    ) -> tuple[str, int, bytes]:
        import msgpack

        key, hashed = self.keyspace.data_key(canonical)
        flags = 0
        if hashed:
            self.hashed_keys += 1
            self.hashed[key] = canonical
            value = msgpack.packb(canonical, use_bin_type=True) + value
            flags |= FLAG_KEYED
        items: list[tuple[str, int, bytes]] = []
        if len(value) > self.chunk_limit:
            self.chunked_values += 1
            parts = [value[i : i + self.chunk_limit] for i in range(0, len(value), self.chunk_limit)]
            items += [(self.keyspace.chunk_key(key, i), 0, part) for i, part in enumerate(parts)]
            value = msgpack.packb([len(parts), sum(map(len, parts)), zlib.crc32(b"".join(parts))])
            flags |= FLAG_CHUNKED
        items.append((key, flags, value))
        for item_key, item_flags, item_value in items:
            s = self.node_index[self.router.node(item_key)]
            extra[s].append(command(item_key, item_value, item_flags))
            extra_count[s] += 1
        return key, flags, value

    def _sample_rows(self, n: int) -> np.ndarray:
        import numpy as np

        seen = self.rows
        index = seen + np.arange(n, dtype=np.int64)
        # Reservoir sampling: row i replaces slot floor(u * (i + 1)) when that is below the sample size.
        slots = np.where(index < self.sample_size, index, (self.rng.random(n) * (index + 1)).astype(np.int64))
        self._slots = slots
        return np.flatnonzero(slots < self.sample_size)

    def _sample_slots(self, rows: np.ndarray) -> Iterator[tuple[int, int]]:
        for row in rows.tolist():
            yield row, int(self._slots[row])

    def describe_key(self, key: str) -> Any:
        """The user key of a memcached data key, for messages."""
        rest = key[len(self.keyspace.prefix) :]
        if rest.startswith("k"):
            return decode_key(unescape(rest[1:].encode("ascii")), self.kinds)
        if key in self.hashed:
            return decode_key(self.hashed[key], self.kinds)
        return key


def command(key: str, value: bytes, flags: int = 0, mode: str = "ME") -> bytes:
    flag_text = b" F%d" % flags if flags else b""
    return b"ms %s %d%s %s q k\r\n%s\r\n" % (key.encode("ascii"), len(value), flag_text, mode.encode(), value)


def publish(
    source: Any,
    *,
    key: str | Sequence[str],
    values: str | Sequence[str] | None = None,
    namespace: str,
    servers: str | Iterable[str] | None = None,
    options: MemcachedOptions | None = None,
    keep_versions: int = 3,
    dag_id: str | None = None,
    run_id: str | None = None,
    snapshot_id: int | None = None,
    row_filter: Any = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    verify_sample: int = DEFAULT_VERIFY_SAMPLE,
    chunk_bytes: int | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> PublishResult:
    """Publish ``source`` as a new version of ``namespace`` and make it current.

    :param source: an Iceberg table (``"ns.table"`` in the embedded catalog, or a fastdata ``Table``),
        a pyarrow ``Table`` / ``RecordBatch`` / ``RecordBatchReader``, or an iterable of RecordBatches.
    :param key: the key column(s); a reader's key is a scalar for one column, a tuple for several.
    :param values: the value columns (default: every other column).
    :param namespace: what readers ask for (``CacheReader(namespace)``).
    :param servers: ``"host:port,..."`` (default ``settings().memcached_servers``); ``options`` wins.
    :param keep_versions: versions kept for rollback, the new one included.
    :param dag_id: recorded in the version's metadata, with ``run_id``.
    :param snapshot_id: Iceberg snapshot to publish (default: the current one); recorded.
    :param row_filter: Iceberg row filter (e.g. ``"country = 'US'"``).
    :param batch_rows: rows per pipelined batch.
    :param verify_sample: how many random rows are read back before switching.
    :param chunk_bytes: split values larger than this (default: the servers' item size limit).
    :param on_batch: called with the number of rows written so far after each batch.
    :raises DuplicateKeyError: a key appears twice; nothing is switched.
    :raises PublishError: a server failed, or verification did; the pointer did not move.
    """
    started = time.monotonic()
    check_namespace(namespace)
    if not isinstance(keep_versions, int) or keep_versions < 1:
        raise CacheInputError(f"keep_versions must be a positive integer, got {keep_versions!r}")
    if batch_rows < 1 or verify_sample < 0:
        raise CacheInputError("batch_rows must be positive and verify_sample non-negative")
    key_columns = _as_list(key, "key")
    if not key_columns:
        raise CacheInputError("key: name at least one key column")
    value_columns = _as_list(values, "values")
    if value_columns is not None:
        overlap = set(key_columns) & set(value_columns)
        if overlap:
            raise CacheInputError(f"column(s) {', '.join(sorted(overlap))} cannot be both key and value")
    columns = None if value_columns is None else [*key_columns, *value_columns]
    src = _open_source(source, columns, batch_rows, snapshot_id, row_filter)
    _check_columns(src.description, src.schema, key_columns)
    if value_columns is None:
        value_columns = [name for name in src.schema.names if name not in key_columns]
    _check_columns(src.description, src.schema, value_columns)
    kinds = [key_kind(c, src.schema.field(c).type) for c in key_columns]
    from airflow_provider_mlp.precompute.values import check_value_type

    for column in value_columns:
        check_value_type(column, src.schema.field(column).type)

    options = options or MemcachedOptions.resolve(servers)
    with CacheNamespace(namespace, options=options) as ns:
        from airflow_provider_mlp.precompute.routing import Router

        router = Router(ns.client)
        seq = ns.next_seq()
        tag = f"{seq}.{secrets.token_hex(2)}"
        keyspace = ns.keys.version(tag)
        log.info(
            "Publishing %s to namespace %r version %s on %s", src.description, namespace, tag, ", ".join(router.nodes)
        )
        publisher = _Publisher(ns, router, options, keyspace, src, chunk_bytes)
        try:
            encoder = publisher.write(key_columns, value_columns, kinds, verify_sample, on_batch)
            publisher.verify(encoder)
        finally:
            publisher.close()
        meta = {
            "format": FORMAT,
            "namespace": namespace,
            "seq": seq,
            "tag": tag,
            "published_at": now_iso(),
            "source": src.info,
            "dag_id": dag_id,
            "run_id": run_id,
            "row_count": encoder.rows,
            "item_count": encoder.items,
            "bytes": publisher.bytes_sent,
            "chunked_values": encoder.chunked_values,
            "hashed_keys": encoder.hashed_keys,
            "key_columns": key_columns,
            "key_kinds": kinds,
            "value_columns": value_columns,
            "value_types": [str(encoder.types.get(c, src.schema.field(c).type)) for c in value_columns],
            "servers": list(router.nodes),
            "markers": publisher.markers,
            "sample": [[k, f, zlib.crc32(v)] for k, f, v in list(encoder.sample.values())[:_METADATA_SAMPLE]],
            "seconds": round(time.monotonic() - started, 3),
        }
        ns.write_metadata(meta)
        entry = {"seq": seq, "tag": tag, "published_at": meta["published_at"], "rows": encoder.rows}
        switched, current, dropped = ns.switch_to_published(entry, keep_versions)
        ns.drop(dropped)
    if not switched:
        log.warning(
            "Version %s of %r is published but not current: newer version %s already is", tag, namespace, current
        )
    result = PublishResult(
        namespace=namespace,
        seq=seq,
        tag=tag,
        rows=encoder.rows,
        items=encoder.items,
        switched=switched,
        current=current,
        dropped=dropped,
        seconds=round(time.monotonic() - started, 3),
        bytes_sent=publisher.bytes_sent,
        chunked_values=encoder.chunked_values,
        hashed_keys=encoder.hashed_keys,
    )
    log.info(
        "Published %d rows (%d items) to %r version %s in %.2fs",
        result.rows,
        result.items,
        namespace,
        tag,
        result.seconds,
    )
    return result


class _Publisher:
    """The sockets and writer threads of one publish."""

    def __init__(
        self,
        ns: CacheNamespace,
        router: Any,
        options: MemcachedOptions,
        keyspace: KeySpace,
        source: _Source,
        chunk_bytes: int | None,
    ) -> None:
        from airflow_provider_mlp.precompute.wire import item_size_max, open_socket

        self.ns = ns
        self.router = router
        self.options = options
        self.keyspace = keyspace
        self.source = source
        self.addresses = {format_server(a): a for a in options.servers}
        self.sockets: dict[str, Any] = {}
        self.writers: list[ServerWriter] = []
        self.markers: dict[str, str] = {}
        self.bytes_sent = 0
        self.encoder: _Encoder | None = None
        limits = []
        for node in router.nodes:
            address = self.addresses.get(node) or _address_of(node)
            sock = self.sockets[node] = open_socket(address, options)
            limits.append(item_size_max(sock, node) or (1 << 20))
        self.chunk_limit = chunk_bytes or max(4096, min(limits) - _ITEM_OVERHEAD)

    def write(
        self,
        key_columns: list[str],
        value_columns: list[str],
        kinds: list[str],
        verify_sample: int,
        on_batch: Callable[[int], None] | None,
    ) -> _Encoder:
        from airflow_provider_mlp.precompute.wire import ServerWriter

        context = f"the publish of version {self.keyspace.tag} of namespace {self.ns.namespace!r}"
        encoder = self.encoder = _Encoder(
            self.keyspace, self.source, key_columns, value_columns, kinds, self.router, self.chunk_limit, verify_sample
        )
        self.writers = [
            ServerWriter(node, self.sockets[node], self.options.timeout, self._failure_error, context)
            for node in self.router.nodes
        ]
        for writer in self.writers:
            writer.start()
        try:
            for batch in self.source.batches:
                for writer, (parts, count) in zip(self.writers, encoder.encode(batch), strict=True):
                    if count:
                        writer.send(parts, count)
                        self.bytes_sent += sum(len(p) for p in parts)
                if on_batch is not None:
                    on_batch(encoder.rows)
            self._write_markers()
            for writer in self.writers:
                writer.finish()
        except BaseException:
            for writer in self.writers:
                writer.abort()
            raise
        return encoder

    def _write_markers(self) -> None:
        index = {node: i for i, node in enumerate(self.router.nodes)}
        for j in range(100_000):
            if len(self.markers) == len(index):
                break
            key = self.keyspace.marker(j)
            node = self.router.node(key)
            if node not in self.markers:
                self.markers[node] = key
                self.writers[index[node]].send([command(key, self.keyspace.tag.encode())], 1)  # type: ignore[union-attr]

    def _failure_error(self, writer: ServerWriter) -> BaseException:
        assert self.encoder is not None
        lines = [f.line for f in writer.failures]
        duplicates = [line.split(" k", 1)[1] for line in lines if line.startswith("NS") and " k" in line]
        if duplicates and len(duplicates) == len(lines):
            data_keys = [k for k in duplicates if not k[len(self.keyspace.prefix) :].startswith("c")]
            keys = [self.encoder.describe_key(k) for k in data_keys]
            shown = ", ".join(repr(k) for k in keys[:5])
            return DuplicateKeyError(
                f"{self.source.description}: key(s) {shown} appear more than once in the input "
                f"(at least {writer.failure_count} repeated row(s) seen by memcached {writer.name}); "
                f"namespace {self.ns.namespace!r} was not switched: make the key columns "
                f"({', '.join(self.encoder.key_columns)}) unique",
                keys,
                writer.failure_count,
            )
        return PublishServerError(
            f"memcached {writer.name}: {writer.failure_count} write(s) of version {self.keyspace.tag} of namespace "
            f"{self.ns.namespace!r} failed (first: {'; '.join(lines[:3])}); the pointer was not moved",
            server=writer.name,
        )

    def verify(self, encoder: _Encoder) -> None:
        """Every write acknowledged (the writers checked), the row count, and the sample read back."""
        written = sum(w.commands for w in self.writers)
        if written != encoder.items + len(self.markers):
            raise VerificationError(f"{written} writes acknowledged, expected {encoder.items + len(self.markers)}")
        if self.source.expected_rows is not None and encoder.rows != self.source.expected_rows:
            raise VerificationError(
                f"{self.source.description}: read {encoder.rows} rows but the source has {self.source.expected_rows}"
            )
        by_node: dict[str, list[tuple[str, int, bytes]]] = {}
        for key, flags, value in encoder.sample.values():
            by_node.setdefault(self.router.node(key), []).append((key, flags, value))
        for node, marker in self.markers.items():
            by_node.setdefault(node, []).append((marker, 0, self.keyspace.tag.encode()))  # type: ignore[union-attr]
        for node, items in by_node.items():
            sock = self.sockets[node]
            sock.setblocking(True)
            sock.settimeout(self.options.timeout)
            payload = b"".join(b"mg %s f v\r\n" % k.encode("ascii") for k, _, _ in items) + b"mn\r\n"
            replies = _read_meta_gets(sock, node, payload)
            if len(replies) != len(items):
                raise VerificationError(f"memcached {node}: {len(replies)} replies to {len(items)} reads", server=node)
            for (key, flags, value), got in zip(items, replies, strict=True):
                if got is None:
                    raise VerificationError(
                        f"memcached {node}: {key} was acknowledged but does not read back (evicted? is the server "
                        "out of memory?); the pointer was not moved",
                        server=node,
                    )
                if got != (flags, value):
                    raise VerificationError(f"memcached {node}: {key} reads back different bytes", server=node)

    def close(self) -> None:
        for sock in self.sockets.values():
            try:
                sock.close()
            except OSError:
                pass


def _address_of(node: str) -> tuple[str, int]:
    host, _, port = node.rpartition(":")
    return host.strip("[]"), int(port)


def _read_meta_gets(sock: Any, node: str, payload: bytes) -> list[tuple[int, bytes] | None]:
    """Send ``mg <key> f v`` ... ``mn`` and read the replies through the ``MN`` line.

    The reply is parsed as it arrives: a value is binary, so the bytes ``MN\r\n`` can end a value
    (a msgpack integer 0x4D4E did) and are the end of the reply only where a line starts.
    """
    from airflow_provider_mlp.precompute.wire import exchange

    return exchange(sock, node, payload, lambda reply: _parse_meta_gets(reply, node))


def _parse_meta_gets(reply: bytes, node: str) -> list[tuple[int, bytes] | None] | None:
    """Replies to ``mg <key> f v`` ... ``mn``: ``(flags, value)`` or ``None`` per key; None while
    ``reply`` does not reach the ``MN`` line yet."""
    out: list[tuple[int, bytes] | None] = []
    pos = 0
    while True:
        end = reply.find(b"\r\n", pos)
        if end < 0:
            return None
        line = reply[pos:end].split()
        pos = end + 2
        if not line:
            continue
        code = line[0]
        if code == b"MN":
            return out
        if code == b"EN":
            out.append(None)
        elif code == b"VA":
            size = int(line[1])
            if pos + size + 2 > len(reply):
                return None
            flags = next((int(t[1:]) for t in line[2:] if t.startswith(b"f")), 0)
            out.append((flags, reply[pos : pos + size]))
            pos += size + 2
        else:
            raise PublishError(f"memcached {node}: unexpected reply {b' '.join(line)!r} while verifying", server=node)
