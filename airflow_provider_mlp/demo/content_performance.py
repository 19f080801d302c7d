"""Use case 4, content performance: generated viewing events, their partial aggregates, and the cube served to a chart.

``create_viewing_events`` writes two Iceberg tables, deterministic for a given ``scale`` and seed:

- ``content.viewing_events`` (partitioned by day): ``event_id``, ``event_date``, ``profile_id``,
  ``title_id``, ``country``, ``device``, ``watch_seconds``, ``completed`` -- one row per play. Titles
  have Zipf-like popularity, some premiere inside the window (a launch spike that decays), some are
  regional hits (a home country), weekends are busier, devices depend on the country, and how much
  of a title is watched follows its runtime;
- ``content.titles``: ``title_id``, ``title``, ``kind``, ``genre``, ``runtime_minutes``, ``premiere``.

``aggregate_events`` is what one shard's task computes (views, watch seconds, completions per day,
title, country and device), ``combine_partials`` adds the shards' partial aggregates up, and
``build_cube`` turns the daily totals into the cube the service reads: one row per combination of
title, country and device, with ``*`` (``ALL``) for "every member" (every rollup precomputed, so
an unfiltered dimension costs one cache key), holding dense daily series from ``first_day``. The
all-``*`` row also lists the dimension members, for the app's pickers. ``LOOKUP_AGGREGATION`` sums
a request's slices over its date range in the service (``MLP_SERVING_LOOKUP_AGGREGATION``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_mlp.serving.aggregations import ALL, SeriesCube

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    from pyiceberg.catalog import Catalog

    from airflow_provider_mlp.fastdata import Table

EVENTS_TABLE = "content.viewing_events"
TITLES_TABLE = "content.titles"
CUBE_TABLE = "content.title_performance"
NAMESPACE = "content-performance"
DIMENSIONS = ("title_id", "country", "device")
MEASURES = ("views", "watch_seconds", "completions")
MEMBER_COLUMNS = ("titles", "title_names", "countries", "devices")
EVENT_COLUMNS = ["event_date", "title_id", "country", "device", "watch_seconds", "completed"]
CUBE_VALUES = ["first_day", *MEASURES, *MEMBER_COLUMNS]
DEFAULT_FIRST_DAY = dt.date(2026, 1, 1)
DEFAULT_DAYS = 60
EVENTS_PER_SCALE = 400_000
TITLES_PER_SCALE = 80
LOOKUP_AGGREGATION = SeriesCube(DIMENSIONS, MEASURES)

COUNTRIES = ["US", "GB", "DE", "FR", "BR", "IN", "JP", "MX", "CA", "ES", "KR", "AU"]
_COUNTRY_SHARE = [0.28, 0.08, 0.07, 0.06, 0.09, 0.1, 0.06, 0.06, 0.05, 0.05, 0.05, 0.05]
DEVICES = ["tv", "mobile", "web", "tablet", "console"]
_DEVICE_SHARE = [0.45, 0.25, 0.15, 0.1, 0.05]
# Phones are the main screen in some markets.
_MOBILE_FIRST = {"IN", "BR", "MX"}
_GENRES = ["drama", "comedy", "thriller", "documentary", "animation", "sci-fi", "romance", "crime"]
_WORDS_A = ["Silent", "Golden", "Hidden", "Midnight", "Crimson", "Frozen", "Electric", "Secret", "Velvet", "Northern"]
_WORDS_B = ["River", "Empire", "Harbor", "Station", "Witness", "Mirror", "Frontier", "Signal", "Island", "Horizon"]


def sizes(scale: float) -> tuple[int, int]:
    """``(events, titles)`` at ``scale`` (1: 400,000 plays of 80 titles over 60 days)."""
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    return max(1_000, int(EVENTS_PER_SCALE * scale)), max(8, round(TITLES_PER_SCALE * scale**0.5))


def titles_table(
    titles: int, seed: int = 4, first_day: dt.date = DEFAULT_FIRST_DAY, days: int = DEFAULT_DAYS
) -> pa.Table:
    """The title catalogue: names, kinds, genres, runtimes and premiere dates (a third premiere in the window)."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    names = [
        f"{_WORDS_A[i % 10]} {_WORDS_B[(i // 10) % 10]}" + (f" {i // 100 + 1}" if i >= 100 else "")
        for i in range(titles)
    ]
    order = rng.permutation(titles)
    kind = np.where(rng.random(titles) < 0.55, "series", "movie")
    runtime = np.where(kind == "movie", rng.integers(85, 150, titles), rng.integers(22, 60, titles))
    in_window = rng.random(titles) < 0.33
    premiere_offset = np.where(in_window, rng.integers(0, max(1, days - 7), titles), -rng.integers(30, 2000, titles))
    return pa.table(
        {
            "title_id": [f"t{i:04d}" for i in range(titles)],
            "title": [names[j] for j in order],
            "kind": kind.tolist(),
            "genre": [_GENRES[g] for g in rng.integers(0, len(_GENRES), titles)],
            "runtime_minutes": pa.array(runtime, pa.int32()),
            "premiere": pa.array([first_day + dt.timedelta(days=int(o)) for o in premiere_offset], pa.date32()),
        }
    )


