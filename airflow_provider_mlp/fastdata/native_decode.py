"""Flat columns decoded by the native kernel straight into the Arrow arrays a read returns.

The projected schema of a read (pyiceberg's) has ``large_string`` and ``large_binary``. polars, the
fastest general decoder here, decodes strings into views, and turning those into large strings is a
second pass over every value into memory allocated a second time: for a string-heavy scan it was
most of what separated this reader from polars' own scan. ``decode_parquet_column`` (in
``airflow_provider_mlp.kernels``) decodes each page of a flat string, binary, int, long, float,
double, date, time or timestamp column (the last two as their integers, viewed as their types) into
the output's layout while the page is in cache; the file's other columns are decoded by polars (or
Arrow), and a file none of whose columns need them is read by the kernel alone, without a second
decoder's setup.

It is used with the polars decoder (``decoder="auto"`` when polars is installed; ``"pyarrow"`` keeps
Arrow's decode throughout), only where it gives the same result with less work: runs without a
filter or positional deletes, or runs with them all of whose columns the kernel decodes (then the
filter's columns are decoded first and the others only at the rows the filter keeps and the deletes
leave, see ``read_selected``, as polars does while decoding; but numbers alone under a filter polars
applies while decoding are left to polars, faster there); not for ``string_view`` reads (polars'
views are the output then) nor for dictionary columns, and on bytes at hand: local files, memory-
mapped, and remote ones fetched whole. Pages compressed with a codec pyarrow has (all but LZ4, whose
two framings pyarrow's metadata does not tell apart) are decompressed by pyarrow's ``Codec``; zstd
pages by the kernel itself through the system's libzstd (without the GIL and without a call into
Python for each page; see ``zstd_in_kernel``), or else by zstandard, which keeps its context too;
either decompresses into memory the kernel gives it: plain pages of numbers, dates, times and
timestamps straight into the output arrays, without the copy out of a decompressed page. Whatever
the kernel refuses (an encoding it does not decode, a corrupt page) is decoded by polars or Arrow
instead; they name the file if it is corrupt.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

    from airflow_provider_mlp.fastdata.reader import OpenFile

# Parquet's codec names (as pyarrow's ColumnChunkMetaData.compression gives them) to pyarrow's
# Codec names; UNCOMPRESSED needs none. pyarrow reports both LZ4 framings (Hadoop's and raw) as
# "LZ4", so those chunks are left to the other decoders.
CODECS = {
    "UNCOMPRESSED": None,
    "SNAPPY": "snappy",
    "GZIP": "gzip",
    "BROTLI": "brotli",
    "ZSTD": "zstd",
}


@dataclass(frozen=True)
class NativeColumn:
    """How one projected column is stored, when the kernel decodes it: its one Parquet leaf, the
    Arrow type the kernel decodes it to (the type Arrow's own decode of the leaf has, strings large)
    and, for timestamps and times, the type its arrays are then viewed as (their values as stored,
    not converted: the view costs nothing)."""

    leaf: int
    arrow_type: str
    max_definition_level: int
    view_type: pa.DataType | None = None


def _kind(physical_type: str, logical_type: str, arrow_type: pa.DataType) -> tuple[str, pa.DataType | None] | None:
    """The kernel's ``arrow_type`` for a leaf, and the type its arrays are viewed as (or None)."""
    import pyarrow as pa

    t = pa.types
    if physical_type == "BYTE_ARRAY":
        if logical_type == "STRING" and (t.is_string(arrow_type) or t.is_large_string(arrow_type)):
            return "large_string", None
        if logical_type == "NONE" and (t.is_binary(arrow_type) or t.is_large_binary(arrow_type)):
            return "large_binary", None
        return None
    # Timestamps and times are their integers, in the unit Arrow's type for the leaf has (the one
    # the file states, as Arrow reads them); INT96 timestamps are not INT64 leaves.
    if physical_type == "INT64" and (t.is_timestamp(arrow_type) or t.is_time64(arrow_type)):
        return "int64", arrow_type
    if physical_type == "INT32" and t.is_time32(arrow_type):
        return "int32", arrow_type
    # By the Arrow type Arrow gives the leaf: an INT32 leaf read as int8, uint32 or a decimal, say,
    # is left to the other decoders.
    kinds = {
        "INT32": {pa.int32(): ("int32", None), pa.date32(): ("date32", None)},
        "INT64": {pa.int64(): ("int64", None)},
        "FLOAT": {pa.float32(): ("float32", None)},
        "DOUBLE": {pa.float64(): ("float64", None)},
    }
    return kinds.get(physical_type, {}).get(arrow_type)


def native_columns(parquet: Any, physical_schema: pa.Schema, columns: Sequence[str]) -> dict[str, NativeColumn]:
    """The ``columns`` the kernel decodes: top-level columns, optional or required, of the types
    ``decode_parquet_column`` produces (see ``_kind``)."""
    found: dict[str, NativeColumn] = {}
    wanted = set(columns)
    for leaf in range(parquet.num_columns):
        column = parquet.schema.column(leaf)
        name = column.path
        if name not in wanted or column.max_repetition_level != 0 or column.max_definition_level > 1:
            continue
        index = physical_schema.get_field_index(name)
        if index < 0:
            continue
        kind = _kind(column.physical_type, column.logical_type.type, physical_schema.field(index).type)
        if kind is not None:
            arrow_type, view_type = kind
            found[name] = NativeColumn(leaf, arrow_type, column.max_definition_level, view_type)
    return found


class NativeDecodeError(Exception):
    """The kernel could not decode a column chunk: the caller decodes the run another way."""


# Freed output buffers the kernel keeps for the next read (see native/buffer_cache.c) go back to
# the system once they have been free this long, checked this often by one daemon thread that runs
# while the cache holds anything.
BUFFER_CACHE_DECAY_S = 10.0

_TRIM_LOCK = threading.Lock()
_trimming = False  # a trimming thread runs
_used = False  # the kernel decoded since that thread last looked
_WAKE = threading.Event()  # set: the thread looks now instead of at the end of its wait


def keep_trimming() -> None:
    """Make sure the thread giving cached output buffers back to the system runs."""
    global _trimming, _used
    with _TRIM_LOCK:
        _used = True
        if _trimming:
            return
        _trimming = True
    try:
        threading.Thread(target=_trim_while_held, name="mlp-buffer-cache-trim", daemon=True).start()
    except BaseException:
        with _TRIM_LOCK:
            _trimming = False  # the next read tries again
        raise


def _trim_while_held() -> None:
    global _trimming, _used
    from airflow_provider_mlp.kernels import buffer_cache_info, trim_buffer_cache

    try:
        while True:
            _WAKE.wait(BUFFER_CACHE_DECAY_S)
            _WAKE.clear()
            trim_buffer_cache(older_than=BUFFER_CACHE_DECAY_S)
            info = buffer_cache_info()
            with _TRIM_LOCK:
                # Buffers still held by arrays are cached when freed: keep looking until none is.
                if not _used and not info["retained_bytes"] and not info["outstanding_bytes"]:
                    _trimming = False
                    return
                _used = False
    except BaseException:
        with _TRIM_LOCK:
            _trimming = False  # whatever stopped this thread, the next read starts another
        raise


def _after_fork_in_child() -> None:
    # The parent's thread is not in the child (the next read starts one), and a lock it held at the
    # fork would stay held: both made afresh.
    global _TRIM_LOCK, _WAKE, _trimming
    _TRIM_LOCK = threading.Lock()
    _WAKE = threading.Event()
    _trimming = False


os.register_at_fork(after_in_child=_after_fork_in_child)


_THREAD = threading.local()


def _per_thread(key: str, make: Any) -> Any:
    """This thread's ``make()``, made once: decompressors are not thread-safe (zstandard's, and pyarrow's
    gzip Codec, which keeps one zlib stream that each call reuses without the GIL)."""
    made = _THREAD.__dict__.get(key)
    if made is None:
        made = _THREAD.__dict__[key] = make()
    return made


def _zstd_decompress_into(data: memoryview, size: int, out: memoryview) -> int:
    """Decompress a zstd page straight into ``out`` (the output array itself, for plain fixed-width
    values: see ``decode_parquet_column``'s ``decompress_into``); the bytes written."""
    # zstandard's decompressor keeps its context from page to page (pyarrow's Codec makes one per
    # call and has no way to decompress into given memory). It releases the GIL while it works.
    import zstandard

    decompressor = _per_thread("zstd", zstandard.ZstdDecompressor)
    try:
        with decompressor.stream_reader(data) as reader:
            written = 0
            while written < size:
                got = reader.readinto(out[written:])
                if not got:
                    break
                written += got
            if written == size and reader.read(1):
                written += 1  # more than the page header says: the kernel names the page
    except zstandard.ZstdError as exc:  # as pyarrow's Codec says it, so that callers catch one type
        raise OSError(f"zstd: {exc}") from exc
    return written


def _decompressors(codec: str) -> dict[str, Any]:
    """How the kernel decompresses pages of ``codec`` (pyarrow's name): ``zstd`` itself, through the
    system's libzstd, when it has one, else ``decompress_into`` or ``decompress``."""
    if codec == "zstd":
        return {"zstd": True} if zstd_in_kernel() else {"decompress_into": _zstd_decompress_into}
    return {"decompress": _codec_decompressors(codec)}


@cache
def zstd_in_kernel() -> bool:
    """Whether the kernel decompresses zstd pages itself (``decode_parquet_column(zstd=True)``): without
    the GIL and a Python call per page, which zstandard's decompressor costs. It does when it could load
    libzstd (``zstd_library_version()``); without one, zstandard decompresses them."""
    from airflow_provider_mlp.kernels import native

    return native.zstd_library_version() is not None


@cache
def _codec_decompressors(codec: str) -> Any:
    import pyarrow as pa

    from airflow_provider_mlp.fastdata.fetch import data_memory_pool

    pool = data_memory_pool()

    def decompress(data: memoryview, size: int) -> pa.Buffer:
        compressor = _per_thread(f"codec-{codec}", lambda: pa.Codec(codec))
        return compressor.decompress(data, size, memory_pool=pool)

    return decompress


def usable(opened: OpenFile, row_groups: Sequence[int]) -> bool:
    """Whether the kernel decodes the run of ``row_groups``: bytes at hand, no filter, no deletes there
    (see the module's text)."""
    if not opened.native_columns or opened.string_view:
        return False
    if opened.remote.local_path is None and opened.remote.whole is None:
        return False  # remote row groups fetched range by range: Arrow reads them as they come
    return opened.pyarrow_filter is None and opened.polars_filter is None and not _deletes_in(opened, row_groups)


def _deletes_in(opened: OpenFile, row_groups: Sequence[int]) -> bool:
    """Whether positional deletes remove rows of the run of ``row_groups``."""
    import numpy as np

    if opened.deletes is None or not len(opened.deletes):
        return False
    start, end = opened.row_offsets[row_groups[0]], opened.row_offsets[row_groups[-1] + 1]
    lo, hi = np.searchsorted(opened.deletes, [start, end])
    return bool(hi > lo)


def decode_chunk(
    file_bytes: pa.Buffer, chunk: Any, column: NativeColumn, selection: tuple[pa.Buffer, int] | None = None
) -> list[pa.Array]:
    """One column chunk (pyarrow's ``ColumnChunkMetaData``) of the file whose bytes are ``file_bytes``, by
    the kernel (as arrays of at most 8 MiB a buffer, from the kernel's buffer cache: see
    ``keep_trimming``); with ``selection`` (a bitmap of the chunk's rows and how many it keeps), only
    the rows it keeps."""
    import pyarrow as pa

    from airflow_provider_mlp.kernels import ArrowKernelError, decode_parquet_column

    if chunk.compression not in CODECS:
        raise NativeDecodeError(f"codec {chunk.compression}")
    codec = CODECS[chunk.compression]
    start = chunk.data_page_offset
    if chunk.has_dictionary_page and 0 < chunk.dictionary_page_offset < start:
        start = chunk.dictionary_page_offset
    size = chunk.total_compressed_size
    if start < 0 or size < 0 or start + size > file_bytes.size:
        raise NativeDecodeError(
            f"the column chunk at bytes {start}-{start + size} runs outside the {file_bytes.size}-byte file"
        )
    try:
        results = decode_parquet_column(
            # A slice, not a copy: of the file's mapping, or of the bytes fetched.
            file_bytes.slice(start, size),
            chunk.num_values,
            column.arrow_type,
            max_definition_level=column.max_definition_level,
            selection=None if selection is None else selection[0],
            **({} if codec is None else _decompressors(codec)),
        )
    except (ArrowKernelError, OSError, pa.ArrowException) as exc:
        raise NativeDecodeError(str(exc)) from exc
    arrays = [pa.array(result) for result in results]
    if column.view_type is not None:
        arrays = [array.view(column.view_type) for array in arrays]
    return arrays


_POOL_LOCK = threading.Lock()
_POOL: list[ThreadPoolExecutor] = []


def _column_pool() -> ThreadPoolExecutor:
    """Threads decoding column chunks, one per core: the kernel releases the GIL while it decodes, so a
    run of one file (a shard of one file, a streamed row group) uses every core, as polars' and
    Arrow's decoders do. Its tasks never wait on one another, so readers' threads may share it."""
    with _POOL_LOCK:  # streaming readers' threads may ask for it at once: one pool
        if not _POOL:
            _POOL.append(ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="mlp-native-decode"))
        return _POOL[0]


