"""The memory a read fetches its files whole into: reused once readers let go, never while they hold it."""

from __future__ import annotations

import gc

import numpy as np
import pyarrow as pa

from airflow_provider_mlp.fastdata.fetch import WholeFileBuffers, huge_page_buffer


def _filled(buffers: WholeFileBuffers, size: int, byte: int) -> tuple[int, pa.Buffer]:
    memory, given = buffers.take(size)
    np.frombuffer(memory, dtype=np.uint8)[:size] = byte
    return memory.address, given


def test_the_buffer_given_out_has_the_size_asked_and_the_bytes_written() -> None:
    buffers = WholeFileBuffers()
    _, given = _filled(buffers, 1000, 7)
    assert given.size == 1000
    assert given.to_pybytes() == bytes([7]) * 1000


def test_memory_let_go_of_is_written_again_by_the_next_file() -> None:
    buffers = WholeFileBuffers()
    first, given = _filled(buffers, 1 << 20, 1)
    del given
    second, given = _filled(buffers, 1 << 20, 2)
    assert second == first
    assert given.to_pybytes() == bytes([2]) * (1 << 20)


def test_memory_still_sliced_by_a_reader_is_not_reused() -> None:
    buffers = WholeFileBuffers()
    first, given = _filled(buffers, 4096, 1)
    kept = given.slice(100, 10)  # as an Arrow array over the bytes would hold it
    del given
    gc.collect()
    second, other = _filled(buffers, 4096, 2)
    assert second != first
    assert kept.to_pybytes() == bytes([1]) * 10
    del kept, other
    third, given = _filled(buffers, 4096, 3)
    fourth, _ = _filled(buffers, 4096, 4)
    assert {third, fourth} == {first, second}  # both free again: no third allocation


def test_a_larger_file_gets_new_memory_and_the_smaller_free_buffer_is_let_go() -> None:
    buffers = WholeFileBuffers()
    small, given = _filled(buffers, 4096, 1)
    del given
    large, given = _filled(buffers, 1 << 20, 2)
    assert large != small
    del given
    assert buffers._free and all(memory.address != small for memory in buffers._free)
    # A file a little larger than the one its memory was made for still fits it.
    again, _ = _filled(buffers, (1 << 20) + 1000, 3)
    assert again == large


def test_a_huge_page_buffer_is_writable_and_as_large_as_asked() -> None:
    buffer = huge_page_buffer(3 << 20)
    assert buffer.is_mutable and buffer.size == 3 << 20
    view = np.frombuffer(buffer, dtype=np.uint8)
    view[:] = 5
    assert int(view.sum()) == 5 * (3 << 20)
    assert huge_page_buffer(0).size == 1  # an empty file still gets a mapping


def test_closed_buffers_keep_no_memory_given_back() -> None:
    buffers = WholeFileBuffers()
    first, given = _filled(buffers, 4096, 1)
    _, other = _filled(buffers, 4096, 2)
    del other
    assert len(buffers._free) == 1
    buffers.close()  # the read's last file is fetched
    assert buffers._free == []
    del given
    assert buffers._free == []  # unmapped, not kept for a fetch that will not come
