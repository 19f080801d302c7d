"""Use case 3, content decision making: daily title engagement, a demand model, a home-page slate.

Three teams, three steps, each a DAG of ``airflow_provider_mlp.example_dags.mlp_content_decisions``:

- the data team appends one day of title engagement (plays, hours viewed, completion) to
  ``content.title_engagement`` (``engagement_rows``); ``backfill_history`` writes the days before;
- the forecasting team fits a demand model on that table's snapshot (``fit_demand``: per title an
  exponentially weighted level times its recent trend and the weekday's factor) and writes the next
  day's expected plays and hours to ``content.title_demand``;
- the merchandising team picks the home-page slate for that day (``optimise_slate``): the titles of
  the day's catalogue (``catalog_rows``: availability, licence cost) with the best expected hours net
  of licence cost, at most ``max_per_genre`` of a genre, written to ``content.home_slates``.

Everything is deterministic in ``(day, titles, seed)``. The forecast's payload is the event schema
``DEMAND_FORECAST``, the editors' ``EDITORIAL_PICKS``; the tables' snapshots travel as ``iceberg.snapshot``
events. Runtime side: no Airflow.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_mlp.events.schema import EventField, EventSchema

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.catalog import Catalog

    from airflow_provider_mlp.fastdata import Table

ENGAGEMENT_TABLE = "content.title_engagement"
CATALOG_TABLE = "content.title_catalog"
DEMAND_TABLE = "content.title_demand"
SLATES_TABLE = "content.home_slates"
# The snapshot property the daily ETL commit carries; the demand model's watcher only announces those.
DAY_PROPERTY = "engagement-day"
BACKFILL_PREFIX = "content-history/"

DEFAULT_TITLES = 200
DEFAULT_HISTORY_DAYS = 28
DEFAULT_SLOTS = 10
DEFAULT_MAX_PER_GENRE = 3
DEFAULT_COST_WEIGHT = 0.5
SMOOTHING = 0.3

GENRES = ["drama", "comedy", "thriller", "documentary", "animation", "sci-fi", "romance", "crime"]
_WORDS = ["Silent", "Golden", "Hidden", "Midnight", "Crimson", "Frozen", "Electric", "Hollow", "Iron", "Paper"]
_NOUNS = ["River", "Harbour", "Garden", "Signal", "Kingdom", "Orbit", "Letters", "Witness", "Summer", "Empire"]
# Weekly rhythm of viewing, Monday first: weekends watch more.
WEEKDAY_FACTOR = (0.9, 0.85, 0.88, 0.95, 1.1, 1.25, 1.2)

DEMAND_FORECAST = EventSchema(
    "content.demand-forecast",
    1,
    {
        "model": EventField("string", description="the demand model's name"),
        "version": EventField("string", description="model version: the data day and the input snapshot"),
        "day": EventField("string", description="the last day of engagement the model saw (YYYY-MM-DD)"),
        "for_day": EventField("string", description="the day forecast (YYYY-MM-DD)"),
        "table": EventField("string", description="the forecast table"),
        "snapshot_id": EventField("integer", description="the forecast table's snapshot holding this forecast"),
        "source_snapshot_id": EventField("integer", description="the engagement snapshot the model was fitted on"),
    },
)
EDITORIAL_PICKS = EventSchema(
    "content.editorial-picks",
    1,
    {
        "title_ids": EventField("array", description="titles the editors pin to the top of the day's slate"),
        "editor": EventField("string", required=False, description="who picked them"),
    },
)


def _day(value: str | dt.date) -> dt.date:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"day {value!r} is not a date: expected YYYY-MM-DD (e.g. 2026-06-14)") from None


def _rng(seed: int, *parts: Any) -> Any:
    import numpy as np

    digest = hashlib.sha256(":".join(str(p) for p in (seed, *parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def title_profiles(titles: int = DEFAULT_TITLES, seed: int = 16) -> dict[str, Any]:
    """The titles' fixed traits: id, name, genre, popularity, growth per day, release day offset."""
    import numpy as np

    rng = _rng(seed, "titles", titles)
    ids = np.arange(1, titles + 1, dtype=np.int64)
    return {
        "title_id": ids,
        "title": [f"The {_WORDS[i % len(_WORDS)]} {_NOUNS[(i * 7 + i // 10) % len(_NOUNS)]} {i}" for i in ids],
        "genre": [GENRES[int(g)] for g in rng.integers(0, len(GENRES), titles)],
        # Heavy-tailed popularity: a few hits, a long tail.
        "popularity": rng.lognormal(mean=6.0, sigma=1.0, size=titles),
        "growth": rng.normal(0.0, 0.03, size=titles),
        "runtime_hours": rng.uniform(0.4, 2.5, size=titles),
    }


