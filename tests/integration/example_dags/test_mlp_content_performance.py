"""Use case 4 through a real Airflow, memcached and `bentoml serve`: generated viewing events ->
`airflow dags test mlp_content_performance` (shards -> mapped @task.mlp -> cube -> versioned publish) -> the cube
in memcached equals a pandas recomputation of the events table, and the lookup endpoint answers charts from it."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from contextlib import ExitStack
from pathlib import Path

import pyarrow as pa
import pytest

from airflow_provider_mlp.demo.content_performance import (
    CUBE_TABLE,
    CUBE_VALUES,
    DIMENSIONS,
    NAMESPACE,
    aggregate_events,
    build_cube,
    combine_partials,
    create_viewing_events,
    service_env,
    window_of,
)
from airflow_provider_mlp.demo.runner import example_dags_folder
from airflow_provider_mlp.fastdata import Table
from airflow_provider_mlp.precompute import CacheNamespace, CacheReader, publish
from tests.support.airflow_runs import AIRFLOW, airflow_env, assert_succeeded
from tests.support.content_cube import pandas_cube
from tests.support.memcached import running_memcached
from tests.support.serving import ServingProcess, http

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCALE = 0.1  # 40,000 plays of 25 titles over 60 days
AGGREGATION = "airflow_provider_mlp.demo.content_performance:LOOKUP_AGGREGATION"


def _dags_test(env: dict[str, str], conf: dict[str, object]) -> float:
    import subprocess

    started = time.monotonic()
    run = subprocess.run(
        [AIRFLOW, "dags", "test", "mlp_content_performance", "--conf", json.dumps(conf)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert_succeeded(run)
    return time.monotonic() - started


def _cube_of(events: Table, as_of: dt.date) -> pa.Table:
    """The cube of the 14 days ending ``as_of``, computed in this process (as an earlier day's run would have)."""
    first = as_of - dt.timedelta(days=13)
    chosen = window_of({"days": 14, "end_date": as_of.isoformat()}, None)
    daily = combine_partials([aggregate_events(events.read(row_filter=chosen["row_filter"]).to_arrow())])
    return build_cube(daily, None, first_day=first, days=14, as_of=as_of)


def test_content_performance_dag_publishes_the_cube_and_the_service_answers_from_it(
    mlp_home: Path, tmp_path: Path
) -> None:
    import subprocess

    events_table, _ = create_viewing_events(SCALE, row_group_rows=5_000)
    events = events_table.read().to_arrow().to_pandas()
    env = airflow_env(tmp_path, example_dags_folder(), MLP_HOME=str(mlp_home), MLP_COMPUTE_BACKEND="local")
    migrate = subprocess.run([AIRFLOW, "db", "migrate"], env=env, capture_output=True, text=True, timeout=300)
    assert migrate.returncode == 0, migrate.stderr[-3000:]

    with running_memcached(1) as servers, ExitStack() as stack:
        address = servers[0].address
        # Yesterday's cube, already served: the run must switch readers from it to its own, atomically.
        previous = _cube_of(events_table, dt.date(2026, 2, 13))
        earlier = publish(previous, key=list(DIMENSIONS), values=CUBE_VALUES, namespace=NAMESPACE, servers=address)
        conf = {"memcached_servers": address, "shard_bytes": 64 << 10, "days": 14, "end_date": "2026-02-14"}
        elapsed = _dags_test(env, {**conf, "report_name": "window"})
        window = json.loads((mlp_home / "artifacts" / "content_performance" / "window.json").read_text())
        print(f"\nairflow dags test mlp_content_performance (14 of 60 days, {len(events)} events): {elapsed:.1f}s")

        # The report names the real run, the shards it fanned out to and the version it published.
        in_window = events[
            (events["event_date"] >= dt.date(2026, 2, 1)) & (events["event_date"] <= dt.date(2026, 2, 14))
        ]
        assert window["run_id"].startswith("manual__") and window["shards"] >= 2, window
        assert window["views"] == len(in_window) and window["days"] == 14 and window["switched"], window
        assert window["first_day"] == "2026-02-01" and window["as_of"] == "2026-02-14"
        assert window["seq"] == earlier.seq + 1

        # The cache's current version is the run's publish, traced to its snapshot of the cube table; the
        # previous version is kept for rollback.
        namespace = stack.enter_context(CacheNamespace(NAMESPACE, address))
        current = namespace.current()
        assert current["tag"] == window["version"] and current["run_id"] == window["run_id"], current
        assert current["dag_id"] == "mlp_content_performance"
        assert current["source"]["table"] == CUBE_TABLE
        assert current["source"]["snapshot_id"] == window["snapshot_id"]
        assert current["row_count"] == window["cube_rows"] == window["published_rows"]
        versions = namespace.versions()  # newest first
        assert [v["tag"] for v in versions] == [window["version"], earlier.tag] and versions[0]["current"]

        # Every cube row in memcached equals the pandas recomputation from the raw events.
        windowed = pandas_cube(in_window, dt.date(2026, 2, 1), 14)
        with CacheReader(NAMESPACE, address) as reader:
            cached = reader.get_many(list(windowed))
        assert len(windowed) == window["cube_rows"] and set(cached) == set(windowed)
        for key, series in windowed.items():
            assert {m: cached[key][m] for m in series} == series, key
            assert cached[key]["first_day"] == "2026-02-01"
        # The cube table holds this as_of day's rows (a re-run of the day would replace just them).
        cube_days = Table(CUBE_TABLE).read(columns=["as_of"]).to_arrow()["as_of"].unique().to_pylist()
        assert cube_days == [dt.date(2026, 2, 14)]

        # The service answers from the current (window) version: a daily series summed over the chosen slices.
        service = ServingProcess(
            {
                "MLP_HOME": str(mlp_home),
                "BENTOML_HOME": str(tmp_path / "bentoml"),
                **service_env(address),
            },
            tmp_path / "bentoml-serve.log",
        )
        with service:
            status, _, answer = http("GET", service.url + "/readyz")
            assert status == 200 and answer["model"] is None and answer["lookup_aggregation"] == AGGREGATION
            top = max(
                (k for k in windowed if k[1:] == ("*", "*") and k[0] != "*"), key=lambda k: sum(windowed[k]["views"])
            )
            params = {
                "filters": {"title_id": [top[0]], "country": ["US", "GB"], "device": ["tv", "mobile"]},
                "start": "2026-02-03",
                "end": "2026-02-09",
            }
            status, _, answer = http("POST", service.url + "/v1/lookup", {"params": params})
            assert status == 200, answer
            slices = [(top[0], c, d) for c in ("US", "GB") for d in ("tv", "mobile")]
            for measure in ("views", "watch_seconds", "completions"):
                summed = [sum(windowed.get(s, {measure: [0] * 14})[measure][i] for s in slices) for i in range(2, 9)]
                assert answer["result"][measure] == summed, measure
            assert answer["result"]["dates"] == [f"2026-02-0{d}" for d in range(3, 10)]
            assert answer["version"]["tag"] == window["version"] and answer["version"]["run_id"] == window["run_id"]
            assert answer["missing"] == [list(s) for s in slices if s not in windowed]

            status, _, everything = http("POST", service.url + "/v1/lookup", {"params": {}})
            assert status == 200 and everything["result"]["views"] == windowed[("*", "*", "*")]["views"]
            status, _, members = http("POST", service.url + "/v1/lookup", {"params": {"query": "members"}})
            assert status == 200 and members["result"]["countries"] == sorted(set(in_window["country"]))
            status, _, refused = http("POST", service.url + "/v1/lookup", {"params": {"end": "tomorrow"}})
            assert status == 422 and "params.end" in refused["error"], refused
            status, _, refused = http("POST", service.url + "/v1/predict", {"key": "t0001"})
            assert status == 404, refused
        # The environment of this test process is untouched by the service's.
        assert "MLP_SERVING_LOOKUP_AGGREGATION" not in os.environ
