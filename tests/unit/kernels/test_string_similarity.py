"""Jaro-Winkler and normalized Levenshtein over aligned string columns, native and reference,
checked against rapidfuzz on random Unicode, empty strings, nulls and long strings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rapidfuzz.distance import JaroWinkler, Levenshtein

from airflow_provider_mlp.kernels import ArrowResult, native, reference

STRING_TYPES = [pa.string(), pa.large_string(), pa.string_view()]

# Few distinct characters so that random strings share many of them (matches, transpositions),
# with multi-byte code points from every UTF-8 length among them.
CLOSE_TEXT = st.text(alphabet=st.sampled_from("abcde AB-é日😀"), max_size=90)
ANY_TEXT = st.text(max_size=40)
MAYBE_TEXT = st.one_of(st.none(), CLOSE_TEXT, ANY_TEXT)
PAIRS = st.lists(st.tuples(MAYBE_TEXT, MAYBE_TEXT), max_size=25)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def expected_scores(lefts: Sequence[str | None], rights: Sequence[str | None], score: Any) -> list[float | None]:
    return [None if a is None or b is None else score(a, b) for a, b in zip(lefts, rights, strict=True)]


def assert_scores(result: Any, expected: list[float | None]) -> None:
    actual = pa.array(result).to_pylist()
    assert len(actual) == len(expected)
    for row, (got, want) in enumerate(zip(actual, expected, strict=True)):
        if want is None:
            assert got is None, f"row {row}: expected null, got {got}"
        else:
            assert got == pytest.approx(want, abs=1e-12), f"row {row}"


def columns(pairs: Sequence[tuple[str | None, str | None]], string_type: Any = None) -> tuple[Any, Any]:
    data_type = string_type or pa.string()
    return (pa.array([a for a, _ in pairs], type=data_type), pa.array([b for _, b in pairs], type=data_type))


def rapidfuzz_jaro_winkler(a: str, b: str, prefix_weight: float = 0.1) -> float:
    return float(JaroWinkler.similarity(a, b, prefix_weight=prefix_weight))


def rapidfuzz_levenshtein(a: str, b: str) -> float:
    return float(Levenshtein.normalized_similarity(a, b))


KNOWN = [
    ("MARTHA", "MARHTA"),
    ("DWAYNE", "DUANE"),
    ("DIXON", "DICKSONX"),
    ("", ""),
    ("", "abc"),
    ("abc", ""),
    ("a", "a"),
    ("a", "b"),
    ("ab", "ba"),
    ("kitten", "sitting"),
    ("héllo wörld", "hello world"),
    ("日本語テキスト", "日本語のテキスト"),
    ("😀😀a", "😀a😀"),
    ("x" * 70 + "abc", "x" * 69 + "acb"),
    ("abcdefghij" * 20, "abcdefghij" * 19 + "jihgfedcba"),
    # Long non-ASCII strings: the code point fallbacks past 64 code points.
    ("é" * 70 + "xyz", "é" * 69 + "xzyé"),
    ("日本" * 40 + "a", "本日" * 41),
]


def test_known_pairs_match_rapidfuzz(impl: Any) -> None:
    left, right = columns(KNOWN)
    assert_scores(impl.jaro_winkler_similarity(left, right), [rapidfuzz_jaro_winkler(a, b) for a, b in KNOWN])
    assert_scores(impl.levenshtein_similarity(left, right), [rapidfuzz_levenshtein(a, b) for a, b in KNOWN])


@SETTINGS
@given(pairs=PAIRS, prefix_weight=st.sampled_from([0.0, 0.1, 0.25]))
def test_jaro_winkler_matches_rapidfuzz(pairs: list[tuple[str | None, str | None]], prefix_weight: float) -> None:
    left, right = columns(pairs)
    lefts, rights = left.to_pylist(), right.to_pylist()

    def score(a: str, b: str) -> float:
        return rapidfuzz_jaro_winkler(a, b, prefix_weight)

    expected = expected_scores(lefts, rights, score)
    assert_scores(native.jaro_winkler_similarity(left, right, prefix_weight=prefix_weight), expected)
    assert_scores(reference.jaro_winkler_similarity(left, right, prefix_weight=prefix_weight), expected)


@SETTINGS
@given(pairs=PAIRS)
def test_levenshtein_matches_rapidfuzz(pairs: list[tuple[str | None, str | None]]) -> None:
    left, right = columns(pairs)
    expected = expected_scores(left.to_pylist(), right.to_pylist(), rapidfuzz_levenshtein)
    assert_scores(native.levenshtein_similarity(left, right), expected)
    assert_scores(reference.levenshtein_similarity(left, right), expected)


def long_text(min_size: int) -> st.SearchStrategy[str]:
    return st.sampled_from(["abcdefgh", "ab日é😀"]).flatmap(
        lambda chars: st.text(chars, min_size=min_size, max_size=400)
    )


@settings(max_examples=40, deadline=None)
@given(pairs=st.lists(st.tuples(long_text(65), long_text(0)), min_size=1, max_size=4))
def test_long_strings_take_the_fallbacks_correctly(pairs: list[tuple[str, str]]) -> None:
    left, right = columns(list(pairs))
    lefts, rights = left.to_pylist(), right.to_pylist()
    assert_scores(native.jaro_winkler_similarity(left, right), expected_scores(lefts, rights, rapidfuzz_jaro_winkler))
    assert_scores(native.levenshtein_similarity(left, right), expected_scores(lefts, rights, rapidfuzz_levenshtein))


TOKEN_TEXT = st.text(alphabet=st.sampled_from("abAB cd,.-_\t\u00a0\u3000ÉéÀ×日"), max_size=40)


@SETTINGS
@given(pairs=st.lists(st.tuples(st.one_of(st.none(), TOKEN_TEXT), st.one_of(st.none(), TOKEN_TEXT)), max_size=20))
def test_token_sort_compares_normalized_sorted_tokens(pairs: list[tuple[str | None, str | None]]) -> None:
    left, right = columns(pairs)
    lefts, rights = left.to_pylist(), right.to_pylist()
    normalize = reference.token_sort_normalize

    def jaro_winkler(a: str, b: str) -> float:
        return rapidfuzz_jaro_winkler(normalize(a), normalize(b))

    def levenshtein(a: str, b: str) -> float:
        return rapidfuzz_levenshtein(normalize(a), normalize(b))

    for impl in (native, reference):
        assert_scores(
            impl.jaro_winkler_similarity(left, right, token_sort=True), expected_scores(lefts, rights, jaro_winkler)
        )
        assert_scores(
            impl.levenshtein_similarity(left, right, token_sort=True), expected_scores(lefts, rights, levenshtein)
        )


def test_token_sort_normalization() -> None:
    normalize = reference.token_sort_normalize
    assert normalize("  The Godfather,  Part II ") == "godfather ii part the"
    assert normalize("Ébène\u00a0CAFÉ-au_lait") == "au café lait ébène"
    assert normalize("a×b") == "a×b"
    assert normalize(",.;") == ""


def test_token_sort_makes_word_order_irrelevant(impl: Any) -> None:
    left = pa.array(["Coppola, Francis Ford", "Pacino Al", None])
    right = pa.array(["francis ford COPPOLA", "Al Pacino.", "x"])
    assert pa.array(impl.jaro_winkler_similarity(left, right, token_sort=True)).to_pylist() == [1.0, 1.0, None]
    assert pa.array(impl.levenshtein_similarity(left, right, token_sort=True)).to_pylist() == [1.0, 1.0, None]


@pytest.mark.parametrize("tokens", [2, 7, 32, 33, 80], ids=lambda n: f"{n}-tokens")
def test_token_sort_orders_any_number_of_tokens_like_the_reference(impl: Any, tokens: int) -> None:
    # The native sort switches from an insertion sort to qsort past 32 tokens: both must agree with
    # the reference, repeated and prefix-sharing tokens included.
    import random

    rng = random.Random(tokens)
    words = ["al", "ala", "alan", "b", "ba", "Ébène", "zz", "al", "Z", "éa"]
    left = " ".join(rng.choice(words) for _ in range(tokens))
    right = " ".join(rng.sample(left.split(), len(left.split())))
    scrambled = " ".join(rng.choice(words) for _ in range(tokens))
    lefts, rights = pa.array([left, left]), pa.array([right, scrambled])
    normalize = reference.token_sort_normalize
    assert pa.array(impl.levenshtein_similarity(lefts, rights, token_sort=True)).to_pylist() == pytest.approx(
        [1.0, Levenshtein.normalized_similarity(normalize(left), normalize(scrambled))]
    )


@pytest.mark.parametrize("left_type", STRING_TYPES, ids=str)
@pytest.mark.parametrize("right_type", STRING_TYPES, ids=str)
def test_string_layouts_and_nulls(impl: Any, left_type: Any, right_type: Any) -> None:
    lefts = ["martha", None, "dixon", "", "short", "a string longer than twelve bytes", "été"]
    rights = ["marhta", "duane", None, "", "shorter", "a string longer than twelve bytez", "ete"]
    left = pa.array(lefts, type=left_type)
    right = pa.array(rights, type=right_type)
    assert_scores(impl.jaro_winkler_similarity(left, right), expected_scores(lefts, rights, rapidfuzz_jaro_winkler))
    assert_scores(impl.levenshtein_similarity(left, right), expected_scores(lefts, rights, rapidfuzz_levenshtein))


def test_slices_with_offsets(impl: Any) -> None:
    lefts = [f"name {i}" if i % 5 else None for i in range(40)]
    rights = [f"nmae {i * 7 % 13}" if i % 7 else None for i in range(40)]
    left = pa.array(lefts).slice(3, 30)
    right = pa.array(rights).slice(9, 30)
    expected = expected_scores(lefts[3:33], rights[9:39], rapidfuzz_jaro_winkler)
    assert_scores(impl.jaro_winkler_similarity(left, right), expected)


def test_sides_chunked_differently(impl: Any) -> None:
    lefts = [f"row {i} of {'x' * (i % 9)}" if i % 11 else None for i in range(100)]
    rights = [f"row {i % 17} of {'y' * (i % 4)}" for i in range(100)]
    left = pa.chunked_array([lefts[:7], [], lefts[7:50], lefts[50:51], lefts[51:]], type=pa.string())
    right = pa.chunked_array([rights[:33], rights[33:34], rights[34:99], rights[99:]], type=pa.large_string())
    assert_scores(impl.levenshtein_similarity(left, right), expected_scores(lefts, rights, rapidfuzz_levenshtein))
    # A chunked side against a plain array, and a sliced chunked array.
    assert_scores(
        impl.jaro_winkler_similarity(left.slice(10, 60), pa.array(rights[10:70], type=pa.string_view())),
        expected_scores(lefts[10:70], rights[10:70], rapidfuzz_jaro_winkler),
    )


def test_polars_series_in_and_out(impl: Any) -> None:
    left = pl.Series("left", ["Jon Smith", None, "Anna"])
    right = pl.Series("right", ["John Smith", "x", "Ana"])
    result = impl.jaro_winkler_similarity(left, right)
    scores = pl.Series(result)
    assert scores.dtype == pl.Float64
    assert scores.to_list()[1] is None
    assert scores.to_list()[0] == pytest.approx(rapidfuzz_jaro_winkler("Jon Smith", "John Smith"))


def test_empty_columns(impl: Any) -> None:
    empty = pa.array([], type=pa.string())
    assert pa.array(impl.jaro_winkler_similarity(empty, empty)).to_pylist() == []
    assert pa.array(impl.levenshtein_similarity(pa.chunked_array([], type=pa.string()), empty)).to_pylist() == []


def test_prefix_weight_and_boost_threshold(impl: Any) -> None:
    left, right = pa.array(["DIXON", "abcdxxxx"]), pa.array(["DICKSONX", "abcdyyyy"])
    plain = pa.array(impl.jaro_winkler_similarity(left, right, prefix_weight=0.0)).to_pylist()
    boosted = pa.array(impl.jaro_winkler_similarity(left, right, prefix_weight=0.2)).to_pylist()
    never = pa.array(impl.jaro_winkler_similarity(left, right, prefix_weight=0.2, boost_threshold=1.0)).to_pylist()
    assert never == plain
    assert boosted[0] == pytest.approx(plain[0] + 2 * 0.2 * (1 - plain[0]))
    # Jaro of the second pair is 2/3, under the default boost threshold 0.7: no boost.
    assert boosted[1] == pytest.approx(2 / 3)


def test_results_do_not_depend_on_threads() -> None:
    lefts = [f"entity {i} {'é' * (i % 3)} {'long' * (i % 23)}" if i % 13 else None for i in range(20_000)]
    rights = [f"entity {i * 31 % 1000} {'e' * (i % 5)}" if i % 17 else None for i in range(20_000)]
    left = pa.chunked_array([lefts[:5000], lefts[5000:12345], lefts[12345:]], type=pa.string())
    right = pa.array(rights, type=pa.string_view())
    for kernel in (native.jaro_winkler_similarity, native.levenshtein_similarity):
        single = pa.array(kernel(left, right, threads=1))
        for threads in (2, 3, 8):
            assert pa.array(kernel(left, right, threads=threads)).equals(single)
    tail = slice(19_000, 20_000)
    expected = expected_scores(lefts[tail], rights[tail], rapidfuzz_jaro_winkler)
    assert_scores(pa.array(native.jaro_winkler_similarity(left, right, threads=4))[tail], expected)


def test_result_is_shared_zero_copy() -> None:
    result = native.levenshtein_similarity(pa.array(["a", None, "abc"]), pa.array(["a", "b", "abd"]))
    assert isinstance(result, ArrowResult)
    assert len(result) == 3
    assert result.format == "g"
    assert result.null_count == 1
    first, second = pa.array(result), pa.array(result)
    # Both imports point at the result's own buffer: nothing was copied.
    assert first.buffers()[1].address == second.buffers()[1].address
    # The imported arrays keep the buffers alive after the result object is gone.
    del result
    assert first.to_pylist() == [1.0, None, pytest.approx(2 / 3)]


def split(values: list[str | None], cuts: list[int], string_type: Any) -> Any:
    bounds = sorted({min(cut, len(values)) for cut in cuts})
    pieces = [values[start:stop] for start, stop in zip([0, *bounds], [*bounds, len(values)], strict=True)]
    return pa.chunked_array(pieces, type=string_type)


@settings(max_examples=60, deadline=None)
@given(
    pairs=st.lists(st.tuples(MAYBE_TEXT, MAYBE_TEXT), min_size=1, max_size=40),
    left_cuts=st.lists(st.integers(0, 40), max_size=5),
    right_cuts=st.lists(st.integers(0, 40), max_size=5),
    types=st.tuples(st.sampled_from(STRING_TYPES), st.sampled_from(STRING_TYPES)),
    offset=st.integers(0, 5),
    threads=st.integers(1, 4),
)
def test_any_chunking_of_either_side_gives_the_same_scores(
    pairs: list[tuple[str | None, str | None]],
    left_cuts: list[int],
    right_cuts: list[int],
    types: tuple[Any, Any],
    offset: int,
    threads: int,
) -> None:
    lefts = [a for a, _ in pairs]
    rights = [b for _, b in pairs]
    left = split(lefts, left_cuts, types[0]).slice(min(offset, len(pairs)))
    right = split(rights, right_cuts, types[1]).slice(min(offset, len(pairs)))
    expected = expected_scores(lefts[offset:], rights[offset:], rapidfuzz_levenshtein)
    assert_scores(native.levenshtein_similarity(left, right, threads=threads), expected)


class StreamOnly:
    """A producer with only __arrow_c_stream__, as readers and some libraries offer."""

    def __init__(self, values: Any) -> None:
        self.values = values

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object:
        return self.values.__arrow_c_stream__(requested_schema)


class ArrayOnly:
    """A producer with only __arrow_c_array__, as nanoarrow arrays offer."""

    def __init__(self, values: Any) -> None:
        self.values = values

    def __arrow_c_array__(self, requested_schema: object | None = None) -> tuple[object, object]:
        return self.values.__arrow_c_array__(requested_schema)


def test_any_pycapsule_producer(impl: Any) -> None:
    lefts = ["alpha", None, "gamma", "delta"]
    rights = ["alpah", "beta", None, "delta"]
    expected = expected_scores(lefts, rights, rapidfuzz_jaro_winkler)
    stream = StreamOnly(pa.chunked_array([lefts[:1], lefts[1:]], type=pa.large_string()))
    assert_scores(impl.jaro_winkler_similarity(stream, ArrayOnly(pa.array(rights))), expected)
    chunked_series = pl.concat([pl.Series(lefts[:2]), pl.Series(lefts[2:])], rechunk=False)
    assert chunked_series.n_chunks() == 2
    assert_scores(impl.jaro_winkler_similarity(chunked_series, pl.Series(rights)), expected)


def test_kernels_release_the_gil() -> None:
    import threading
    import time

    # Long strings: blocked bit-parallel Levenshtein, a few hundred milliseconds of pure C.
    lefts = pa.array(["ab" * 10_000 + str(i) for i in range(24)])
    rights = pa.array(["ba" * 10_000 + str(i) for i in range(24)])
    start = time.perf_counter()
    native.levenshtein_similarity(lefts, rights)
    alone = time.perf_counter() - start

    done = threading.Event()

    def work() -> None:
        native.levenshtein_similarity(lefts, rights)
        done.set()

    worker = threading.Thread(target=work)
    longest_gap = 0.0
    last = time.perf_counter()
    worker.start()
    while not done.is_set():
        now = time.perf_counter()
        longest_gap = max(longest_gap, now - last)
        last = now
    worker.join()
    # Holding the GIL would stall this loop for the whole kernel; released, it keeps running.
    assert longest_gap < max(alone / 2, 0.05), (longest_gap, alone)


ITEMS = st.lists(st.one_of(st.none(), st.text(alphabet=st.sampled_from("ab cé日,"), max_size=8)), max_size=4)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(st.tuples(st.one_of(st.none(), ITEMS), MAYBE_TEXT), min_size=1, max_size=20),
    list_type=st.sampled_from([pa.list_(pa.string()), pa.large_list(pa.string_view()), pa.list_(pa.large_string())]),
    offset=st.integers(0, 3),
    token_sort=st.booleans(),
)
def test_lists_of_strings_compare_their_items_joined_by_a_space(
    rows: list[tuple[list[str | None] | None, str | None]], list_type: Any, offset: int, token_sort: bool
) -> None:
    items = [row[0] for row in rows]
    texts = [row[1] for row in rows]
    joined = [None if row is None else " ".join(item for item in row if item is not None) for row in items]
    left = pa.chunked_array([items[:2], items[2:]], type=list_type).slice(min(offset, len(rows)))
    right = pa.array(texts, type=pa.string()).slice(min(offset, len(rows)))
    normalize = reference.token_sort_normalize if token_sort else str

    def score(a: str, b: str) -> float:
        return rapidfuzz_jaro_winkler(normalize(a), normalize(b))

    expected = expected_scores(joined[offset:], texts[offset:], score)
    for impl in (native, reference):
        assert_scores(impl.jaro_winkler_similarity(left, right, token_sort=token_sort), expected)
        assert_scores(impl.jaro_winkler_similarity(right, left, token_sort=token_sort), expected)


def test_empty_list_items_are_joined_like_str_join(impl: Any) -> None:
    items = pa.array([["", ""], ["", "a", None, ""], [None, None], [None, "", "b"]])
    texts = pa.array([" ", " a ", "", " b"])
    assert pa.array(impl.levenshtein_similarity(items, texts)).to_pylist() == [1.0, 1.0, 1.0, 1.0]


def test_polars_list_column(impl: Any) -> None:
    people = pl.Series("people", [["Al Pacino", "Robert De Niro"], None, [], ["Brad Pitt", None]])
    joined = pl.Series("cast", ["Robert De Niro Al Pacino", "x", "", "Pitt, Brad"])
    scores = pa.array(impl.levenshtein_similarity(people, joined, token_sort=True)).to_pylist()
    assert scores == [1.0, None, 1.0, 1.0]