def viewing_events(
    events: int,
    titles: pa.Table,
    *,
    seed: int = 4,
    first_day: dt.date = DEFAULT_FIRST_DAY,
    days: int = DEFAULT_DAYS,
) -> pa.Table:
    """``events`` plays of ``titles`` over ``days`` days from ``first_day``, sorted by day (vectorised numpy)."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed + 1)
    count = titles.num_rows
    popularity = 1.0 / np.arange(1, count + 1) ** 1.1
    popularity = popularity[rng.permutation(count)]
    offsets = np.array([(d - first_day).days for d in titles["premiere"].to_pylist()])
    day = np.arange(days)
    weekday = np.array([(first_day + dt.timedelta(days=int(d))).weekday() for d in day])
    weekly = np.where(weekday >= 5, 1.35, 1.0)
    since = day[None, :] - offsets[:, None]
    # A premiere inside the window: nothing before it, a spike that decays over about a week.
    launch = np.where(since < 0, 0.0, 1.0 + 4.0 * np.exp(-np.clip(since, 0, None) / 6.0) * (offsets[:, None] >= 0))
    intensity = popularity[:, None] * launch * weekly[None, :]
    cells = rng.choice(intensity.size, size=events, p=(intensity / intensity.sum()).ravel())
    title_index, day_index = np.divmod(cells, days)
    order = np.argsort(day_index, kind="stable")
    title_index, day_index = title_index[order], day_index[order]

    # Regional hits: a fifth of the titles draw half their audience from one home country.
    country_index = np.empty(events, dtype=np.int64)
    share = np.asarray(_COUNTRY_SHARE) / sum(_COUNTRY_SHARE)
    homes = rng.integers(0, len(COUNTRIES), count)
    regional = rng.random(count) < 0.2
    for t in range(count):
        rows = np.flatnonzero(title_index == t)
        p = share if not regional[t] else 0.5 * share + 0.5 * np.eye(len(COUNTRIES))[homes[t]]
        country_index[rows] = rng.choice(len(COUNTRIES), size=rows.size, p=p)
    device_index = np.empty(events, dtype=np.int64)
    for c, country in enumerate(COUNTRIES):
        rows = np.flatnonzero(country_index == c)
        p = np.asarray(_DEVICE_SHARE, dtype=float)
        if country in _MOBILE_FIRST:
            p = p * np.array([0.6, 2.2, 0.8, 1.0, 0.7])
        device_index[rows] = rng.choice(len(DEVICES), size=rows.size, p=p / p.sum())

    runtime = titles["runtime_minutes"].to_numpy().astype(np.int64)[title_index] * 60
    # Most plays finish or nearly; a long tail stops early (phones more often).
    fraction = np.where(rng.random(events) < 0.6, rng.beta(12, 1, events), rng.beta(1.2, 3, events))
    fraction = np.where(device_index == 1, fraction**1.4, fraction)
    watch = np.maximum(30, (runtime * fraction).astype(np.int64))
    first = np.datetime64(first_day.isoformat(), "D")
    return pa.table(
        {
            "event_id": pa.array(np.arange(events, dtype=np.int64)),
            "event_date": pa.array((first + day_index).astype("datetime64[D]"), pa.date32()),
            "profile_id": pa.array(rng.integers(0, max(1000, events // 6), events), pa.int64()),
            "title_id": titles["title_id"].take(pa.array(title_index)),
            "country": pa.array(np.asarray(COUNTRIES, dtype=object)[country_index], pa.string()),
            "device": pa.array(np.asarray(DEVICES, dtype=object)[device_index], pa.string()),
            "watch_seconds": pa.array(watch, pa.int32()),
            "completed": pa.array(fraction >= 0.92),
        }
    )


def create_viewing_events(
    scale: float = 1.0,
    *,
    identifier: str = EVENTS_TABLE,
    titles_identifier: str = TITLES_TABLE,
    seed: int = 4,
    first_day: dt.date = DEFAULT_FIRST_DAY,
    days: int = DEFAULT_DAYS,
    catalog: Catalog | Mapping[str, Any] | None = None,
    row_group_rows: int = 50_000,
) -> tuple[Table, Table]:
    """Create the events table (partitioned by day) and the titles table at ``scale``; idempotent.

    A second call with the same arguments finds both loads committed and changes nothing; other
    arguments (another scale) replace what the tables held.
    """
    from airflow_provider_mlp.demo.data import load_generated

    events, title_count = sizes(scale)
    titles = titles_table(title_count, seed, first_day, days)
    data = viewing_events(events, titles, seed=seed, first_day=first_day, days=days)
    load_id = f"viewing-events-{events}-{title_count}-{seed}-{first_day.isoformat()}-{days}"
    events_table = load_generated(
        identifier, data, load_id, catalog=catalog, partition_by=["day(event_date)"], row_group_rows=row_group_rows
    )
    return events_table, load_generated(titles_identifier, titles, load_id, catalog=catalog)


def prepare(scale: float = 1.0, **kwargs: Any) -> dict[str, Any]:
    """What ``mlp demo`` calls: generate the tables at ``scale``; returns what its report prints."""
    events, titles = create_viewing_events(scale, **kwargs)
    rows, title_count = sizes(scale)
    return {
        "events_table": events.identifier,
        "events": rows,
        "titles_table": titles.identifier,
        "titles": title_count,
        "snapshot_id": events.current_snapshot_id,
        "first_day": kwargs.get("first_day", DEFAULT_FIRST_DAY).isoformat(),
        "days": kwargs.get("days", DEFAULT_DAYS),
    }


def service_env(servers: str, namespace: str = NAMESPACE) -> dict[str, str]:
    """The environment of a lookup-only ``bentoml serve`` answering this use case's charts from ``servers``.

    ``bentoml serve airflow_provider_mlp.serving.service:MlpModelService --host 127.0.0.1 --port 3000``
    with these variables; the Streamlit app then reaches it with ``MLP_LOOKUP_URL=http://127.0.0.1:3000``.
    """
    return {
        "MLP_SERVING_LOOKUP_AGGREGATION": f"{__name__}:LOOKUP_AGGREGATION",
        "MLP_SERVING_LOOKUP_NAMESPACE": namespace,
        "MLP_MEMCACHED_SERVERS": servers,
    }


def sample_params(first_day: dt.date = DEFAULT_FIRST_DAY, days: int = DEFAULT_DAYS) -> dict[str, Any]:
    """A sample chart query: TV plays in the US and the UK over the data's last week (for a report)."""
    last = first_day + dt.timedelta(days=days - 1)
    return {
        "filters": {"country": ["US", "GB"], "device": ["tv"]},
        "start": (last - dt.timedelta(days=6)).isoformat(),
        "end": last.isoformat(),
    }


