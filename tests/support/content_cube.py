"""The content-performance cube recomputed with pandas from raw viewing events: what tests compare the DAG's with."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

DIMENSIONS = ("title_id", "country", "device")


def pandas_cube(events: Any, first_day: dt.date, days: int) -> dict[tuple[str, str, str], dict[str, list[int]]]:
    """``{(title_id|*, country|*, device|*): {"views": [...], "watch_seconds": [...], "completions": [...]}}``.

    ``events`` is a DataFrame of the events table; every grouping set of the three dimensions, one
    dense daily series per key over ``days`` days from ``first_day``. Independent of the DAG's code:
    plain groupby, then a reindex onto the day axis.
    """
    import pandas as pd

    frame = events.copy()
    frame["day"] = (pd.to_datetime(frame["event_date"]) - pd.Timestamp(first_day)).dt.days
    frame = frame[(frame["day"] >= 0) & (frame["day"] < days)]
    frame["views"] = 1
    frame["completions"] = frame["completed"].astype("int64")
    frame["watch_seconds"] = frame["watch_seconds"].astype("int64")
    measures = ["views", "watch_seconds", "completions"]
    cube: dict[tuple[str, str, str], dict[str, list[int]]] = {}
    for kept in itertools.product([True, False], repeat=3):
        by = [d for d, keep in zip(DIMENSIONS, kept, strict=True) if keep]
        sums = frame.groupby([*by, "day"])[measures].sum().reset_index()
        for key, part in sums.groupby(by) if by else [((), sums)]:
            values = dict(zip(by, key, strict=True))
            full = tuple(str(values.get(d, "*")) for d in DIMENSIONS)
            series = part.set_index("day")[measures].reindex(range(days), fill_value=0)
            cube[full] = {m: [int(v) for v in series[m]] for m in measures}
    return cube