def read_columns(opened: OpenFile, row_groups: Sequence[int], spread: bool = True) -> dict[str, pa.ChunkedArray]:
    """Every native column of the file over ``row_groups``, each row group's chunk as one or more arrays;
    with ``spread``, the chunks over every core, else all on this thread (for reads that decode files
    side by side already: the 20-file benchmark table read through the shared pool took 0.83 s instead
    of 0.70, best of 3, and its 2-column projection 0.35 s instead of 0.27)."""
    import pyarrow as pa

    keep_trimming()
    mapped = None
    file_bytes = opened.remote.whole
    if file_bytes is None:
        try:
            mapped = pa.memory_map(opened.remote.local_path)
            file_bytes = mapped.read_buffer()  # the whole mapping, not copied
        except OSError as exc:  # missing, say: the other decoders name the file
            if mapped is not None:
                mapped.close()
            raise NativeDecodeError(str(exc)) from exc
    jobs = [(rg, name, column) for rg in row_groups for name, column in opened.native_columns.items()]

    def decode(job: tuple[int, str, NativeColumn]) -> list[pa.Array]:
        rg, name, column = job
        group = opened.parquet.row_group(rg)
        arrays = decode_chunk(file_bytes, group.column(column.leaf), column)
        if sum(len(array) for array in arrays) != group.num_rows:
            # The column chunk's value count disagrees with the row group's: corrupt metadata.
            raise NativeDecodeError(f"column {name} of row group {rg} is not {group.num_rows} values long")
        return arrays

    futures: list[Future[list[pa.Array]]] = []
    try:
        decoded: dict[str, list[pa.Array]] = {name: [] for name in opened.native_columns}
        if spread and len(jobs) > 1:
            pool = _column_pool()
            futures = [pool.submit(decode, job) for job in jobs]
            results = [future.result() for future in futures]
        else:
            results = [decode(job) for job in jobs]
        for (_, name, _), arrays in zip(jobs, results, strict=True):
            decoded[name].extend(arrays)
    finally:
        # After a failure, no task still reads from the file when it is closed.
        for future in futures:
            future.cancel()
        wait(futures)
        if mapped is not None:
            mapped.close()
    return {name: pa.chunked_array(arrays, arrays[0].type) for name, arrays in decoded.items()}


