"""Content performance dashboard (Streamlit): pick titles, countries, a device and days; see the daily chart.

::

    MLP_LOOKUP_URL=http://127.0.0.1:3000 streamlit run airflow_provider_mlp/demo/content_performance_app.py
    streamlit run airflow_provider_mlp/demo/content_performance_app.py -- --url http://127.0.0.1:3000

Every change of a control is one ``POST /v1/lookup`` to the MLP model service (serving the
``content-performance`` namespace with the ``SeriesCube`` lookup aggregation): the service reads
the precomputed cube rows of the chosen slices from memcached and sums their daily series over
the chosen days; this app only draws the answer. Nothing here reads the tables or the cache.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any

URL_ENV = "MLP_LOOKUP_URL"
TOKEN_ENV = "MLP_SERVING_TOKEN"
DEFAULT_URL = "http://127.0.0.1:3000"
MEASURES = {
    "Views": "views",
    "Watch hours": "watch_hours",
    "Completions": "completions",
    "Completion rate": "completion_rate",
}
ALL_DEVICES = "All devices"


class ServiceError(RuntimeError):
    """The lookup endpoint did not answer, or answered with an error."""


def service_url(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="content_performance_app")
    parser.add_argument("--url", default=os.environ.get(URL_ENV) or DEFAULT_URL, help="the MLP model service")
    args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    return str(args.url).rstrip("/")


def lookup(url: str, params: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """One ``POST /v1/lookup`` with ``params``; the answer's JSON, or a ``ServiceError`` naming the service."""
    request = urllib.request.Request(f"{url}/v1/lookup", data=json.dumps({"params": params}).encode(), method="POST")
    request.add_header("content-type", "application/json")
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        request.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer: dict[str, Any] = json.loads(response.read())
            return answer
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        raise ServiceError(f"{url}/v1/lookup answered {exc.code}: {detail}") from None
    except (OSError, ValueError) as exc:
        raise ServiceError(f"{url}/v1/lookup: {exc}") from None


def series_frame(result: dict[str, Any]) -> Any:
    """The answer's daily series as a DataFrame indexed by date, with the derived measures."""
    import pandas as pd

    frame = pd.DataFrame(
        {
            "views": result.get("views", []),
            "watch_hours": [s / 3600 for s in result.get("watch_seconds", [])],
            "completions": result.get("completions", []),
        },
        index=pd.to_datetime(pd.Series(result.get("dates", []), dtype="object")),
    )
    frame.index.name = "date"
    frame["completion_rate"] = (frame["completions"] / frame["views"].where(frame["views"] > 0)).fillna(0.0)
    return frame


def table_frame(frame: Any) -> Any:
    """The daily numbers as the app's table shows them (text, so the page reads like the metrics)."""
    import pandas as pd

    return pd.DataFrame(
        {
            "views": [f"{v:,}" for v in frame["views"]],
            "watch hours": [f"{h:,.1f}" for h in frame["watch_hours"]],
            "completions": [f"{c:,}" for c in frame["completions"]],
            "completion rate": [f"{r:.1%}" for r in frame["completion_rate"]],
        },
        index=pd.Index(frame.index.strftime("%Y-%m-%d"), name="date"),
    )


def main() -> None:
    import streamlit as st

    st.set_page_config(page_title="Content performance", layout="wide")
    url = service_url()
    st.title("Content performance")

    @st.cache_data(ttl=60, show_spinner=False)
    def members(service: str) -> dict[str, Any]:
        return lookup(service, {"query": "members"})

    try:
        known = members(url)["result"]
    except ServiceError as exc:
        st.error(f"The lookup service did not answer: {exc}")
        st.stop()
        return
    names = dict(zip(known.get("titles", []), known.get("title_names", []), strict=False))
    with st.sidebar:
        st.header("Slices")
        titles = st.multiselect(
            "Titles",
            known.get("titles", []),
            format_func=lambda t: f"{names.get(t, t)} ({t})",
            placeholder="All titles",
        )
        countries = st.multiselect("Countries", known.get("countries", []), placeholder="All countries")
        device = st.radio("Device", [ALL_DEVICES, *known.get("devices", [])])
        measure_label = st.selectbox("Measure", list(MEASURES))

    first_answer = lookup(url, {})  # the whole range of the cube, every slice
    days = [dt.date.fromisoformat(d) for d in first_answer["result"]["dates"]]
    if not days:
        st.warning("The cache holds no days yet: run the mlp_content_performance DAG.")
        st.stop()
        return
    start, end = st.slider(
        "Days", min_value=days[0], max_value=days[-1], value=(days[0], days[-1]), format="YYYY-MM-DD"
    )
    params = {
        "filters": {"title_id": titles, "country": countries, "device": [] if device == ALL_DEVICES else [device]},
        "start": start.isoformat(),
        "end": end.isoformat(),
    }
    try:
        answer = lookup(url, params)
    except ServiceError as exc:
        st.error(str(exc))
        st.stop()
        return
    result = answer["result"]
    frame = series_frame(result)
    measure = MEASURES[measure_label]

    views = int(frame["views"].sum())
    completions = int(frame["completions"].sum())
    columns = st.columns(4)
    columns[0].metric("Views", f"{views:,}")
    columns[1].metric("Watch hours", f"{frame['watch_hours'].sum():,.1f}")
    columns[2].metric("Completions", f"{completions:,}")
    columns[3].metric("Completion rate", f"{(completions / views if views else 0.0):.1%}")
    st.subheader(f"{measure_label} per day")
    st.line_chart(frame[[measure]], y_label=measure_label)
    version = answer.get("version") or {}
    lineage = "".join(
        f", {label} {version[field]}"
        for label, field in (("published by run", "run_id"), ("snapshot", "snapshot_id"))
        if version.get(field) is not None
    )
    st.caption(
        f"{result.get('slices', 0)} cached slice(s) summed by {url}/v1/lookup; cache version "
        f"{version.get('tag')} (seq {version.get('seq')}){lineage}"
    )
    with st.expander("Daily numbers", expanded=True):
        st.table(table_frame(frame))


if __name__ == "__main__":
    main()