def app_path() -> str:
    """The Streamlit app's file, for ``streamlit run``."""
    from pathlib import Path

    return str(Path(__file__).with_name("content_performance_app.py"))


# -- the aggregation -----------------------------------------------------------------------------

_DAILY_KEYS = ["event_date", *DIMENSIONS]


def aggregate_events(events: pa.Table) -> pa.Table:
    """One shard's partial aggregate: views, watch seconds and completions per day, title, country, device."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    rows = events.select(_DAILY_KEYS).append_column("views", pa.array(np.ones(events.num_rows, dtype=np.int64)))
    rows = rows.append_column("watch_seconds", pc.cast(events["watch_seconds"], pa.int64()))
    rows = rows.append_column("completions", pc.cast(events["completed"], pa.int64()))
    return _sum_by_day(rows)


def _sum_by_day(rows: pa.Table) -> pa.Table:
    grouped = rows.group_by(_DAILY_KEYS, use_threads=False).aggregate([(m, "sum") for m in MEASURES])
    return grouped.rename_columns({f"{m}_sum": m for m in MEASURES}).select([*_DAILY_KEYS, *MEASURES])


def partial_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [("event_date", pa.date32()), *((d, pa.string()) for d in DIMENSIONS), *((m, pa.int64()) for m in MEASURES)]
    )


def combine_partials(partials: Sequence[pa.Table]) -> pa.Table:
    """The shards' partial aggregates added up: one row per day, title, country and device."""
    import pyarrow as pa

    tables = [p.select([*_DAILY_KEYS, *MEASURES]).cast(partial_schema()) for p in partials if p.num_rows]
    if not tables:
        return partial_schema().empty_table()
    return _sum_by_day(pa.concat_tables(tables))


