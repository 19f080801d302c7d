"""Use case 3's generated data, demand model and slate optimiser (the DAGs run them in tests/integration)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest

from airflow_provider_mlp.demo import content_decisions as content


def _history(last: str, days: int = 28, titles: int = 40) -> pa.Table:
    end = dt.date.fromisoformat(last)
    return pa.concat_tables(
        [content.engagement_rows(end - dt.timedelta(days=i), titles) for i in range(days - 1, -1, -1)]
    )


def test_generated_engagement_and_catalogue_are_deterministic_per_day() -> None:
    first = content.engagement_rows("2026-06-14", 30)
    assert first.equals(content.engagement_rows("2026-06-14", 30))
    assert not first.equals(content.engagement_rows("2026-06-15", 30))
    assert first.schema == content.engagement_schema() and first.num_rows == 30
    assert set(first["day"].to_pylist()) == {"2026-06-14"}
    assert min(first["completion_rate"].to_pylist()) > 0 and max(first["completion_rate"].to_pylist()) <= 1
    catalogue = content.catalog_rows("2026-06-14", 30)
    assert catalogue.equals(content.catalog_rows("2026-06-14", 30))
    # Same titles, same genres, in both tables.
    assert catalogue["genre"].to_pylist() == first["genre"].to_pylist()


def test_a_day_that_is_not_a_date_is_named() -> None:
    with pytest.raises(ValueError, match="day '14/06/2026' is not a date: expected YYYY-MM-DD"):
        content.engagement_rows("14/06/2026")


def test_demand_forecasts_tomorrow_per_title_from_the_window_only() -> None:
    history = _history("2026-06-14")
    forecast = content.fit_demand(history, "2026-06-14")
    assert forecast.schema == content.demand_schema() and forecast.num_rows == 40
    assert set(forecast["for_day"].to_pylist()) == {"2026-06-15"}
    assert set(forecast["days_observed"].to_pylist()) == {28}
    assert all(0.5 <= t <= 1.5 for t in forecast["trend"].to_pylist())
    # Popular titles are forecast to be popular: forecast and last week's plays rank titles alike.
    last_week = content.fit_demand(history, "2026-06-14", history_days=7)
    plays, short = forecast["expected_plays"].to_pylist(), last_week["expected_plays"].to_pylist()
    assert max(range(40), key=plays.__getitem__) == max(range(40), key=short.__getitem__)
    # Rows after the day are not seen: adding tomorrow's data changes nothing.
    later = pa.concat_tables([history, content.engagement_rows("2026-06-15", 40)])
    assert content.fit_demand(later, "2026-06-14").equals(forecast)
    with pytest.raises(ValueError, match="no rows between 2027-01-01 and 2027-01-28"):
        content.fit_demand(history, "2027-01-28")


def test_slate_takes_the_best_available_titles_under_the_genre_cap() -> None:
    forecast = content.fit_demand(_history("2026-06-14"), "2026-06-14")
    catalogue = content.catalog_rows("2026-06-14", 40)
    slate = content.optimise_slate(forecast, catalogue, slots=8, max_per_genre=2, cost_weight=0.5, demand_version="v1")
    rows = slate.to_pylist()
    assert [r["rank"] for r in rows] == list(range(1, 9))
    available = {r["title_id"] for r in catalogue.to_pylist() if r["available"]}
    assert {r["title_id"] for r in rows} <= available
    genres = [r["genre"] for r in rows]
    assert max(genres.count(g) for g in genres) <= 2
    values = [r["value"] for r in rows]
    assert values == sorted(values, reverse=True)
    # Nothing left out beats the slate's last title in a genre with room left.
    full = {g for g in genres if genres.count(g) == 2}
    hours = dict(zip(forecast["title_id"].to_pylist(), forecast["expected_hours"].to_pylist(), strict=True))
    for row in catalogue.to_pylist():
        if row["available"] and row["genre"] not in full and row["title_id"] not in {r["title_id"] for r in rows}:
            assert hours[row["title_id"]] - 0.5 * row["licence_cost"] <= values[-1]
    assert {r["demand_version"] for r in rows} == {"v1"} and {r["day"] for r in rows} == {"2026-06-15"}
    with pytest.raises(ValueError, match="slots \\(0\\) and max_per_genre"):
        content.optimise_slate(forecast, catalogue, slots=0)


def test_backfill_is_idempotent_and_carries_no_day_property(mlp_home: Path) -> None:
    table = content.backfill_history("2026-06-14", 7, titles=10)
    again = content.backfill_history("2026-06-14", 7, titles=10)
    assert again.current_snapshot_id == table.current_snapshot_id
    assert table.read().to_arrow().num_rows == 70
    (snapshot,) = table.snapshots()
    assert content.DAY_PROPERTY not in snapshot["summary"]
    assert content.prepare(scale=0.05, day="2026-06-14")["titles"] == 10


def test_editors_picks_come_first_and_count_towards_the_genre_cap() -> None:
    forecast = content.fit_demand(_history("2026-06-14"), "2026-06-14")
    catalogue = content.catalog_rows("2026-06-14", 40)
    ranked = content.optimise_slate(forecast, catalogue, slots=40, max_per_genre=40)["title_id"].to_pylist()
    unavailable = next(r["title_id"] for r in catalogue.to_pylist() if not r["available"])
    picks = [ranked[-1], unavailable, ranked[-2]]
    slate = content.optimise_slate(forecast, catalogue, slots=6, max_per_genre=2, pinned=picks).to_pylist()
    assert [r["title_id"] for r in slate[:2]] == [ranked[-1], ranked[-2]]  # the unavailable pick is skipped
    assert [r["pinned"] for r in slate] == [True, True, False, False, False, False]
    genres = [r["genre"] for r in slate]
    assert max(genres.count(g) for g in genres) <= 2


def test_catalogue_of_the_day_or_the_newest_before_it() -> None:
    catalogue = pa.concat_tables([content.catalog_rows("2026-06-13", 5), content.catalog_rows("2026-06-14", 5)])
    assert set(content.latest_day(catalogue, "2026-06-14")["day"].to_pylist()) == {"2026-06-14"}
    assert set(content.latest_day(catalogue, "2026-06-20")["day"].to_pylist()) == {"2026-06-14"}
    with pytest.raises(ValueError, match="no catalogue for 2026-06-01 or any day before it"):
        content.latest_day(catalogue, "2026-06-01")
