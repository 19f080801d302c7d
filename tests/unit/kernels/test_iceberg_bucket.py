"""iceberg_bucket: native and reference against pyiceberg's BucketTransform for every value."""

from __future__ import annotations

from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyiceberg.transforms import BucketTransform
from pyiceberg.types import (
    BinaryType,
    DateType,
    FixedType,
    IntegerType,
    LongType,
    StringType,
    TimestampNanoType,
    TimestampType,
    TimestamptzType,
    TimeType,
)

from airflow_provider_mlp.kernels import native, reference

SETTINGS = settings(max_examples=100, deadline=None)
BUCKET_COUNTS = st.sampled_from([1, 2, 7, 16, 1000, 2147483647])
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
INT32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)


def pyiceberg_buckets(values: list[Any], source_type: Any, num_buckets: int) -> list[int | None]:
    transform = BucketTransform(num_buckets).transform(source_type)
    return [transform(value) for value in values]


def buckets(impl: Any, values: Any, num_buckets: int, **kwargs: Any) -> list[int | None]:
    result = pa.array(impl.iceberg_bucket(values, num_buckets, **kwargs))
    assert result.type == pa.int32()
    return list(result.to_pylist())


@SETTINGS
@given(values=st.lists(st.one_of(st.none(), INT64), max_size=40), num_buckets=BUCKET_COUNTS)
def test_longs(values: list[int | None], num_buckets: int) -> None:
    expected = pyiceberg_buckets(values, LongType(), num_buckets)
    for impl in (native, reference):
        assert buckets(impl, pa.array(values, type=pa.int64()), num_buckets) == expected


@SETTINGS
@given(values=st.lists(st.one_of(st.none(), INT32), max_size=40), num_buckets=BUCKET_COUNTS)
def test_ints_hash_as_longs(values: list[int | None], num_buckets: int) -> None:
    expected = pyiceberg_buckets(values, IntegerType(), num_buckets)
    for impl in (native, reference):
        assert buckets(impl, pa.array(values, type=pa.int32()), num_buckets) == expected


