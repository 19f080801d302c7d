"""Bytes from object stores and file systems, fetched through fsspec with bounded concurrency.

Parquet is read from memory: a file's footer is fetched once, then only the column chunks a read
needs, written at their own offsets into a buffer the size of the file. Pages never written are
never touched, so the buffer costs only what was fetched.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any

from airflow_provider_mlp.fastdata.defaults import DEFAULT_IO_CONCURRENCY
from airflow_provider_mlp.fastdata.errors import DataFileError

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from fsspec import AbstractFileSystem

FOOTER_GUESS = 64 * 1024
# Remote files up to this size that a read needs entirely are fetched in one request, footer
# included: one round trip instead of a footer request followed by one per row group.
WHOLE_FILE_MAX = 128 * 1024 * 1024
# Ranges closer than this are fetched as one request: a request costs more than the bytes between.
COALESCE_GAP = 256 * 1024

_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def io_pool(concurrency: int = DEFAULT_IO_CONCURRENCY) -> Executor:
    """A process-wide thread pool per concurrency level: in-flight requests never exceed it."""
    with _POOLS_LOCK:
        pool = _POOLS.get(concurrency)
        if pool is None:
            pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=f"fastdata-io{concurrency}")
            _POOLS[concurrency] = pool
        return pool


@lru_cache(maxsize=32)
def _filesystem(scheme: str, properties: tuple[tuple[str, str], ...]) -> AbstractFileSystem:
    if scheme == "file":
        # Local files need no properties: skip importing every cloud file system pyiceberg knows.
        from fsspec.implementations.local import LocalFileSystem

        return LocalFileSystem()
    from pyiceberg.io.fsspec import FsspecFileIO

    # pyiceberg's fsspec FileIO already maps catalog properties (s3.endpoint, credentials, gcs.*,
    # adls.*) to fsspec options; its file systems are the ones pyiceberg itself would use.
    return FsspecFileIO(dict(properties)).get_fs(scheme)


# Object stores whose Arrow-native client pyiceberg configures from the same catalog properties.
# Those clients read response bodies in C++ threads; s3fs/gcsfs funnel every body through one
# asyncio thread that competes for the GIL with decoding, which halves throughput on small machines.
ARROW_NATIVE_SCHEMES = frozenset({"s3", "s3a", "s3n", "gs", "gcs"})


@lru_cache(maxsize=32)
def _arrow_filesystem(scheme: str, netloc: str, properties: tuple[tuple[str, str], ...]) -> Any:
    from pyiceberg.io.pyarrow import PyArrowFileIO

    return PyArrowFileIO(dict(properties)).fs_by_scheme(scheme, netloc)


def arrow_native(path: str, properties: Mapping[str, str], io: Any = None) -> tuple[Any, str] | None:
    """(Arrow file system, path in it) for object-store URLs, else None.

    With the table's own pyiceberg FileIO, its already-initialised client is reused.
    """
    if "://" not in path:
        return None
    scheme, rest = path.split("://", 1)
    if scheme not in ARROW_NATIVE_SCHEMES:
        return None
    netloc = rest.split("/", 1)[0]
    fs_by_scheme = getattr(io, "fs_by_scheme", None)
    if fs_by_scheme is not None:
        return fs_by_scheme(scheme, netloc), rest
    key = tuple(sorted((str(k), str(v)) for k, v in properties.items()))
    return _arrow_filesystem(scheme, netloc, key), rest


def filesystem_for(path: str, properties: Mapping[str, str]) -> AbstractFileSystem:
    scheme = path.split("://", 1)[0] if "://" in path else "file"
    return _filesystem(scheme, tuple(sorted((str(k), str(v)) for k, v in properties.items())))


def coalesce(ranges: Sequence[tuple[int, int]], gap: int = COALESCE_GAP) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1] + gap:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def chunk_span(chunk: Any) -> tuple[int, int]:
    """(start, end) byte offsets of a Parquet column chunk; its dictionary page, when it has one, comes first."""
    start = chunk.data_page_offset
    if chunk.has_dictionary_page and 0 < chunk.dictionary_page_offset < start:
        start = chunk.dictionary_page_offset
    return start, start + chunk.total_compressed_size


class RemoteFile:
    """One data file: its size, where it lives, and range reads that name it when they fail."""

    def __init__(self, path: str, size: int, properties: Mapping[str, str], concurrency: int, io: Any = None) -> None:
        self.path = path
        self.size = size
        self.native = arrow_native(path, properties, io)
        self._lock = threading.Lock()
        self._spare_streams: list[Any] = []
        self._properties = properties
        self.pool = io_pool(concurrency)
        self.local_path: str | None = None
        # The whole file's bytes, when ``fetch_whole`` was used; dropped by ``release_whole``.
        self.whole: pa.Buffer | None = None
        if "://" not in path or path.startswith("file:"):
            from fsspec.implementations.local import LocalFileSystem

            self.local_path = LocalFileSystem._strip_protocol(path)

    @cached_property
    def fs(self) -> AbstractFileSystem:
        # Created on first use only: object stores read through their Arrow client never pay for
        # importing and starting the fsspec one.
        return filesystem_for(self.path, self._properties)

    def row_group_source(self) -> RowGroupSource:
        """Where one row group's column chunks are decoded from (see ``RowGroupSource``)."""
        return RowGroupSource(self)

    def _cat(self, start: int, end: int) -> bytes | memoryview:
        if self.native is not None:
            return self._native_cat(start, end)
        try:
            data = self.fs.cat_file(self.path, start=start, end=end)
        except FileNotFoundError:
            raise DataFileError(f"data file {self.path} is missing") from None
        except OSError as exc:
            raise DataFileError(f"data file {self.path} cannot be read ({start}-{end}): {exc}") from exc
        self._check_length(len(data), start, end)
        return bytes(data)

    def _check_length(self, got: int, start: int, end: int) -> None:
        if got != end - start:
            raise DataFileError(
                f"data file {self.path} is shorter than its manifest says: wanted bytes {start}-{end}, "
                f"got {got} (expected size {self.size})"
            )

    def _native_error(self, exc: Exception, start: int, end: int) -> DataFileError:
        """The DataFileError for a failed read through Arrow's native client (missing, or unreadable)."""
        if isinstance(exc, FileNotFoundError) or any(
            mark in str(exc) for mark in ("NoSuchKey", "does not exist", "404")
        ):
            return DataFileError(f"data file {self.path} is missing")
        return DataFileError(f"data file {self.path} cannot be read ({start}-{end}): {exc}")

    def _native_cat(self, start: int, end: int) -> memoryview:
        # Through the pooled handles of _native_read_into: the footer's handle serves the row groups.
        buffer = bytearray(end - start)
        self._native_read_into(memoryview(buffer), start)
        return memoryview(buffer)

    def _native_read_into(self, target: Any, start: int) -> None:
        """Read ``len(target)`` bytes at ``start`` straight into ``target`` (no buffer in between).

        ``read_at`` would allocate a buffer per range, from Arrow's default pool, to be copied once
        more; positioned reads need a handle each, so handles are pooled: one per concurrent read.
        """
        import pyarrow as pa

        wanted = len(target)
        with self._lock:
            stream = self._spare_streams.pop() if self._spare_streams else None
        try:
            if stream is None:
                arrow_fs, arrow_path = self.native  # type: ignore[misc]
                stream = arrow_fs.open_input_file(arrow_path)
            stream.seek(start)
            got = 0
            while got < wanted:
                read = stream.readinto(target[got:])
                if read == 0:
                    break
                got += read
        except (OSError, pa.ArrowException) as exc:
            raise self._native_error(exc, start, start + wanted) from exc
        self._check_length(got, start, start + wanted)
        with self._lock:
            self._spare_streams.append(stream)

    def fetch_whole(self, buffers: WholeFileBuffers) -> None:
        """Fetch the whole file into ``buffers``' memory (maybe an earlier file's of the same read):
        its footer and row groups are then read from there."""
        memory, whole = buffers.take(self.size)
        self.read_ranges_into(memory, [(0, self.size)])
        self.whole = whole

    def release_whole(self) -> None:
        self.whole = None

    def _bytes(self, start: int, end: int) -> bytes | memoryview:
        """Bytes ``start``-``end``: from the whole file when it was fetched, else one range request."""
        if self.whole is not None:
            return memoryview(self.whole)[start:end]
        return self._cat(start, end)

    def footer(self) -> pq.FileMetaData:
        """The Parquet footer, in one request for footers up to FOOTER_GUESS bytes, else two."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.size < 12:
            raise DataFileError(f"data file {self.path} is too small to be Parquet ({self.size} bytes)")
        tail_len = min(self.size, FOOTER_GUESS)
        tail = self._bytes(self.size - tail_len, self.size)
        if tail[-4:] != b"PAR1":
            raise DataFileError(f"data file {self.path} is not Parquet or is truncated (no PAR1 magic at its end)")
        footer_len = int.from_bytes(tail[-8:-4], "little")
        if footer_len + 8 > tail_len:
            if footer_len + 8 > self.size:
                raise DataFileError(f"data file {self.path} is corrupt: footer length {footer_len} exceeds the file")
            tail = self._bytes(self.size - footer_len - 8, self.size)
        try:
            return pq.read_metadata(pa.BufferReader(tail))
        except Exception as exc:
            raise DataFileError(f"data file {self.path} has a corrupt Parquet footer: {exc}") from exc

    def read_ranges_into(self, buffer: pa.Buffer, ranges: Sequence[tuple[int, int]]) -> None:
        """Fetch ``ranges`` in parallel and write each at its own offset into ``buffer``."""
        import numpy as np

        view = np.frombuffer(buffer, dtype=np.uint8)

        def fetch(span: tuple[int, int]) -> None:
            start, end = span
            if self.native is not None:
                self._native_read_into(view[start:end], start)
            else:
                view[start:end] = np.frombuffer(self._cat(start, end), dtype=np.uint8)

        spans = coalesce(ranges)
        if len(spans) == 1:
            fetch(spans[0])
            return
        for future in [self.pool.submit(fetch, span) for span in spans]:
            future.result()


class RowGroupSource:
    """The bytes one row-group read decodes from.

    Remote files: a sparse in-memory buffer into which ``fetch`` writes the requested column chunks,
    fetched in parallel. Local files: the file memory-mapped, so nothing is copied; it is mapped
    per row group and unmapped after, so that streaming reads do not keep a whole file resident.
    """

    def __init__(self, remote: RemoteFile) -> None:
        import pyarrow as pa

        self.remote = remote
        self.buffer: pa.Buffer | None = None
        self.mapped: pa.MemoryMappedFile | None = None
        if remote.local_path is not None:
            try:
                self.mapped = pa.memory_map(remote.local_path)
            except FileNotFoundError:
                raise DataFileError(f"data file {remote.path} is missing") from None
            if self.mapped.size() != remote.size:
                raise DataFileError(
                    f"data file {remote.path} has {self.mapped.size()} bytes, its manifest says {remote.size}"
                )
        elif remote.whole is not None:
            self.buffer = remote.whole
            self.fetched = True
        else:
            self.buffer = sparse_buffer(remote.size)

    fetched = False

    def fetch(self, ranges: Sequence[tuple[int, int]]) -> None:
        if self.buffer is not None and not self.fetched:
            self.remote.read_ranges_into(self.buffer, ranges)

    def reader(self) -> pa.NativeFile:
        import pyarrow as pa

        if self.mapped is not None:
            return self.mapped
        assert self.buffer is not None
        return pa.BufferReader(self.buffer)

    def close(self) -> None:
        # Dropped, not closed: Arrow may hand out zero-copy slices of the mapping (uncompressed
        # pages), which keep it alive; it is unmapped when the last of them goes.
        self.mapped = None
        self.buffer = None


def sparse_buffer(size: int) -> pa.Buffer:
    """An uninitialised, mutable buffer: untouched pages are never committed to memory."""
    import pyarrow as pa

    return pa.allocate_buffer(max(size, 1), memory_pool=data_memory_pool(), resizable=False)


class WholeFileBuffers:
    """The memory one read fetches its files whole into, reused from file to file.

    A file's buffer comes back here once nothing refers to it (its row groups decoded and every
    Arrow slice of it gone), and a file fetched after that is written into the same pages, already
    committed, instead of faulting in fresh ones. Once the read has fetched its last file it closes
    this: the buffers kept are let go of, and those given back later are unmapped at once.
    """

    def __init__(self) -> None:
        self._free: list[pa.Buffer] = []
        self._taking = threading.Lock()
        self.closed = False

    def take(self, size: int) -> tuple[pa.Buffer, pa.Buffer]:
        """(writable memory of at least ``size`` bytes, the ``size``-byte buffer readers are given).

        The memory comes back when the buffer given out, and everything sliced from it, is gone."""
        import pyarrow as pa

        with self._taking:
            fitting = [index for index, memory in enumerate(self._free) if memory.size >= size]
            if fitting:
                memory = self._free.pop(min(fitting, key=lambda index: self._free[index].size))
            else:
                if self._free:
                    # Too small for this file: let the largest go, so that the read never keeps more
                    # buffers than it had in use at once.
                    self._free.pop(max(range(len(self._free)), key=lambda index: self._free[index].size))
                # Room for files a little larger than this one: pages never written are never committed
                # (but for the huge page the file ends in).
                memory = huge_page_buffer(size + size // 16)
        lease = _Lease(self, memory)
        return memory, pa.foreign_buffer(memory.address, size, base=lease)

    def give_back(self, memory: pa.Buffer) -> None:
        # No lock: this may run in any thread, in the middle of a take (a collected reference
        # cycle), and a list's append is atomic; take only pops under its lock.
        if not self.closed:
            self._free.append(memory)

    def close(self) -> None:
        """No more files are fetched: free memory is let go of now, and memory given back later too."""
        self.closed = True
        self._free.clear()


class _Lease:
    """Owns one buffer's memory while readers use it; gives it back when they are done."""

    __slots__ = ("memory", "owner")

    def __init__(self, owner: WholeFileBuffers, memory: pa.Buffer) -> None:
        self.owner = owner
        self.memory = memory

    def __del__(self) -> None:
        self.owner.give_back(self.memory)