def engagement_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("day", pa.string(), nullable=False),
            pa.field("title_id", pa.int64(), nullable=False),
            pa.field("genre", pa.string()),
            pa.field("plays", pa.int64()),
            pa.field("hours_viewed", pa.float64()),
            pa.field("completion_rate", pa.float64()),
        ]
    )


def engagement_rows(day: str | dt.date, titles: int = DEFAULT_TITLES, seed: int = 16) -> pa.Table:
    """One day of engagement per title: plays follow popularity, growth and the weekday; noise is seeded by the day."""
    import numpy as np
    import pyarrow as pa

    when = _day(day)
    profiles = title_profiles(titles, seed)
    rng = _rng(seed, "engagement", when.isoformat(), titles)
    age = (when - dt.date(2026, 1, 1)).days
    expected = profiles["popularity"] * np.exp(profiles["growth"] * age / 7) * WEEKDAY_FACTOR[when.weekday()]
    plays = rng.poisson(np.maximum(expected, 0.1)).astype(np.int64)
    completion = np.clip(rng.beta(6, 3, size=titles), 0.05, 1.0)
    hours = np.round(plays * profiles["runtime_hours"] * completion, 3)
    return pa.table(
        {
            "day": [when.isoformat()] * titles,
            "title_id": profiles["title_id"],
            "genre": profiles["genre"],
            "plays": plays,
            "hours_viewed": hours,
            "completion_rate": np.round(completion, 4),
        },
        schema=engagement_schema(),
    )


def catalog_rows(day: str | dt.date, titles: int = DEFAULT_TITLES, seed: int = 16) -> pa.Table:
    """The day's catalogue: every title with its availability (licence windows) and licence cost per hour."""
    import numpy as np
    import pyarrow as pa

    when = _day(day)
    profiles = title_profiles(titles, seed)
    rng = _rng(seed, "catalog", when.isoformat(), titles)
    return pa.table(
        {
            "day": [when.isoformat()] * titles,
            "title_id": profiles["title_id"],
            "title": profiles["title"],
            "genre": profiles["genre"],
            "available": rng.random(titles) > 0.15,
            "licence_cost": np.round(rng.uniform(0.0, 0.4, titles) * profiles["popularity"], 2),
        }
    )


def backfill_history(
    day: str | dt.date,
    days: int = DEFAULT_HISTORY_DAYS,
    *,
    titles: int = DEFAULT_TITLES,
    seed: int = 16,
    catalog: Catalog | Mapping[str, Any] | None = None,
) -> Table:
    """Create ``content.title_engagement`` (partitioned by day) with the ``days`` days before ``day``; idempotent.

    The backfill's snapshot has no ``engagement-day`` property, so the demand model's watcher does not
    plan a slate for it: only the daily ETL's appends are announced.
    """
    import pyarrow as pa

    from airflow_provider_mlp.fastdata import Table

    first = _day(day) - dt.timedelta(days=days)
    rows = pa.concat_tables([engagement_rows(first + dt.timedelta(days=i), titles, seed) for i in range(days)])
    table = Table.create(ENGAGEMENT_TABLE, engagement_schema(), partition_by=["day"], catalog=catalog, exist_ok=True)
    load_id = f"{BACKFILL_PREFIX}{first.isoformat()}-{days}d-{titles}-{seed}"
    table.commit(table.stage(rows, shard_id=0, run_id=load_id), run_id=load_id)
    return table.refresh()