def cube_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("as_of", pa.date32(), nullable=False),
            *(pa.field(d, pa.string(), nullable=False) for d in DIMENSIONS),
            pa.field("first_day", pa.string(), nullable=False),
            *(pa.field(m, pa.list_(pa.int64()), nullable=False) for m in MEASURES),
            *(pa.field(c, pa.list_(pa.string()), nullable=False) for c in MEMBER_COLUMNS),
        ]
    )


def build_cube(daily: pa.Table, titles: pa.Table | None, *, first_day: dt.date, days: int, as_of: dt.date) -> pa.Table:
    """Every rollup of ``daily`` over the dimensions as dense daily series of ``days`` days from ``first_day``.

    One row per (title_id, country, device) present in the data, plus the rollups with ``ALL``
    in any of them (2^3 grouping sets). Days outside the window are dropped.
    """
    import itertools

    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    first = np.datetime64(first_day.isoformat(), "D")
    day_index = (daily["event_date"].to_numpy(zero_copy_only=False).astype("datetime64[D]") - first).astype(np.int64)
    inside = (day_index >= 0) & (day_index < days)
    daily = daily.filter(pa.array(inside))
    day_index = day_index[inside]
    members: list[list[str]] = []
    codes: list[np.ndarray] = []
    for dimension in DIMENSIONS:
        encoded = pc.dictionary_encode(daily[dimension]).combine_chunks()
        names = encoded.dictionary.to_pylist()
        order = np.argsort(np.asarray(names, dtype=object)) if names else np.zeros(0, dtype=np.int64)
        rank = np.empty(len(names), dtype=np.int64)
        rank[order] = np.arange(len(names))
        members.append([names[i] for i in order])
        codes.append(rank[encoded.indices.to_numpy(zero_copy_only=False)] if names else np.zeros(0, np.int64))
    measures = {m: daily[m].to_numpy(zero_copy_only=False).astype(np.int64) for m in MEASURES}
    columns: dict[str, list[Any]] = {name: [] for name in cube_schema().names}
    for kept in itertools.product([True, False], repeat=len(DIMENSIONS)):
        composite = np.zeros(daily.num_rows, dtype=np.int64)
        for keep, code, names in zip(kept, codes, members, strict=True):
            composite = composite * (len(names) + 1) + (code if keep else len(names))
        keys, inverse = np.unique(composite, return_inverse=True)
        cell = inverse * days + day_index
        series = {
            m: np.bincount(cell, weights=values, minlength=len(keys) * days).astype(np.int64).reshape(len(keys), days)
            for m, values in measures.items()
        }
        for row, key in enumerate(keys.tolist()):
            parts = []
            for names in reversed(members):
                key, code = divmod(key, len(names) + 1)
                parts.append(ALL if code == len(names) else names[code])
            for dimension, part in zip(DIMENSIONS, reversed(parts), strict=True):
                columns[dimension].append(part)
            for m in MEASURES:
                columns[m].append(series[m][row].tolist())
    rows = len(columns["title_id"])
    names_by_id = dict(zip(titles["title_id"].to_pylist(), titles["title"].to_pylist(), strict=True)) if titles else {}
    for column in MEMBER_COLUMNS:
        columns[column] = [[] for _ in range(rows)]
    everything = next((i for i in range(rows) if all(columns[d][i] == ALL for d in DIMENSIONS)), None)
    if everything is not None:
        columns["titles"][everything] = members[0]
        columns["title_names"][everything] = [names_by_id.get(t, t) for t in members[0]]
        columns["countries"][everything] = members[1]
        columns["devices"][everything] = members[2]
    columns["as_of"] = [as_of] * rows
    columns["first_day"] = [first_day.isoformat()] * rows
    return pa.table(columns, schema=cube_schema())


def window_of(params: Mapping[str, Any], ds: str | None) -> dict[str, Any]:
    """The DAG's window: ``days`` > 0 days ending ``end_date`` (default: the run's ``ds``), or the whole table."""
    days = int(params.get("days") or 0)
    if days <= 0:
        return {"row_filter": "", "start": None, "end": None}
    end_text = str(params.get("end_date") or ds or "")
    try:
        end = dt.date.fromisoformat(end_text)
    except ValueError:
        raise ValueError(f"end_date must be an ISO date (YYYY-MM-DD), got {end_text!r}") from None
    start = end - dt.timedelta(days=days - 1)
    return {
        "row_filter": f"event_date >= '{start.isoformat()}' and event_date <= '{end.isoformat()}'",
        "start": start.isoformat(),
        "end": end.isoformat(),
    }


def date_span(daily: pa.Table) -> tuple[dt.date, dt.date] | None:
    import pyarrow.compute as pc

    if daily.num_rows == 0:
        return None
    span = pc.min_max(daily["event_date"]).as_py()
    return span["min"], span["max"]
