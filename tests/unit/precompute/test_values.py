"""Bulk msgpack encoding of value columns: every type round-trips, bytes equal msgpack's own."""

from __future__ import annotations

import datetime
import decimal

import msgpack
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_mlp.precompute.errors import CacheInputError
from airflow_provider_mlp.precompute.ragged import Pool, gather, split
from airflow_provider_mlp.precompute.values import array_header, check_value_type, decode_row, encode_rows


def _encoded(table: pa.Table) -> list[bytes]:
    pool = Pool()
    pieces = encode_rows(pool, [table.column(c).combine_chunks() for c in table.column_names])
    data, offsets = gather(pool.array(), pieces)
    header = array_header(table.num_columns)
    return [header + row for row in split(data, offsets)]


@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
            st.one_of(st.none(), st.text(max_size=300)),
            st.one_of(st.none(), st.floats(allow_nan=False)),
            st.one_of(st.none(), st.lists(st.one_of(st.none(), st.integers(-1000, 1000)), max_size=20)),
            st.one_of(st.none(), st.binary(max_size=40)),
            st.one_of(st.none(), st.booleans()),
        ),
        min_size=1,
        max_size=30,
    )
)
@settings(max_examples=80, deadline=None)
def test_bytes_equal_msgpack_packb(rows: list[tuple]) -> None:
    table = pa.table(
        {
            "i": pa.array([r[0] for r in rows], pa.int64()),
            "s": pa.array([r[1] for r in rows], pa.string()),
            "f": pa.array([r[2] for r in rows], pa.float64()),
            "l": pa.array([r[3] for r in rows], pa.list_(pa.int64())),
            "b": pa.array([r[4] for r in rows], pa.binary()),
            "t": pa.array([r[5] for r in rows], pa.bool_()),
        }
    )
    assert _encoded(table) == [msgpack.packb(list(r), use_bin_type=True) for r in rows]


def test_every_type_round_trips_also_from_a_slice() -> None:
    n = 12
    table = pa.table(
        {
            "u8": pa.array([0, 255, None] * 4, pa.uint8()),
            "u64": pa.array([2**64 - 1, 0, 300] * 4, pa.uint64()),
            "i32": pa.array([-(2**31), 2**31 - 1, None] * 4, pa.int32()),
            "f32": pa.array([0.5, None, -2.0] * 4, pa.float32()),
            "str": pa.array(["", "x" * 40, "y" * 70_000] * 4, pa.large_string()),
            "nested": pa.array([[["a"], []], None, [["b", None]]] * 4),
            "struct": pa.array([{"x": 1, "y": "a"}, None, {"x": None, "y": "b"}] * 4),
            "map": pa.array([[("k", 1)], None, []] * 4, pa.map_(pa.string(), pa.int64())),
            "date": pa.array([datetime.date(2024, 1, 2)] * n),
            "ts": pa.array([datetime.datetime(2024, 1, 2, 3, 4, 5)] * n, pa.timestamp("s")),
            "dec": pa.array([decimal.Decimal("1.25")] * n, pa.decimal128(5, 2)),
            "null": pa.array([None] * n, pa.null()),
            "dict": pa.array(["a", "b", "a"] * 4).dictionary_encode(),
        }
    )
    for part in (table, table.slice(4, 5)):
        expected = part.to_pylist()
        for raw, want in zip(_encoded(part), expected, strict=True):
            got = decode_row(raw, part.column_names)
            want["date"] = want["date"].isoformat()
            want["ts"] = "2024-01-02 03:04:05"
            want["dec"] = "1.25"
            want["map"] = None if want["map"] is None else dict(want["map"])
            assert got == want


def test_unsupported_value_types_are_refused_by_name() -> None:
    with pytest.raises(CacheInputError, match="value column 'wait' has type duration"):
        check_value_type("wait", pa.duration("s"))
    with pytest.raises(CacheInputError, match="'s.d'"):
        check_value_type("s", pa.struct([("d", pa.duration("s"))]))