def prepare(scale: float = 1.0, *, day: str = "2026-06-14", seed: int = 16) -> dict[str, Any]:
    """What ``mlp demo`` runs before the DAGs: the engagement history up to ``day`` (``scale`` x 200 titles)."""
    titles = max(10, int(DEFAULT_TITLES * scale))
    table = backfill_history(day, titles=titles, seed=seed)
    return {"table": table.identifier, "snapshot_id": table.current_snapshot_id, "titles": titles, "day": day}


# -- the demand model ----------------------------------------------------------------------------


def demand_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("day", pa.string(), nullable=False),
            pa.field("for_day", pa.string(), nullable=False),
            pa.field("title_id", pa.int64(), nullable=False),
            pa.field("genre", pa.string()),
            pa.field("expected_plays", pa.float64()),
            pa.field("expected_hours", pa.float64()),
            pa.field("trend", pa.float64()),
            pa.field("days_observed", pa.int64()),
        ]
    )


def fit_demand(engagement: pa.Table, day: str | dt.date, *, history_days: int = DEFAULT_HISTORY_DAYS) -> pa.Table:
    """Tomorrow's expected plays and hours per title from the ``history_days`` days up to ``day``.

    Level: exponentially weighted mean of weekday-adjusted plays; trend: the ratio of the last week's
    mean to the week before, clipped to +-50%; forecast = level x trend x tomorrow's weekday factor.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    last = _day(day)
    first = last - dt.timedelta(days=history_days - 1)
    days = [(first + dt.timedelta(days=i)).isoformat() for i in range(history_days)]
    rows = engagement.filter(pc.is_in(engagement["day"], pa.array(days)))
    if rows.num_rows == 0:
        raise ValueError(f"{ENGAGEMENT_TABLE} has no rows between {days[0]} and {days[-1]} to fit demand on")
    title_ids = np.unique(rows["title_id"].to_numpy())
    index = {d: i for i, d in enumerate(days)}
    plays = np.full((len(title_ids), history_days), np.nan)
    hours = np.full_like(plays, np.nan)
    t_pos = np.searchsorted(title_ids, rows["title_id"].to_numpy())
    d_pos = np.array([index[d] for d in rows["day"].to_pylist()])
    weekday = np.array([WEEKDAY_FACTOR[(first + dt.timedelta(days=i)).weekday()] for i in range(history_days)])
    plays[t_pos, d_pos] = rows["plays"].to_numpy().astype(float)
    hours[t_pos, d_pos] = rows["hours_viewed"].to_numpy()
    adjusted = plays / weekday
    weights = (1 - SMOOTHING) ** np.arange(history_days - 1, -1, -1)
    observed = ~np.isnan(adjusted)
    filled = np.where(observed, adjusted, 0.0)
    level = (filled * weights).sum(axis=1) / np.maximum((observed * weights).sum(axis=1), 1e-12)

    def window_mean(values: Any, start: int, stop: int | None) -> Any:
        part = values[:, start:stop]
        seen = ~np.isnan(part)
        return np.where(seen, part, 0.0).sum(axis=1) / np.maximum(seen.sum(axis=1), 1)

    recent, before = window_mean(adjusted, -7, None), window_mean(adjusted, -14, -7)
    trend = np.clip(np.where(before > 0, recent / np.maximum(before, 1e-12), 1.0), 0.5, 1.5)
    tomorrow = last + dt.timedelta(days=1)
    expected_plays = level * trend * WEEKDAY_FACTOR[tomorrow.weekday()]
    hours_per_play = np.nansum(hours, axis=1) / np.maximum(np.nansum(plays, axis=1), 1.0)
    genre_of = dict(zip(rows["title_id"].to_pylist(), rows["genre"].to_pylist(), strict=True))
    return pa.table(
        {
            "day": [last.isoformat()] * len(title_ids),
            "for_day": [tomorrow.isoformat()] * len(title_ids),
            "title_id": title_ids.astype(np.int64),
            "genre": [genre_of[int(t)] for t in title_ids],
            "expected_plays": np.round(expected_plays, 3),
            "expected_hours": np.round(expected_plays * hours_per_play, 3),
            "trend": np.round(trend, 4),
            "days_observed": observed.sum(axis=1).astype(np.int64),
        },
        schema=demand_schema(),
    )


# -- the slate -----------------------------------------------------------------------------------


def slate_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("day", pa.string(), nullable=False),
            pa.field("rank", pa.int64(), nullable=False),
            pa.field("title_id", pa.int64(), nullable=False),
            pa.field("title", pa.string()),
            pa.field("genre", pa.string()),
            pa.field("expected_hours", pa.float64()),
            pa.field("licence_cost", pa.float64()),
            pa.field("value", pa.float64()),
            pa.field("demand_version", pa.string()),
            pa.field("pinned", pa.bool_()),
        ]
    )


def latest_day(catalogue: pa.Table, day: str) -> pa.Table:
    """The catalogue's rows of ``day``, or of its newest day before ``day`` when that day has none yet."""
    import pyarrow.compute as pc

    days = sorted(d for d in set(catalogue["day"].to_pylist()) if d <= day)
    if not days:
        raise ValueError(f"{CATALOG_TABLE} has no catalogue for {day} or any day before it")
    return catalogue.filter(pc.equal(catalogue["day"], days[-1]))