@pytest.mark.parametrize(
    ("arrow_type", "low", "high"),
    [(pa.int8(), -128, 127), (pa.int16(), -(2**15), 2**15 - 1), (pa.uint8(), 0, 255), (pa.uint16(), 0, 65535)]
    + [(pa.uint32(), 0, 2**32 - 1)],
    ids=str,
)
def test_small_and_unsigned_integers(impl: Any, arrow_type: Any, low: int, high: int) -> None:
    values = [low, high, 0, 1, None, (low + high) // 2]
    assert buckets(impl, pa.array(values, type=arrow_type), 16) == pyiceberg_buckets(values, LongType(), 16)


@SETTINGS
@given(values=st.lists(st.one_of(st.none(), st.text(max_size=30)), max_size=30), num_buckets=BUCKET_COUNTS)
def test_strings_hash_their_utf8_bytes(values: list[str | None], num_buckets: int) -> None:
    expected = pyiceberg_buckets(values, StringType(), num_buckets)
    for string_type in (pa.string(), pa.large_string(), pa.string_view()):
        for impl in (native, reference):
            assert buckets(impl, pa.array(values, type=string_type), num_buckets) == expected


@SETTINGS
@given(values=st.lists(st.one_of(st.none(), st.binary(max_size=30)), max_size=30), num_buckets=BUCKET_COUNTS)
def test_binary(values: list[bytes | None], num_buckets: int) -> None:
    expected = pyiceberg_buckets(values, BinaryType(), num_buckets)
    for binary_type in (pa.binary(), pa.large_binary(), pa.binary_view()):
        for impl in (native, reference):
            assert buckets(impl, pa.array(values, type=binary_type), num_buckets) == expected


def test_fixed_size_binary(impl: Any) -> None:
    values = [b"0123456789abcdef", None, bytes(16), b"\xff" * 16]
    expected = pyiceberg_buckets(values, FixedType(16), 16)
    assert buckets(impl, pa.array(values, type=pa.binary(16)), 16) == expected


@SETTINGS
@given(values=st.lists(st.one_of(st.none(), INT32), max_size=30), num_buckets=BUCKET_COUNTS)
def test_dates_hash_days(values: list[int | None], num_buckets: int) -> None:
    expected = pyiceberg_buckets(values, DateType(), num_buckets)
    for impl in (native, reference):
        assert buckets(impl, pa.array(values, type=pa.int32()).cast(pa.date32()), num_buckets) == expected
        as_date64 = pa.array([None if v is None else v * 86_400_000 for v in values], type=pa.int64())
        assert buckets(impl, as_date64.cast(pa.date64()), num_buckets) == expected


MICROS = st.integers(min_value=-(2**62), max_value=2**62)


@SETTINGS
@given(values=st.lists(st.one_of(st.none(), MICROS), max_size=30), num_buckets=BUCKET_COUNTS)
def test_timestamps_hash_micros(values: list[int | None], num_buckets: int) -> None:
    expected = pyiceberg_buckets(values, TimestampType(), num_buckets)
    assert pyiceberg_buckets(values, TimestamptzType(), num_buckets) == expected
    raw = pa.array(values, type=pa.int64())
    for impl in (native, reference):
        assert buckets(impl, raw.cast(pa.timestamp("us")), num_buckets) == expected
        assert buckets(impl, raw.cast(pa.timestamp("us", tz="UTC")), num_buckets) == expected


@SETTINGS
@given(values=st.lists(st.one_of(st.none(), INT64), max_size=30), num_buckets=BUCKET_COUNTS)
def test_nanosecond_timestamps_floor_to_micros(values: list[int | None], num_buckets: int) -> None:
    expected = pyiceberg_buckets(values, TimestampNanoType(), num_buckets)
    for impl in (native, reference):
        assert buckets(impl, pa.array(values, type=pa.int64()).cast(pa.timestamp("ns")), num_buckets) == expected


def test_second_and_millisecond_units_scale_to_micros(impl: Any) -> None:
    seconds = [0, 1, -1, 1_700_000_000, None]
    micros = [None if v is None else v * 1_000_000 for v in seconds]
    expected = pyiceberg_buckets(micros, TimestampType(), 16)
    assert buckets(impl, pa.array(seconds, type=pa.int64()).cast(pa.timestamp("s")), 16) == expected
    millis = [None if v is None else v * 1000 for v in seconds]
    assert buckets(impl, pa.array(millis, type=pa.int64()).cast(pa.timestamp("ms")), 16) == expected


def test_times_hash_micros(impl: Any) -> None:
    micros = [0, 1, 86_399_999_999, None, 45_296_000_000]
    expected = pyiceberg_buckets(micros, TimeType(), 16)
    assert buckets(impl, pa.array(micros, type=pa.int64()).cast(pa.time64("us")), 16) == expected
    nanos = [None if v is None else v * 1000 + 999 for v in micros]
    assert buckets(impl, pa.array(nanos, type=pa.int64()).cast(pa.time64("ns")), 16) == expected
    millis = [None if v is None else v // 1000 for v in micros]
    expected_millis = pyiceberg_buckets([None if v is None else v * 1000 for v in millis], TimeType(), 16)
    assert buckets(impl, pa.array(millis, type=pa.int32()).cast(pa.time32("ms")), 16) == expected_millis


def test_spec_example_values(impl: Any) -> None:
    # The hash values the Iceberg spec lists for its appendix B examples.
    assert reference.murmur3_32((34).to_bytes(8, "little")) == 2017239379
    assert reference.murmur3_32(b"iceberg") == 1210000089
    assert buckets(impl, pa.array([34], type=pa.int64()), 2147483647) == [2017239379 % 2147483647]
    assert buckets(impl, pa.array(["iceberg"]), 2147483647) == [1210000089]


def test_slices_chunks_and_polars(impl: Any) -> None:
    values = [i * 7919 - 40_000 if i % 9 else None for i in range(200)]
    expected = pyiceberg_buckets(values, LongType(), 16)
    array = pa.array(values, type=pa.int64())
    assert buckets(impl, array.slice(13, 101), 16) == expected[13:114]
    chunked = pa.chunked_array([values[:3], [], values[3:150], values[150:]], type=pa.int64())
    assert buckets(impl, chunked, 16) == expected
    assert buckets(impl, chunked.slice(5, 190), 16) == expected[5:195]
    names = [f"name-{i}" if i % 4 else None for i in range(50)]
    assert buckets(impl, pl.Series(names), 8) == pyiceberg_buckets(names, StringType(), 8)
    assert buckets(impl, pl.Series(values), 16) == expected


def test_results_do_not_depend_on_threads() -> None:
    values = pa.chunked_array(
        [pa.array(range(0, 30_001)), pa.array([None, 5] * 5000), pa.array(range(-9999, 0))], type=pa.int64()
    )
    strings = values.cast(pa.string())
    for column in (values, strings):
        single = pa.array(native.iceberg_bucket(column, 16, threads=1))
        assert single.null_count == 5000
        for threads in (2, 3, 8):
            assert pa.array(native.iceberg_bucket(column, 16, threads=threads)).equals(single)