def selectable(opened: OpenFile, row_groups: Sequence[int]) -> bool:
    """Whether the kernel decodes the run of ``row_groups`` under its filter or deletes (see
    ``read_selected``): every column of the file's read is one the kernel decodes, bytes at hand; and,
    where polars would apply the filter while decoding the file, a string or binary column is read
    at the rows kept."""
    if opened.string_view or not opened.native_columns:
        return False
    if opened.pyarrow_filter is None and not _deletes_in(opened, row_groups):
        return False  # (read_columns reads it)
    if opened.remote.local_path is None and opened.remote.whole is None:
        return False
    if not all(name in opened.native_columns for name in opened.columns):
        return False
    if opened.polars_source is None or opened.pyarrow_filter is None or opened.polars_filter is None:
        # The other ways are no faster: Arrow's filtered decode is slower, and polars decoding every
        # row for Arrow to filter after (a filter polars is not given: on a timestamp, say) was at
        # parity over numbers alone (8M rows, 5 % kept: 0.232 s median against the kernel's 0.230 s)
        # and materialises every string; for deletes alone polars' path was not measured faster.
        return True
    # The selection pays where it leaves strings unmaterialised. Over numbers alone, polars'
    # filtered decode was faster: 8M rows of a long, a double and a timestamp filtered on the double
    # (10 % kept), 0.146 s median through polars and 0.168 s through the kernel.
    _, rest = _filter_columns_first(opened)
    return any(opened.native_columns[name].arrow_type in ("large_string", "large_binary") for name in rest)