def huge_page_buffer(size: int) -> pa.Buffer:
    """An uninitialised, mutable buffer of its own mapping, in transparent huge pages where the host
    offers them on request (as numpy asks for its large arrays); unmapped when the buffer is freed.

    For the files a read fetches whole: each written once, front to back, by the socket's copy. A
    20-file, 880 MB full scan through the S3 protocol in fresh processes (six interleaved rounds):
    1.35 s median and 484k page faults so, 1.84 s and 665k with buffers from the data pool. The
    decoded columns stay in 4 KiB pages (see ``data_memory_pool``): they are written piecemeal by
    several threads over the whole read. Where the host's huge pages must first be compacted, a
    fault may stall; the decoded columns, many times larger, are what that docstring measured.
    """
    import mmap

    import pyarrow as pa

    mapping = mmap.mmap(-1, max(size, 1), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    if advice is not None:
        try:
            mapping.madvise(advice)
        except OSError:  # a kernel without transparent huge pages: 4 KiB pages, as asked for elsewhere
            pass
    return pa.py_buffer(mapping)


@lru_cache(maxsize=1)
def data_memory_pool() -> pa.MemoryPool:
    """The Arrow memory pool that row groups fetched range by range and decoded columns come from
    (files fetched whole have their own mappings: ``huge_page_buffer``).

    jemalloc where this pyarrow has it: Arrow's default mimalloc backs large allocations with
    transparent huge pages, and on Linux hosts that set THP to ``madvise`` each fresh 2 MiB page
    may stall the faulting thread in memory compaction. A scan allocating gigabytes in a fresh
    process then spends more time in the kernel than decoding (measured: 3-5 s of system time per
    2 GiB read, against 1 s with jemalloc's 4 KiB pages). Only this package's allocations use it;
    the process's default pool is left alone.
    """
    import pyarrow as pa

    try:
        return pa.jemalloc_memory_pool()
    except NotImplementedError:
        return pa.default_memory_pool()


def properties_of(io: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in getattr(io, "properties", {}).items()}
