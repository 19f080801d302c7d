"""match_pairs: the fused multi-field matcher, native and reference, against per-field rapidfuzz."""

from __future__ import annotations

from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rapidfuzz.distance import JaroWinkler, Levenshtein

from airflow_provider_mlp.kernels import native, reference

LEFT_TITLES = ["The Godfather", "Heat", None, "Alien", None, "Ran"]
RIGHT_TITLES = ["Godfather, The", "Heat", "Se7en", "Aliens", "Brasil", None]
LEFT_YEARS = ["1972", "1995", "1995", "1979", None, "1985"]
RIGHT_YEARS = ["1972", "1995", "1995", "1986", None, "1985"]
LEFT_PEOPLE = ["Marlon Brando, Al Pacino", "Al Pacino Robert De Niro", "Brad Pitt", "Sigourney Weaver", None, ""]
RIGHT_PEOPLE = ["pacino al; brando marlon", "Robert De Niro, Al Pacino", "Morgan Freeman", "Weaver Sigourney", None, ""]
WEIGHTS = (2.0, 1.0, 1.5)


def movie_fields(**types: Any) -> list[tuple[Any, Any, float, str]]:
    string = types.get("string", pa.string())
    return [
        (pa.array(LEFT_TITLES, type=string), pa.array(RIGHT_TITLES), WEIGHTS[0], "token_sort_jaro_winkler"),
        (pa.array(LEFT_YEARS), pa.array(RIGHT_YEARS, type=string), WEIGHTS[1], "levenshtein"),
        (pl.Series(LEFT_PEOPLE), pa.array(RIGHT_PEOPLE, type=pa.large_string()), WEIGHTS[2], "token_sort_levenshtein"),
    ]


def expected_movie_scores() -> list[float | None]:
    normalize = reference.token_sort_normalize
    scores: list[float | None] = []
    for row in range(len(LEFT_TITLES)):
        total = weight_sum = 0.0
        parts: list[tuple[Any, Any, float, Any, bool]] = [
            (LEFT_TITLES[row], RIGHT_TITLES[row], WEIGHTS[0], JaroWinkler.similarity, True),
            (LEFT_YEARS[row], RIGHT_YEARS[row], WEIGHTS[1], Levenshtein.normalized_similarity, False),
            (LEFT_PEOPLE[row], RIGHT_PEOPLE[row], WEIGHTS[2], Levenshtein.normalized_similarity, True),
        ]
        for a, b, weight, metric, token_sort in parts:
            if a is None or b is None:
                continue
            if token_sort:
                a, b = normalize(a), normalize(b)
            total += weight * metric(a, b)
            weight_sum += weight
        scores.append(total / weight_sum if weight_sum else None)
    return scores


def test_scores_are_the_weighted_mean_of_field_similarities(impl: Any) -> None:
    scores = pa.array(impl.match_pairs(movie_fields())).to_pylist()
    expected = expected_movie_scores()
    assert scores[4] is None  # every field has a null: no score
    assert scores == [None if e is None else pytest.approx(e, abs=1e-12) for e in expected]


def test_threshold_returns_matching_row_indices(impl: Any) -> None:
    scores, indices = impl.match_pairs(movie_fields(string=pa.string_view()), threshold=0.9)
    expected = expected_movie_scores()
    want = [row for row, score in enumerate(expected) if score is not None and score >= 0.9]
    assert want  # the first two rows are the same films
    index_array = pa.array(indices)
    assert index_array.type == pa.int64()
    assert index_array.to_pylist() == want
    assert pl.Series(scores).len() == len(LEFT_TITLES)


def test_threshold_zero_keeps_every_scored_row(impl: Any) -> None:
    _, indices = impl.match_pairs(movie_fields(), threshold=0.0)
    assert pa.array(indices).to_pylist() == [0, 1, 2, 3, 5]