def _filter_columns_first(opened: OpenFile) -> tuple[list[str], list[str]]:
    """The read's columns the filter needs (decoded whole, to evaluate it) and the rest (decoded at the
    rows it keeps)."""
    filtered = opened.pyarrow_filter is not None
    first = [name for name in opened.columns if filtered and name in opened.filter_columns]
    return first, [name for name in opened.columns if name not in first]


def _file_bytes(opened: OpenFile) -> tuple[pa.Buffer, Any]:
    """The file's bytes (fetched whole, or its memory map, not copied) and the map to close (or None)."""
    import pyarrow as pa

    if opened.remote.whole is not None:
        return opened.remote.whole, None
    mapped = None
    try:
        mapped = pa.memory_map(opened.remote.local_path)
        return mapped.read_buffer(), mapped
    except OSError as exc:  # missing, say: the other decoders name the file
        if mapped is not None:
            mapped.close()
        raise NativeDecodeError(str(exc)) from exc


def _run_jobs(jobs: list[Any], decode: Any, spread: bool) -> list[Any]:
    """``decode`` of every job, over the column pool with ``spread``; after a failure, no task still runs."""
    futures: list[Future[Any]] = []
    try:
        if spread and len(jobs) > 1:
            pool = _column_pool()
            futures = [pool.submit(decode, job) for job in jobs]
            return [future.result() for future in futures]
        return [decode(job) for job in jobs]
    finally:
        for future in futures:
            future.cancel()
        wait(futures)


