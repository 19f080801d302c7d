"""Bad input gets one exception type naming the argument, the Arrow format received and what was expected."""

from __future__ import annotations

import decimal
from typing import Any

import pyarrow as pa
import pytest

from airflow_provider_mlp.kernels import ArrowKernelError

STRINGS = pa.array(["a", "b", "c"])


def raised_message(call: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(ArrowKernelError) as raised:
        call(*args, **kwargs)
    assert isinstance(raised.value, TypeError)
    assert isinstance(raised.value, ValueError)
    return str(raised.value)


@pytest.mark.parametrize("kernel", ["jaro_winkler_similarity", "levenshtein_similarity"])
def test_mismatched_lengths(impl: Any, kernel: str) -> None:
    message = raised_message(getattr(impl, kernel), STRINGS, pa.array(["a", "b"], type=pa.large_string()))
    assert f"{kernel}() argument 'right'" in message
    assert "length 2 (format 'U')" in message
    assert "'left' of length 3 (format 'u')" in message
    assert "equal length" in message


@pytest.mark.parametrize(
    ("column", "format_string"),
    [
        (pa.array([1, 2, 3]), "'l'"),
        (pa.array([b"a", b"b", b"c"]), "'z'"),
        (pa.array([1.0, 2.0, 3.0]), "'g'"),
        (pa.array([[1], [2], [3]]), "'+l' (items of format 'l')"),
        (pa.array([{"a": "x"}, {"a": "y"}, {"a": "z"}]), "'+s'"),
        (pa.array(["a", "b", "a"]).dictionary_encode(), "'i' (dictionary-encoded)"),
    ],
    ids=["int64", "binary", "float64", "list-of-int", "struct", "dictionary"],
)
def test_unsupported_types_for_similarity(impl: Any, column: Any, format_string: str) -> None:
    message = raised_message(impl.jaro_winkler_similarity, column, STRINGS)
    assert "jaro_winkler_similarity() argument 'left'" in message
    assert f"unsupported Arrow type with format {format_string}" in message
    assert "expected a string column (string 'u', large_string 'U' or string_view 'vu')" in message
    assert "or a list of strings (list '+l' or large_list '+L' of those)" in message
    message = raised_message(impl.levenshtein_similarity, STRINGS, column)
    assert "argument 'right'" in message
    assert format_string in message


@pytest.mark.parametrize(
    ("column", "format_string"),
    [
        (pa.array([decimal.Decimal("1.5")], type=pa.decimal128(10, 2)), "'d:10,2'"),
        (pa.array([1], type=pa.uint64()), "'L'"),
        (pa.array([1.5]), "'g'"),
        (pa.array([True]), "'b'"),
    ],
    ids=["decimal", "uint64", "float64", "bool"],
)
def test_unsupported_types_for_bucket(impl: Any, column: Any, format_string: str) -> None:
    message = raised_message(impl.iceberg_bucket, column, 16)
    assert "iceberg_bucket() argument 'values'" in message
    assert f"unsupported Arrow type with format {format_string}" in message
    assert "expected an int8/16/32/64" in message
    assert "string" in message and "binary" in message


@pytest.mark.parametrize("wrong", [["a", "b", "c"], "abc", None, 3], ids=["list", "str", "None", "int"])
def test_wrong_argument_types_for_columns(impl: Any, wrong: Any) -> None:
    message = raised_message(impl.jaro_winkler_similarity, wrong, STRINGS)
    assert "argument 'left'" in message
    assert "__arrow_c_array__ or __arrow_c_stream__" in message
    assert type(wrong).__name__ in message
    message = raised_message(impl.iceberg_bucket, wrong, 4)
    assert "argument 'values'" in message


def test_wrong_scalar_arguments(impl: Any) -> None:
    assert "argument 'threads': expected an int >= 1" in raised_message(
        impl.levenshtein_similarity, STRINGS, STRINGS, threads="2"
    )
    assert "argument 'threads'" in raised_message(impl.levenshtein_similarity, STRINGS, STRINGS, threads=0)
    assert "argument 'prefix_weight': expected a float in [0, 0.25]" in raised_message(
        impl.jaro_winkler_similarity, STRINGS, STRINGS, prefix_weight=0.5
    )
    assert "argument 'boost_threshold'" in raised_message(
        impl.jaro_winkler_similarity, STRINGS, STRINGS, boost_threshold="high"
    )
    for bad in (0, -3, 2**31, "16", 16.0):
        assert "argument 'num_buckets': expected an int in [1, 2147483647]" in raised_message(
            impl.iceberg_bucket, pa.array([1]), bad
        )


def test_matcher_errors_name_the_field(impl: Any) -> None:
    good = (STRINGS, STRINGS, 1.0, "jaro_winkler")
    assert "argument 'fields': expected a sequence" in raised_message(impl.match_pairs, 42)
    assert "argument 'fields': expected at least one" in raised_message(impl.match_pairs, [])
    assert "argument 'fields[1]': expected a (left, right, weight, metric) tuple" in raised_message(
        impl.match_pairs, [good, (STRINGS, STRINGS)]
    )
    message = raised_message(impl.match_pairs, [good, (STRINGS, STRINGS, 1.0, "soundex")])
    assert "argument 'fields[1].metric'" in message and "'soundex'" in message
    assert "argument 'fields[0].weight': expected a finite float > 0" in raised_message(
        impl.match_pairs, [(STRINGS, STRINGS, 0.0, "levenshtein")]
    )
    assert "argument 'fields[0].weight'" in raised_message(impl.match_pairs, [(STRINGS, STRINGS, "x", "levenshtein")])
    message = raised_message(impl.match_pairs, [good, (pa.array([1, 2, 3]), STRINGS, 1.0, "levenshtein")])
    assert "argument 'fields[1].left': unsupported Arrow type with format 'l'" in message
    message = raised_message(impl.match_pairs, [good, (STRINGS, STRINGS[:2], 1.0, "levenshtein")])
    assert "argument 'fields[1].right': length 2" in message
    message = raised_message(impl.match_pairs, [good, (STRINGS[:2], STRINGS[:2], 1.0, "levenshtein")])
    assert "argument 'fields[1].left': length 2" in message and "fields[0]" in message
    assert "argument 'threshold'" in raised_message(impl.match_pairs, [good], threshold=1.5)


def test_polars_and_stream_errors_report_the_format(impl: Any) -> None:
    import polars as pl

    message = raised_message(impl.jaro_winkler_similarity, pl.Series([1, 2, 3]), STRINGS)
    assert "argument 'left': unsupported Arrow type with format 'l'" in message
    message = raised_message(impl.jaro_winkler_similarity, STRINGS, pa.chunked_array([[1.5], [2.5, 3.5]]))
    assert "argument 'right': unsupported Arrow type with format 'g'" in message
