"""Lookup aggregations: SeriesCube's keys from filters, its sums over slices and days, and loading one by name."""

from __future__ import annotations

import pytest

from airflow_provider_mlp.errors import ConfigurationError
from airflow_provider_mlp.serving.aggregations import ALL, CachedDataError, SeriesCube, load_lookup_aggregation

CUBE = SeriesCube(("title", "country"), ("views", "seconds"), max_slices=6)


def _row(views: list[int], seconds: list[int], first_day: str = "2026-01-01") -> dict[str, object]:
    return {"first_day": first_day, "views": views, "seconds": seconds, "members": []}


def test_keys_are_the_product_of_the_filters_with_all_for_an_unfiltered_dimension() -> None:
    assert CUBE.keys({}) == [[ALL, ALL]]
    assert CUBE.keys({"filters": {"country": ["US", "GB"]}}) == [[ALL, "US"], [ALL, "GB"]]
    assert CUBE.keys({"filters": {"title": ["a", "b"], "country": ["US", "US"]}}) == [["a", "US"], ["b", "US"]]
    assert CUBE.keys({"filters": {"title": [], "country": None}}) == [[ALL, ALL]]
    assert CUBE.keys({"query": "members"}) == [[ALL, ALL]]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"filters": {"genre": ["x"]}}, "no dimension 'genre'"),
        ({"filters": ["US"]}, "params.filters must be an object"),
        ({"filters": {"country": "US"}}, "params.filters.country must be a list"),
        ({"filters": {"title": list("abc"), "country": list("xyz")}}, "choose 9 slices; at most 6"),
        ({"query": "top"}, "params.query must be"),
    ],
)
def test_bad_filters_are_value_errors_naming_the_param(params: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CUBE.keys(params)


def test_aggregate_sums_the_slices_day_by_day_within_the_range() -> None:
    rows = {("a", "US"): _row([1, 2, 3, 4], [10, 20, 30, 40]), ("b", "US"): _row([5, 0, 5, 0], [50, 0, 50, 0])}
    whole = CUBE.aggregate(rows, {})
    assert whole == {
        "dates": ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"],
        "views": [6, 2, 8, 4],
        "seconds": [60, 20, 80, 40],
        "slices": 2,
    }
    part = CUBE.aggregate(rows, {"start": "2026-01-02", "end": "2026-01-03"})
    assert part["dates"] == ["2026-01-02", "2026-01-03"] and part["views"] == [2, 8] and part["seconds"] == [20, 80]
    # A range reaching past the cube is clipped to it; one wholly outside it is empty.
    assert CUBE.aggregate(rows, {"start": "2025-12-01", "end": "2026-01-01"})["views"] == [6]
    assert CUBE.aggregate(rows, {"start": "2026-02-01"})["dates"] == []
    assert CUBE.aggregate({}, {}) == {"dates": [], "views": [], "seconds": [], "slices": 0}


def test_members_query_answers_the_all_rows_non_series_values() -> None:
    rows = {(ALL, ALL): {**_row([1], [1]), "members": ["a", "b"]}}
    assert CUBE.aggregate(rows, {"query": "members"}) == {"members": ["a", "b"]}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"start": "yesterday"}, "params.start must be an ISO date"),
        ({"end": 20260101}, "params.end must be an ISO date text"),
        ({"start": "2026-01-03", "end": "2026-01-02"}, "is before params.start"),
    ],
)
def test_bad_dates_are_value_errors(params: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CUBE.aggregate({("a", "US"): _row([1], [1])}, params)


def test_rows_of_different_versions_are_refused_not_summed() -> None:
    torn = {("a", "US"): _row([1, 2], [1, 2]), ("b", "US"): _row([1, 2], [1, 2], first_day="2026-01-02")}
    with pytest.raises(CachedDataError, match="torn cube"):
        CUBE.aggregate(torn, {})
    with pytest.raises(CachedDataError, match="differ in length at key"):
        CUBE.aggregate({("a", "US"): _row([1, 2], [1, 2]), ("b", "US"): _row([1], [1])}, {})
    # Rows that are no cube rows at all are the cache's fault too, named by their key.
    with pytest.raises(CachedDataError, match=r"cached row \('a', 'US'\) is not a cube row"):
        CUBE.aggregate({("a", "US"): {"views": [1]}}, {})


class CountingAggregation:
    def keys(self, params: dict[str, object]) -> list[object]:
        return [1]

    def aggregate(self, rows: dict[object, object], params: dict[str, object]) -> int:
        return len(rows)


NOT_AN_AGGREGATION = object()


def test_load_lookup_aggregation_takes_an_instance_or_a_class() -> None:
    loaded = load_lookup_aggregation("airflow_provider_mlp.demo.content_performance:LOOKUP_AGGREGATION")
    assert isinstance(loaded, SeriesCube) and loaded.dimensions == ("title_id", "country", "device")
    assert isinstance(load_lookup_aggregation(f"{__name__}:CountingAggregation"), CountingAggregation)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("airflow_provider_mlp.demo.content_performance", "must be 'package.module:NAME'"),
        ("no_such_module_here:X", "cannot import 'no_such_module_here'"),
        (f"{__name__}:Missing", "has no 'Missing'"),
        (f"{__name__}:NOT_AN_AGGREGATION", "has no keys\\(\\) method"),
    ],
)
def test_load_lookup_aggregation_names_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_lookup_aggregation(spec)
