"""Use case 4's generator and aggregation: deterministic events, partial aggregates that add up, and a cube that
equals a pandas recomputation from the raw events, rollups included."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from airflow_provider_mlp.demo.content_performance import (
    ALL,
    COUNTRIES,
    DEVICES,
    aggregate_events,
    build_cube,
    combine_partials,
    cube_schema,
    sizes,
    titles_table,
    viewing_events,
    window_of,
)
from airflow_provider_mlp.serving.aggregations import SeriesCube
from tests.support.content_cube import pandas_cube

FIRST = dt.date(2026, 1, 1)


@pytest.fixture(scope="module")
def generated() -> tuple[pa.Table, pa.Table]:
    titles = titles_table(12, seed=7, first_day=FIRST, days=21)
    return titles, viewing_events(20_000, titles, seed=7, first_day=FIRST, days=21)


def test_generation_is_deterministic_and_realistic(generated: tuple[pa.Table, pa.Table]) -> None:
    titles, events = generated
    again = viewing_events(20_000, titles_table(12, seed=7, first_day=FIRST, days=21), seed=7, first_day=FIRST, days=21)
    assert events.equals(again)
    assert not events.equals(viewing_events(20_000, titles, seed=8, first_day=FIRST, days=21))
    assert events.num_rows == 20_000 and titles.num_rows == 12
    assert set(pc.unique(events["country"]).to_pylist()) <= set(COUNTRIES)
    assert set(pc.unique(events["device"]).to_pylist()) == set(DEVICES)
    span = pc.min_max(events["event_date"]).as_py()
    assert span["min"] >= FIRST and span["max"] <= FIRST + dt.timedelta(days=20)
    # Popularity is skewed: the top title has several times the plays of the median one.
    counts = sorted(events.group_by("title_id").aggregate([("event_id", "count")])["event_id_count"].to_pylist())
    assert counts[-1] > 3 * counts[len(counts) // 2]
    # Plays watch at most their title's runtime; a completed play watched most of it.
    runtime = dict(zip(titles["title_id"].to_pylist(), titles["runtime_minutes"].to_pylist(), strict=True))
    rows = events.select(["title_id", "watch_seconds", "completed"]).to_pylist()
    assert all(30 <= r["watch_seconds"] <= max(30, runtime[r["title_id"]] * 60) for r in rows)
    assert all(r["watch_seconds"] >= 0.9 * runtime[r["title_id"]] * 60 for r in rows if r["completed"])
    assert 0.2 < pc.mean(pc.cast(events["completed"], pa.float64())).as_py() < 0.7


def test_sizes_grow_with_scale() -> None:
    assert sizes(1.0) == (400_000, 80)
    assert sizes(4.0) == (1_600_000, 160)
    assert sizes(0.001)[0] == 1_000
    with pytest.raises(ValueError, match="scale must be > 0"):
        sizes(0)


def test_partials_of_any_split_combine_to_the_whole(generated: tuple[pa.Table, pa.Table]) -> None:
    _, events = generated
    whole = aggregate_events(events)
    parts = [aggregate_events(events.slice(start, 3_000)) for start in range(0, events.num_rows, 3_000)]
    combined = combine_partials([*parts, whole.slice(0, 0)])
    keys = ["event_date", "title_id", "country", "device"]
    assert combined.sort_by([(k, "ascending") for k in keys]).equals(whole.sort_by([(k, "ascending") for k in keys]))
    assert pc.sum(combined["views"]).as_py() == events.num_rows
    assert combine_partials([]).num_rows == 0


def test_cube_equals_a_pandas_recomputation_from_the_events(generated: tuple[pa.Table, pa.Table]) -> None:
    titles, events = generated
    cube = build_cube(combine_partials([aggregate_events(events)]), titles, first_day=FIRST, days=21, as_of=FIRST)
    assert cube.schema.equals(cube_schema())
    got = {
        (r["title_id"], r["country"], r["device"]): {m: r[m] for m in ("views", "watch_seconds", "completions")}
        for r in cube.to_pylist()
    }
    assert got == pandas_cube(events.to_pandas(), FIRST, 21)
    everything = cube.filter(
        pc.and_(pc.and_(pc.equal(cube["title_id"], ALL), pc.equal(cube["country"], ALL)), pc.equal(cube["device"], ALL))
    ).to_pylist()[0]
    assert everything["titles"] == sorted(titles["title_id"].to_pylist())
    assert everything["title_names"][0] == titles["title"][0].as_py()
    assert everything["devices"] == sorted(DEVICES)
    assert sum(everything["views"]) == events.num_rows


def test_cube_drops_days_outside_its_window(generated: tuple[pa.Table, pa.Table]) -> None:
    titles, events = generated
    daily = combine_partials([aggregate_events(events)])
    cube = build_cube(daily, titles, first_day=FIRST + dt.timedelta(days=7), days=7, as_of=FIRST)
    expected = pandas_cube(events.to_pandas(), FIRST + dt.timedelta(days=7), 7)
    assert {(r["title_id"], r["country"], r["device"]): r["views"] for r in cube.to_pylist()} == {
        k: v["views"] for k, v in expected.items()
    }


def test_window_of_a_daily_run() -> None:
    assert window_of({"days": 0}, "2026-02-01") == {"row_filter": "", "start": None, "end": None}
    assert window_of({"days": 7}, "2026-02-01") == {
        "row_filter": "event_date >= '2026-01-26' and event_date <= '2026-02-01'",
        "start": "2026-01-26",
        "end": "2026-02-01",
    }
    assert window_of({"days": 1, "end_date": "2026-01-05"}, "2026-02-01")["start"] == "2026-01-05"
    with pytest.raises(ValueError, match="end_date must be an ISO date"):
        window_of({"days": 3, "end_date": "last week"}, None)


def test_what_the_demo_runner_uses() -> None:
    from pathlib import Path

    from airflow_provider_mlp.demo.content_performance import app_path, sample_params, service_env
    from airflow_provider_mlp.serving.aggregations import load_lookup_aggregation

    env = service_env("127.0.0.1:11211")
    assert env["MLP_SERVING_LOOKUP_NAMESPACE"] == "content-performance"
    assert isinstance(load_lookup_aggregation(env["MLP_SERVING_LOOKUP_AGGREGATION"]), SeriesCube)
    assert sample_params() == {
        "filters": {"country": ["US", "GB"], "device": ["tv"]},
        "start": "2026-02-23",
        "end": "2026-03-01",
    }
    assert Path(app_path()).is_file()