def test_fields_chunked_and_sliced_differently(impl: Any) -> None:
    n = 300
    left_names = [f"person {i % 37} {'x' * (i % 5)}" if i % 10 else None for i in range(n + 5)]
    right_names = [f"persn {i % 41}" for i in range(n)]
    left_cities = [f"city {i % 7}" for i in range(n)]
    right_cities = [f"cty {i % 3}" if i % 6 else None for i in range(n)]
    fields = [
        (pa.array(left_names).slice(5), pa.chunked_array([right_names[:100], right_names[100:]]), 1.0, "jaro_winkler"),
        (
            pa.chunked_array([left_cities[:1], left_cities[1:299], left_cities[299:]]),
            pa.array(right_cities),
            0.5,
            "levenshtein",
        ),
    ]
    scores, indices = impl.match_pairs(fields, threshold=0.8)
    expected = pa.array(reference.match_pairs(fields)).to_pylist()
    got = pa.array(scores).to_pylist()
    assert got == [None if e is None else pytest.approx(e, abs=1e-12) for e in expected]
    assert pa.array(indices).to_pylist() == [i for i, e in enumerate(expected) if e is not None and e >= 0.8]


FIELD_TEXT = st.one_of(st.none(), st.text(alphabet=st.sampled_from("ab cdé,日"), max_size=20))


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(st.tuples(FIELD_TEXT, FIELD_TEXT, FIELD_TEXT, FIELD_TEXT), max_size=15),
    metrics=st.tuples(
        st.sampled_from(["jaro_winkler", "levenshtein", "token_sort_jaro_winkler", "token_sort_levenshtein"]),
        st.sampled_from(["jaro_winkler", "levenshtein", "token_sort_jaro_winkler", "token_sort_levenshtein"]),
    ),
    weights=st.tuples(st.floats(0.01, 10.0), st.floats(0.01, 10.0)),
    threshold=st.floats(0.0, 1.0),
)
def test_native_equals_reference(
    rows: list[tuple[str | None, ...]], metrics: tuple[str, str], weights: tuple[float, float], threshold: float
) -> None:
    columns = [pa.array([row[k] for row in rows], type=pa.string()) for k in range(4)]
    fields = [
        (columns[0], columns[1], weights[0], metrics[0]),
        (columns[2], columns[3], weights[1], metrics[1]),
    ]
    native_scores, native_indices = native.match_pairs(fields, threshold=threshold)
    reference_scores, reference_indices = reference.match_pairs(fields, threshold=threshold)
    expected = reference_scores.to_pylist()
    assert pa.array(native_scores).to_pylist() == [None if e is None else pytest.approx(e, abs=1e-12) for e in expected]
    # Rows within rounding of the threshold may fall either way; all others must agree.
    got_indices = set(pa.array(native_indices).to_pylist())
    for row, score in enumerate(expected):
        if score is not None and abs(score - threshold) > 1e-9:
            assert (row in got_indices) == (row in set(reference_indices.to_pylist()))


def test_results_do_not_depend_on_threads() -> None:
    n = 30_000
    fields = [
        (
            pa.array([f"title {i % 977}" for i in range(n)]),
            pa.array([f"titel {i % 991}" for i in range(n)]),
            2.0,
            "jaro_winkler",
        ),
        (
            pa.chunked_array(
                [[f"{1900 + i % 120}" for i in range(n // 3)], [f"{1900 + i % 110}" for i in range(n - n // 3)]]
            ),
            pa.array([f"{1900 + i % 121}" if i % 9 else None for i in range(n)], type=pa.string_view()),
            1.0,
            "levenshtein",
        ),
    ]
    single_scores, single_indices = native.match_pairs(fields, threshold=0.85, threads=1)
    for threads in (2, 5):
        scores, indices = native.match_pairs(fields, threshold=0.85, threads=threads)
        assert pa.array(scores).equals(pa.array(single_scores))
        assert pa.array(indices).equals(pa.array(single_indices))


def test_people_as_a_list_column_equal_people_as_a_joined_string(impl: Any) -> None:
    people = [["Marlon Brando", "Al Pacino"], ["Al Pacino", None, "Robert De Niro"], None, []]
    joined = ["Al Pacino Marlon Brando", "Robert De Niro, Al Pacino", "Brad Pitt", ""]
    titles = pa.array(["The Godfather", "Heat", "Se7en", "Ran"])
    fields_with_lists = [
        (titles, titles, 1.0, "jaro_winkler"),
        (pa.array(people, type=pa.list_(pa.string())), pa.array(joined), 2.0, "token_sort_levenshtein"),
    ]
    scores, indices = impl.match_pairs(fields_with_lists, threshold=1.0)
    # Rows 0 and 1: same people in another order; row 2: null list, title only; row 3: empty list is "".
    assert pa.array(scores).to_pylist() == [1.0, 1.0, 1.0, 1.0]
    assert pa.array(indices).to_pylist() == [0, 1, 2, 3]
