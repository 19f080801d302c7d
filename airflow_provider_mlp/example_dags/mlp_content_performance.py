"""Content performance: aggregate viewing events daily in parallel shards and publish a cube for interactive charts.

The input is an Iceberg table of plays (``event_date``, ``title_id``, ``country``, ``device``,
``watch_seconds``, ``completed``, ...), partitioned by day; ``mlp demo`` generates one
(``airflow_provider_mlp.demo.content_performance.create_viewing_events``).

1. **window** picks the days to aggregate: the ``days`` days ending ``end_date`` (default: the
   run's ``ds``, the day a daily run covers), or the whole table when ``days`` is 0;
2. **plan_shards** cuts that window of the table into shards of about ``shard_bytes`` (one
   snapshot for all; partition pruning skips the other days);
3. **aggregate_shard** runs once per shard through ``@task.mlp`` (the local backend by default, a
   pod with ``[mlp] compute_backend = kubernetes``): it reads its shard with the fast reader and
   returns its partial aggregate (views, watch seconds, completions per day, title, country and
   device) as an Arrow table, kept in the artifact store;
4. **build_cube** adds the partial aggregates up and builds the cube: every rollup over title,
   country and device (``*`` = all members) as dense daily series, written to
   ``content.title_performance`` as the rows of this ``as_of`` day (a re-run replaces them);
5. **publish** (``PublishToCacheOperator``) publishes those rows to memcached as a new version of
   ``namespace``: written, verified, then switched to atomically; readers never see half a cube;
6. **report** logs the run's summary (cache version, rows, snapshot) and stores it as JSON.

The serving lookup endpoint answers charts from the cache
(``MLP_SERVING_LOOKUP_AGGREGATION=airflow_provider_mlp.demo.content_performance:LOOKUP_AGGREGATION``):
filters and a date range in, one daily series summed over the chosen slices out. The Streamlit
app ``airflow_provider_mlp/demo/content_performance_app.py`` draws it.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import Param, dag, task

from airflow_provider_mlp.demo.content_performance import (
    CUBE_TABLE,
    CUBE_VALUES,
    DIMENSIONS,
    EVENT_COLUMNS,
    EVENTS_TABLE,
    NAMESPACE,
    TITLES_TABLE,
)
from airflow_provider_mlp.operators.fastdata import IcebergShardsOperator
from airflow_provider_mlp.operators.precompute import PublishToCacheOperator

WINDOW = "ti.xcom_pull(task_ids='window')"
CUBE = "ti.xcom_pull(task_ids='build_cube')"


@dag(
    dag_id="mlp_content_performance",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["mlp", "example", "use-case", "fastdata", "compute", "precompute", "serving"],
    doc_md=__doc__,
    params={
        "events_table": Param(EVENTS_TABLE, type="string", description="namespace.table of viewing events"),
        "titles_table": Param(
            TITLES_TABLE, type="string", description="namespace.table of titles (title_id, title): names for the app"
        ),
        "days": Param(
            0,
            type="integer",
            minimum=0,
            description="aggregate the days days ending end_date; 0: every day in the table",
        ),
        "end_date": Param(
            "",
            type="string",
            description="last day of the window (YYYY-MM-DD); empty: the run's ds (the day a daily run covers)",
        ),
        "shard_bytes": Param(
            2 << 20,
            type="integer",
            minimum=1,
            description="about how many compressed bytes of the events table each aggregation task reads",
        ),
        "namespace": Param(NAMESPACE, type="string", description="memcached namespace the cube is published to"),
        "memcached_servers": Param(
            "",
            type="string",
            description="memcached servers host:port,...; empty: the mlp_memcached connection / [mlp] settings",
        ),
        "env": Param(
            "",
            type="string",
            description="environment (alias or env id) the aggregation tasks run in; empty: the runtime's own Python",
        ),
        "report_name": Param("", type="string", description="report file name (default: the run id)"),
    },
)
def mlp_content_performance() -> None:
    @task
    def window(params: dict[str, Any] | None = None, ds: str | None = None) -> dict[str, Any]:
        from airflow_provider_mlp.demo.content_performance import window_of

        chosen = window_of(params or {}, ds)
        print(f"window: {chosen['start'] or 'first day'} .. {chosen['end'] or 'last day'} ({chosen['row_filter']!r})")
        return chosen

    plan = IcebergShardsOperator(
        task_id="plan_shards",
        table="{{ params.events_table }}",
        target_bytes="{{ params.shard_bytes }}",
        row_filter="{{ " + WINDOW + "['row_filter'] }}",
        columns=EVENT_COLUMNS,
    )

    @task.mlp(env="{{ params.env }}", cpu=1, memory="2Gi", retries=2, retry_delay=pendulum.duration(seconds=20))
    def aggregate_shard(shard: dict) -> Any:
        # Runtime side only (no Airflow import): this body runs in a pod or a local process.
        import time

        from airflow_provider_mlp.demo.content_performance import aggregate_events
        from airflow_provider_mlp.fastdata import Table

        started = time.perf_counter()
        events = Table(shard["table"]).read(shard).to_arrow()
        read_s = time.perf_counter() - started
        partial = aggregate_events(events)
        print(
            f"shard {shard['shard_id']}: {events.num_rows} events read in {read_s:.2f}s, "
            f"{partial.num_rows} partial rows in {time.perf_counter() - started - read_s:.2f}s"
        )
        return partial

    @task
    def build_cube(
        partials: Any, chosen: dict[str, Any], params: dict[str, Any] | None = None, run_id: str | None = None
    ) -> dict[str, Any]:
        import datetime as dt
        import time

        import pyarrow.compute as pc

        from airflow_provider_mlp.compute.work import load_result
        from airflow_provider_mlp.demo.content_performance import build_cube as make_cube
        from airflow_provider_mlp.demo.content_performance import combine_partials, cube_schema, date_span
        from airflow_provider_mlp.fastdata import Table
        from airflow_provider_mlp.hooks.object_store import ObjectStoreHook

        started = time.perf_counter()
        options = ObjectStoreHook().storage_options
        tables = [load_result(p, options) if isinstance(p, dict) else p for p in partials]
        daily = combine_partials(tables)
        span = date_span(daily)
        if chosen["start"] is not None:
            first, last = dt.date.fromisoformat(chosen["start"]), dt.date.fromisoformat(chosen["end"])
        elif span is not None:
            first, last = span
        else:
            raise ValueError(f"{(params or {})['events_table']} has no events: nothing to publish")
        titles = Table((params or {})["titles_table"]).read(columns=["title_id", "title"]).to_arrow()
        cube = make_cube(daily, titles, first_day=first, days=(last - first).days + 1, as_of=last)
        table = Table.create(CUBE_TABLE, cube_schema(), partition_by=["as_of"], exist_ok=True)
        # The cube of one as_of day: a re-run of the day replaces its rows, other days stay.
        snapshot_id = table.overwrite(cube, f"as_of = '{last.isoformat()}'", run_id=str(run_id))
        summary = {
            "table": CUBE_TABLE,
            "snapshot_id": snapshot_id,
            "as_of": last.isoformat(),
            "first_day": first.isoformat(),
            "days": (last - first).days + 1,
            "shards": len(tables),
            "partial_rows": sum(t.num_rows for t in tables),
            "daily_rows": daily.num_rows,
            "cube_rows": cube.num_rows,
            "views": int(pc.sum(daily["views"]).as_py() or 0),
        }
        print(f"cube: {summary} in {time.perf_counter() - started:.2f}s")
        return summary

    chosen = window()
    chosen >> plan
    partials = aggregate_shard.expand(shard=plan.output)
    cube = build_cube(partials, chosen)
    publish = PublishToCacheOperator(
        task_id="publish",
        table=CUBE_TABLE,
        key=list(DIMENSIONS),
        values=CUBE_VALUES,
        namespace="{{ params.namespace }}",
        keep_versions=3,
        snapshot_id="{{ " + CUBE + "['snapshot_id'] }}",
        row_filter="as_of = '{{ " + CUBE + "['as_of'] }}'",
        servers="{{ params.memcached_servers }}",
    )
    cube >> publish

    @task
    def report(
        cube: dict[str, Any], published: dict[str, Any], params: dict | None = None, run_id: str | None = None
    ) -> dict[str, Any]:
        import json

        from airflow_provider_mlp.hooks.object_store import ObjectStoreHook

        summary = {
            "dag_id": "mlp_content_performance",
            "run_id": run_id,
            "events_table": (params or {})["events_table"],
            **cube,
            "namespace": published["namespace"],
            "version": published["tag"],
            "seq": published["seq"],
            "published_rows": published["rows"],
            "switched": published["switched"],
        }
        hook = ObjectStoreHook()
        name = (params or {}).get("report_name") or str(run_id)
        hook.fs.makedirs(f"{hook.url}/content_performance", exist_ok=True)
        path = f"{hook.url}/content_performance/{name}.json"
        hook.fs.pipe(path, json.dumps(summary, indent=2).encode())
        print(f"report: {path}: {json.dumps(summary)}")
        return summary

    report(cube, publish.output)


mlp_content_performance()