def optimise_slate(
    demand: pa.Table,
    catalog: pa.Table,
    *,
    slots: int = DEFAULT_SLOTS,
    max_per_genre: int = DEFAULT_MAX_PER_GENRE,
    cost_weight: float = DEFAULT_COST_WEIGHT,
    demand_version: str = "",
    pinned: Sequence[int] = (),
) -> pa.Table:
    """The ``slots`` available titles of best value (expected hours - cost_weight x licence cost), genre-capped.

    ``pinned`` titles (the editors' picks) come first, in their order, when available; they count
    towards their genre's cap. The rest is greedy in value order (ties by title id), which is optimal
    for a sum of values under per-genre caps.
    """
    import pyarrow as pa

    if slots < 1 or max_per_genre < 1:
        raise ValueError(f"slots ({slots}) and max_per_genre ({max_per_genre}) must be at least 1")
    expected = dict(zip(demand["title_id"].to_pylist(), demand["expected_hours"].to_pylist(), strict=True))
    days = sorted(set(demand["for_day"].to_pylist()))
    if len(days) != 1:
        raise ValueError(f"{DEMAND_TABLE}: the slate needs one forecast day, the demand rows have {days}")
    (for_day,) = days
    candidates = []
    for row in catalog.to_pylist():
        if row["available"] and row["title_id"] in expected:
            value = expected[row["title_id"]] - cost_weight * row["licence_cost"]
            candidates.append((-value, row["title_id"], row, value))
    candidates.sort(key=lambda c: (c[0], c[1]))
    order = {int(title_id): position for position, title_id in enumerate(pinned)}
    picked = sorted((c for c in candidates if c[1] in order), key=lambda c: order[c[1]])
    candidates = picked + [c for c in candidates if c[1] not in order]
    chosen: list[dict[str, Any]] = []
    per_genre: dict[str, int] = {}
    for _, title_id, row, value in candidates:
        if per_genre.get(row["genre"], 0) >= max_per_genre:
            continue
        per_genre[row["genre"]] = per_genre.get(row["genre"], 0) + 1
        chosen.append(
            {
                "day": for_day,
                "rank": len(chosen) + 1,
                "title_id": title_id,
                "title": row["title"],
                "genre": row["genre"],
                "expected_hours": expected[title_id],
                "licence_cost": row["licence_cost"],
                "value": round(value, 3),
                "demand_version": demand_version,
                "pinned": title_id in order,
            }
        )
        if len(chosen) == slots:
            break
    return pa.Table.from_pylist(chosen, schema=slate_schema())
