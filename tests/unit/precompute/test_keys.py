"""Key encoding: bulk (publisher) and one-by-one (reader) agree, keys are safe, reversible, collision-free."""

from __future__ import annotations

import re
from datetime import date

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_mlp.precompute.errors import CacheInputError
from airflow_provider_mlp.precompute.keys import (
    MAX_KEY_BYTES,
    KeySpace,
    canonical_key,
    canonical_keys,
    check_namespace,
    decode_key,
    escape,
    escape_many,
    key_kind,
    unescape,
)

SAFE_KEY = re.compile(rb"[\x21-\x7e]+")
NASTY = ["", " ", "a b", "line\nbreak", "\r\nflush_all\r\n", "tab\t", "\x01\x7f", "%", "%41", "é€😀", "k" * 10_000]


def _bulk(column: pa.Array, kinds: list[str]) -> list[bytes]:
    data, offsets = canonical_keys([column], kinds)
    escaped, escaped_offsets = escape_many(data, offsets)
    raw = escaped.tobytes()
    return [raw[escaped_offsets[i] : escaped_offsets[i + 1]] for i in range(len(column))]


@given(st.lists(st.binary(max_size=40), min_size=1, max_size=50))
@settings(max_examples=60, deadline=None)
def test_bulk_escaping_equals_one_by_one_and_reverses(keys: list[bytes]) -> None:
    bulk = _bulk(pa.array(keys, pa.binary()), ["binary"])
    assert bulk == [escape(k) for k in keys]
    for key, escaped in zip(keys, bulk, strict=True):
        assert unescape(escaped) == key
        assert escaped == b"" or SAFE_KEY.fullmatch(escaped)


@given(st.lists(st.text(max_size=30), min_size=1, max_size=40))
@settings(max_examples=60, deadline=None)
def test_strings_escape_the_same_in_bulk(keys: list[str]) -> None:
    keys = [k.encode("utf-8", "surrogatepass").decode("utf-8", "replace") for k in keys]
    assert _bulk(pa.array(keys), ["string"]) == [escape(canonical_key(k, ["string"], ["k"])) for k in keys]


def test_nasty_keys_become_safe_distinct_memcached_keys() -> None:
    space = KeySpace("ns").version("1.abcd")
    made = [space.data_key(canonical_key(k, ["string"], ["k"])) for k in NASTY]
    names = [name for name, _ in made]
    assert len(set(names)) == len(names)
    for name in names:
        assert len(name.encode()) <= MAX_KEY_BYTES
        assert re.fullmatch(r"[\x21-\x7e]+", name), name
    assert made[-1][1] is True  # the 10 kB key is hashed
    assert all(hashed is False for _, hashed in made[:-1])
    assert "flush_all" in names[4] and "\r" not in names[4]


def test_composite_keys_do_not_collide_across_columns() -> None:
    kinds, cols = ["string", "string"], ["a", "b"]
    assert canonical_key(("a:b", "c"), kinds, cols) != canonical_key(("a", "b:c"), kinds, cols)
    assert decode_key(canonical_key(("a:b", "c"), kinds, cols), kinds) == ("a:b", "c")
    table = pa.table({"a": ["a:b", "a", "x"], "b": ["c", "b:c", ""]})
    data, offsets = canonical_keys([table["a"].combine_chunks(), table["b"].combine_chunks()], kinds)
    raw = data.tobytes()
    bulk = [raw[offsets[i] : offsets[i + 1]] for i in range(3)]
    assert bulk == [canonical_key(tuple(r.values()), kinds, cols) for r in table.to_pylist()]


def test_int_and_date_keys_match_their_python_values() -> None:
    ints = pa.array([0, -5, 2**62, 42], pa.int64())
    assert _bulk(ints, ["int"]) == [escape(canonical_key(v, ["int"], ["k"])) for v in ints.to_pylist()]
    assert canonical_key(np.int64(7), ["int"], ["k"]) == b"7"
    dates = pa.array([date(2024, 1, 2), date(1999, 12, 31)])
    assert _bulk(dates, ["date"]) == [b"2024-01-02", b"1999-12-31"]
    assert _bulk(pa.array([0, 86_400_000], pa.date64()), ["date"]) == [b"1970-01-01", b"1970-01-02"]


def test_wrong_key_types_are_refused_with_the_column_named() -> None:
    with pytest.raises(CacheInputError, match="'title_id' holds integers"):
        canonical_key("42", ["int"], ["title_id"])
    with pytest.raises(CacheInputError, match="tuple of 2"):
        canonical_key("x", ["int", "string"], ["a", "b"])
    with pytest.raises(CacheInputError, match="key column 'score' has type double"):
        key_kind("score", pa.float64())
    with pytest.raises(CacheInputError, match="namespace"):
        check_namespace("bad namespace")
