"""array_stats: the native kernel against its pure-Python reference on every Arrow layout."""

from __future__ import annotations

from typing import Any

import polars as pl
import pyarrow as pa
import pytest

from airflow_provider_mlp.kernels import ArrowKernelError, reference

STRING_TYPES = [pa.string(), pa.large_string(), pa.string_view()]


def test_both_implementations_agree_on_a_plain_array(impl: Any) -> None:
    values = pa.array([1, 2, None, 4, None], type=pa.int64())
    assert impl.array_stats(values) == (5, 2)
    assert impl.array_stats(values) == reference.array_stats(values)


def test_array_without_nulls(impl: Any) -> None:
    assert impl.array_stats(pa.array([1.5, 2.5, 3.5])) == (3, 0)


def test_empty_array(impl: Any) -> None:
    assert impl.array_stats(pa.array([], type=pa.int32())) == (0, 0)


def test_chunked_array_sums_over_chunks(impl: Any) -> None:
    values = pa.chunked_array([[1, None], [], [None, None, 5]], type=pa.int64())
    assert impl.array_stats(values) == (5, 3)


def test_sliced_array_counts_only_the_slice(impl: Any) -> None:
    # The slice starts mid-byte of the validity bitmap, so the offset must be honoured.
    values = pa.array([None, 1, None, 3, 4, None, 6, 7, None, 9, None], type=pa.int64())
    for start, length in [(1, 5), (3, 6), (0, 11), (7, 4), (5, 0)]:
        piece = values.slice(start, length)
        expected = (length, piece.null_count)
        assert impl.array_stats(piece) == expected


@pytest.mark.parametrize("string_type", STRING_TYPES, ids=str)
def test_string_layouts(impl: Any, string_type: pa.DataType) -> None:
    values = pa.array(["a", None, "bé", "a longer string than twelve bytes", None, ""], type=string_type)
    assert impl.array_stats(values) == (6, 2)
    assert impl.array_stats(values.slice(2, 3)) == (3, 1)
    chunked = pa.chunked_array([values.slice(0, 2), values.slice(2)], type=string_type)
    assert impl.array_stats(chunked) == (6, 2)


def test_polars_series(impl: Any) -> None:
    series = pl.Series("title", ["x", None, "y", None, None])
    assert impl.array_stats(series) == (5, 3)
    assert impl.array_stats(pl.Series([1, 2, 3])) == (3, 0)


def test_table_column_stream(impl: Any) -> None:
    table = pa.table({"a": pa.chunked_array([[1, None], [3]])})
    assert impl.array_stats(table["a"]) == (3, 1)


@pytest.mark.parametrize("wrong", [[1, 2, 3], "abc", None, 42], ids=["list", "str", "None", "int"])
def test_wrong_input_type_names_the_argument(impl: Any, wrong: Any) -> None:
    with pytest.raises(ArrowKernelError) as raised:
        impl.array_stats(wrong)
    assert isinstance(raised.value, TypeError)
    assert isinstance(raised.value, ValueError)
    message = str(raised.value)
    assert "'values'" in message
    assert "__arrow_c_array__ or __arrow_c_stream__" in message
    assert type(wrong).__name__ in message