def _selection(opened: OpenFile, rg: int, head: pa.Table) -> pa.Array:
    """The row group's rows its filter keeps and its deletes leave, as a boolean array without nulls."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.acero as acero
    import pyarrow.compute as pc

    rows = opened.parquet.row_group(rg).num_rows
    keep = None
    if opened.pyarrow_filter is not None:
        source = head if head.num_columns else pa.table({"_": pa.nulls(rows, pa.int8())})
        # Evaluated, not applied: the mask selects the other columns' rows in the kernel. One thread,
        # in order (the read's threads already decode files side by side).
        try:
            projected = acero.Declaration.from_sequence(
                [
                    acero.Declaration("table_source", acero.TableSourceNodeOptions(source)),
                    acero.Declaration("project", acero.ProjectNodeOptions([opened.pyarrow_filter], ["keep"])),
                ]
            ).to_table(use_threads=False)
        except pa.ArrowException as exc:  # not over the kernel's types, say: the other decoders apply it
            raise NativeDecodeError(f"the filter over row group {rg}: {exc}") from exc
        keep = pc.fill_null(projected.column(0), False).combine_chunks()
    if opened.deletes is not None and len(opened.deletes):
        start, end = opened.row_offsets[rg], opened.row_offsets[rg + 1]
        lo, hi = np.searchsorted(opened.deletes, [start, end])
        if hi > lo:
            left = np.ones(end - start, dtype=bool)
            left[opened.deletes[lo:hi] - start] = False
            keep = pa.array(left) if keep is None else pc.and_(keep, pa.array(left))
    if keep is None:
        keep = pa.array(np.ones(rows, dtype=bool))
    if keep.offset:  # the kernel reads the bits from the buffer's first
        keep = pa.concat_arrays([pa.array([], pa.bool_()), keep])
    return keep


def read_selected(opened: OpenFile, row_groups: Sequence[int], spread: bool = True) -> dict[str, pa.ChunkedArray]:
    """Every column of the file over ``row_groups``, only the rows its filter keeps and its deletes leave.

    The filter's columns are decoded whole and the filter evaluated on them; the other columns are
    then decoded by the kernel with that selection (``decode_parquet_column(selection=)``), which
    copies only the rows kept and skips pages none of whose rows is: the rows ruled out are never
    materialised, as polars' and Arrow's filtered reads do not materialise them either.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    keep_trimming()
    file_bytes, mapped = _file_bytes(opened)
    first, rest = _filter_columns_first(opened)

    def decode(job: tuple[int, str, Any]) -> list[pa.Array]:
        rg, name, selection = job
        group = opened.parquet.row_group(rg)
        column = opened.native_columns[name]
        chunk = group.column(column.leaf)
        if chunk.num_values != group.num_rows:  # corrupt metadata: a selection would not tell
            raise NativeDecodeError(f"column {name} of row group {rg} is not {group.num_rows} values long")
        arrays = decode_chunk(file_bytes, chunk, column, selection)
        expected = group.num_rows if selection is None else selection[1]
        if sum(len(array) for array in arrays) != expected:
            raise NativeDecodeError(f"column {name} of row group {rg} is not {expected} values long")
        return arrays

    try:
        heads = _run_jobs([(rg, name, None) for rg in row_groups for name in first], decode, spread)
        decoded: dict[str, list[pa.Array]] = {name: [] for name in opened.columns}
        jobs: list[tuple[int, str, Any]] = []
        for index, rg in enumerate(row_groups):
            per_rg = heads[index * len(first) : (index + 1) * len(first)]
            head = pa.Table.from_arrays([pa.chunked_array(arrays, arrays[0].type) for arrays in per_rg], names=first)
            keep = _selection(opened, rg, head)
            kept = keep.true_count
            for name in first:
                column = head.column(name)
                decoded[name].extend((pc.filter(column, keep) if kept < len(keep) else column).chunks)
            # (Every row kept: decoded without a selection, whole pages at a time.)
            selection = None if kept == len(keep) else (keep.buffers()[1], kept)
            jobs.extend((rg, name, selection) for name in rest if kept)
        for (_, name, _), arrays in zip(jobs, _run_jobs(jobs, decode, spread), strict=True):
            decoded[name].extend(arrays)
    finally:
        if mapped is not None:
            mapped.close()
    return {
        name: pa.chunked_array(arrays, arrays[0].type) if arrays else _empty(opened.native_columns[name])
        for name, arrays in decoded.items()
    }


def _empty(column: NativeColumn) -> pa.ChunkedArray:
    import pyarrow as pa

    return pa.chunked_array([], getattr(pa, column.arrow_type)() if column.view_type is None else column.view_type)
