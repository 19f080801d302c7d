"""The kernels' output buffer cache: freed buffers reused, bounded, trimmed, and fork-safe."""

from __future__ import annotations

import gc
import io
import os
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_mlp.kernels import (
    ArrowKernelError,
    buffer_cache_info,
    decode_parquet_column,
    set_buffer_cache_limit,
    trim_buffer_cache,
)

ROWS = 1_200_000  # a chunk of 8-byte values: buffers of 8 MiB and of about 1.2 MiB, sizes the cache keeps


@pytest.fixture(autouse=True)
def empty_cache() -> Iterator[None]:
    """Each test starts and ends with nothing cached and the default limit."""
    limit = buffer_cache_info()["limit_bytes"]
    # Arrays an earlier test left in reference cycles are freed now, not into a test's counts.
    gc.collect()
    trim_buffer_cache()
    yield
    set_buffer_cache_limit(limit)
    trim_buffer_cache()


def long_chunk(rows: int = ROWS) -> tuple[bytes, int]:
    sink = io.BytesIO()
    pq.write_table(
        pa.table({"v": pa.array(range(rows), pa.int64())}),
        sink,
        compression="NONE",
        use_dictionary=False,
        row_group_size=rows,
    )
    data = sink.getvalue()
    chunk = pq.ParquetFile(io.BytesIO(data)).metadata.row_group(0).column(0)
    start = chunk.data_page_offset
    return data[start : start + chunk.total_compressed_size], chunk.num_values


def decode(chunk: bytes, count: int) -> list[pa.Array]:
    return [pa.array(result) for result in decode_parquet_column(chunk, count, "int64")]


def test_freed_buffers_are_kept_and_handed_out_again() -> None:
    # Buffers other tests' live objects still hold are counted as outstanding too: only the change.
    before = buffer_cache_info()["outstanding_bytes"]
    chunk, count = long_chunk()
    arrays = decode(chunk, count)
    assert pa.chunked_array(arrays).to_pylist() == list(range(ROWS))
    held = buffer_cache_info()
    ours = held["outstanding_bytes"] - before
    assert ours >= 8 * ROWS and held["retained_bytes"] == 0
    del arrays
    freed = buffer_cache_info()
    assert freed["outstanding_bytes"] == before and freed["retained_bytes"] == ours

    again = decode(chunk, count)
    reused = buffer_cache_info()
    assert reused["hits"] - freed["hits"] == freed["retained_blocks"]
    assert reused["misses"] == freed["misses"]
    assert pa.chunked_array(again).to_pylist() == list(range(ROWS))


def test_a_dictionarys_working_memory_comes_from_the_cache_and_goes_back_to_it() -> None:
    # 20,000 distinct strings: a dictionary page of about 480 KB, unpacked into working memory that
    # is the cache's (fresh memory for each column chunk costs a page fault a page), back in it when
    # the call returns while the outputs are still held.
    values = [f"entry-{k:014d}" for k in range(20_000)] * 10
    sink = io.BytesIO()
    pq.write_table(pa.table({"s": values}), sink, compression="NONE", row_group_size=len(values))
    chunk_meta = pq.ParquetFile(io.BytesIO(sink.getvalue())).metadata.row_group(0).column(0)
    assert chunk_meta.has_dictionary_page
    start = chunk_meta.dictionary_page_offset
    chunk = sink.getvalue()[start : start + chunk_meta.total_compressed_size]
    before = buffer_cache_info()
    arrays = [pa.array(r) for r in decode_parquet_column(chunk, len(values), "large_string", max_definition_level=1)]
    held = buffer_cache_info()
    assert held["retained_bytes"] - before["retained_bytes"] >= 20_000 * (4 + 20)  # the dictionary's entries
    assert pa.chunked_array(arrays).to_pylist() == values
    again = [pa.array(r) for r in decode_parquet_column(chunk, len(values), "large_string", max_definition_level=1)]
    assert buffer_cache_info()["hits"] - held["hits"] >= 2  # the dictionary and its offsets, reused
    assert pa.chunked_array(again).to_pylist() == values
    del arrays, again
    assert buffer_cache_info()["outstanding_bytes"] == before["outstanding_bytes"]


def test_trim_gives_back_what_was_freed_long_enough_ago() -> None:
    chunk, count = long_chunk()
    arrays = decode(chunk, count)
    del arrays
    retained = buffer_cache_info()["retained_bytes"]
    assert retained > 0
    assert trim_buffer_cache(older_than=3600) == 0  # freed just now
    assert buffer_cache_info()["retained_bytes"] == retained
    assert trim_buffer_cache() == retained
    assert buffer_cache_info()["retained_bytes"] == 0


def test_the_limit_bounds_what_is_kept() -> None:
    chunk, count = long_chunk()
    arrays = decode(chunk, count)
    del arrays
    assert buffer_cache_info()["retained_blocks"] >= 2
    # Lowering the limit gives back what is beyond it at once; a limit of 0 keeps nothing freed later.
    set_buffer_cache_limit(1 << 20)
    assert buffer_cache_info()["retained_bytes"] <= 1 << 20
    set_buffer_cache_limit(0)
    assert buffer_cache_info()["retained_bytes"] == 0
    before = buffer_cache_info()["outstanding_bytes"]
    arrays = decode(chunk, count)
    assert buffer_cache_info()["outstanding_bytes"] - before >= 8 * ROWS  # (the cache's, not bypassed)
    del arrays
    info = buffer_cache_info()
    assert info["limit_bytes"] == 0 and info["retained_bytes"] == 0 and info["outstanding_bytes"] == before


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ArrowKernelError, match="older_than must be seconds >= 0"):
        trim_buffer_cache(older_than=-1.0)
    with pytest.raises(ArrowKernelError, match="older_than must be seconds >= 0"):
        trim_buffer_cache(older_than=float("nan"))
    with pytest.raises(ArrowKernelError, match="limit_bytes must be >= 0"):
        set_buffer_cache_limit(-1)


# Python 3.12 warns of fork() in a process with threads (pyarrow's, the reader's trimming thread);
# the cache's own lock is what this test is about, and its fork handlers keep the child safe.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_decodes_with_the_cache_it_inherited() -> None:
    chunk, count = long_chunk()
    arrays = decode(chunk, count)
    del arrays  # the child inherits these cached blocks
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: decode through the inherited cache, free, trim; report by exit code
        code = 1
        try:
            values = decode(chunk, count)
            ok = pa.chunked_array(values).to_pylist() == list(range(ROWS))
            del values
            code = 0 if ok and trim_buffer_cache() > 0 else 2
        finally:
            os.write(write, b"x")
            os._exit(code)
    os.close(write)
    os.read(read, 1)
    os.close(read)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert buffer_cache_info()["retained_bytes"] > 0  # the parent's cache is its own
