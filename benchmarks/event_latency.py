"""Event latency through a real Airflow 3: commit -> downstream DAG run queued.

Starts its own local Airflow (``mlp airflow up``'s launcher: every listener on 127.0.0.1, LocalExecutor
on SQLite) in a temporary AIRFLOW_HOME and MLP_HOME (stopped at the end), and measures, interleaved,
several samples of the time from an Iceberg snapshot's commit timestamp to the ``queued_at`` of the
downstream run it caused:

- ``internal``: a commit through the provider (``IcebergCommitOperator``), announced by its outlet event;
- ``poll1`` / ``poll5``: a plain pyiceberg commit outside Airflow, seen by our snapshot watcher
  (``IcebergSnapshotWatchTrigger``) polling every 1 s / 5 s;
- ``peer_poll1``: the same commit seen by the peer, the Iceberg provider's own ``IcebergTableSnapshotTrigger``
  as an ``AssetWatcher``, through an ``iceberg`` connection to the same SQL catalog, polling every 1 s.

The peer's ``IcebergHook`` names the pyiceberg catalog after the connection id, and pyiceberg's SQL catalog
keeps each catalog's tables apart by that name: the connection id must be the embedded catalog's name
(``mlp``), or the peer sees no table at all and (by design) waits silently for it to appear.

One Airflow serves every contender; each watcher is first seen firing once (a warm-up commit, not
counted), then the samples are taken in turns (the external commits while the producer DAG's tasks
start, the slow part of a provider commit that the measured latency does not include). Prints medians
with min-max spread and the peer's median over ours. Last line: ``bench: internal_s=S latency_poll1_s=S
latency_poll5_s=S peer_poll1_s=S peer_over_mlp_poll1=R``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import textwrap
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.airflow_cluster import AirflowCluster, running_airflow

DAGS = textwrap.dedent(
    """
    from __future__ import annotations

    import pendulum
    from airflow.providers.apache.iceberg.triggers.iceberg import IcebergTableSnapshotTrigger
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import Asset, AssetWatcher, dag, task

    from airflow_provider_mlp.operators.fastdata import IcebergCommitOperator, iceberg_table_asset, stage_to_table
    from airflow_provider_mlp.triggers.iceberg import watched_table_asset

    START = pendulum.datetime(2026, 1, 1, tz="UTC")


    @dag(dag_id="bench_producer", schedule=None, start_date=START, catchup=False)
    def bench_producer():
        @task
        def stage(run_id=None):
            import pyarrow as pa

            return stage_to_table("bench.internal", pa.table({"x": [1]}), shard=0)

        IcebergCommitOperator(task_id="commit", table="bench.internal", staged=stage())


    bench_producer()

    def consumer(dag_id, schedule):
        # EmptyOperator is finished by the scheduler itself: the downstream runs start no task
        # processes that would compete with the next sample for the two cores.
        @dag(dag_id=dag_id, schedule=schedule, start_date=START, catchup=False)
        def consume():
            EmptyOperator(task_id="noop")

        consume()


    consumer("bench_internal", iceberg_table_asset("bench.internal"))
    consumer("bench_poll1", watched_table_asset("bench.ext1", poll_interval=1))
    consumer("bench_poll5", watched_table_asset("bench.ext5", poll_interval=5))
    peer = IcebergTableSnapshotTrigger(table="bench.peer1", iceberg_conn_id="mlp", poll_interval=1)
    peer_asset = Asset("iceberg://mlp/bench/peer1", watchers=[AssetWatcher(name="peer1", trigger=peer)])
    consumer("bench_peer_poll1", peer_asset)
    """
)
TABLES = ("bench.internal", "bench.ext1", "bench.ext5", "bench.peer1")


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _wait_new_run(airflow: AirflowCluster, dag_id: str, known: int, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = airflow.runs(dag_id)
        if len(runs) > known:
            return runs[-1]
        time.sleep(0.1)
    raise SystemExit(f"{dag_id}: no new run within {timeout:.0f}s of a commit to its table")


def _latency(airflow: AirflowCluster, dag_id: str, table: Any, commit: Any) -> float:
    known = len(airflow.runs(dag_id))
    commit()
    run = _wait_new_run(airflow, dag_id, known)
    snapshot_ms = table.refresh().current_snapshot().timestamp_ms
    return _ts(run["queued_at"]) - snapshot_ms / 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 samples each (about a minute with start-up)")
    args = parser.parse_args()
    samples = 2 if args.quick else args.samples
    import pyarrow as pa

    with tempfile.TemporaryDirectory(prefix="mlp-bench-events-") as tmp:
        root = Path(tmp)
        os.environ["MLP_HOME"] = str(root / "mlp-home")
        from airflow_provider_mlp.config import settings
        from airflow_provider_mlp.fastdata.catalog import default_catalog

        resolved = settings()
        catalog = default_catalog()
        catalog.create_namespace("bench")
        schema = pa.schema([pa.field("x", pa.int64())])
        # No snapshot yet: each watcher's first event is the warm-up commit below.
        tables = {name: catalog.create_table(name, schema=schema) for name in TABLES}
        props = resolved.catalog_properties()
        conn = {"conn_type": "iceberg", "extra": props}
        (root / "dags").mkdir()
        (root / "dags" / "bench_dags.py").write_text(DAGS)
        env = {
            "MLP_HOME": os.environ["MLP_HOME"],
            # The connection id is the catalog's name (see the module docstring).
            f"AIRFLOW_CONN_{resolved.catalog_name.upper()}": json.dumps(conn),
        }
        started = time.monotonic()
        print("starting Airflow ...", file=sys.stderr)
        with running_airflow(root / "airflow-home", root / "dags", env=env) as airflow:
            contenders = {
                "internal": ("bench_internal", "bench.internal"),
                "poll1": ("bench_poll1", "bench.ext1"),
                "poll5": ("bench_poll5", "bench.ext5"),
                "peer_poll1": ("bench_peer_poll1", "bench.peer1"),
            }
            airflow.wait_for_dags(["bench_producer", *(dag_id for dag_id, _ in contenders.values())])
            for uri in ("iceberg://mlp/bench/ext1", "iceberg://mlp/bench/ext5", "iceberg://mlp/bench/peer1"):
                airflow.wait_for_asset(uri)
            print(f"Airflow up after {time.monotonic() - started:.0f}s", file=sys.stderr)

            def append(name: str) -> Any:
                return lambda: tables[name].append(pa.table({"x": [1]}, schema=schema))

            def produce() -> None:
                status, body = airflow.api("POST", "/api/v2/dags/bench_producer/dagRuns", {"logical_date": None})
                assert status == 200, body

            commits = {"internal": produce, **{k: append(t) for k, (_, t) in contenders.items() if k != "internal"}}
            # Warm-up, all at once: the triggerer picks the watchers up some seconds after the DAGs are
            # parsed; the first commit each one reports shows it is live (a watcher that never fires is an error).
            known = {k: len(airflow.runs(dag_id)) for k, (dag_id, _) in contenders.items()}
            for name, (_dag_id, _table) in contenders.items():
                if name != "internal":
                    commits[name]()
            for name, (dag_id, _table) in contenders.items():
                if name != "internal":
                    _wait_new_run(airflow, dag_id, known[name], timeout=90)
            print(f"watchers live after {time.monotonic() - started:.0f}s", file=sys.stderr)
            results: dict[str, list[float]] = {name: [] for name in contenders}
            for _ in range(samples):
                # The producer's run takes seconds of task start-up before its commit: the external
                # contenders take their turns meanwhile (each measures from its own snapshot's timestamp).
                internal_known = len(airflow.runs("bench_internal"))
                produce()
                for name, (dag_id, table) in contenders.items():
                    if name != "internal":
                        results[name].append(_latency(airflow, dag_id, tables[table], commits[name]))
                run = _wait_new_run(airflow, "bench_internal", internal_known)
                snapshot_ms = tables["bench.internal"].refresh().current_snapshot().timestamp_ms
                results["internal"].append(_ts(run["queued_at"]) - snapshot_ms / 1000)
        print(f"done after {time.monotonic() - started:.0f}s", file=sys.stderr)
    medians: dict[str, float] = {}
    for name, values in results.items():
        medians[name] = statistics.median(values)
        print(
            f"{name:>11}: median {medians[name]:.2f} s  (min {min(values):.2f}, max {max(values):.2f}, n={len(values)})"
        )
    ratio = medians["peer_poll1"] / medians["poll1"]
    print(f"peer (IcebergTableSnapshotTrigger) over mlp (IcebergSnapshotWatchTrigger) at 1 s polls: {ratio:.2f}x")
    print(
        f"bench: internal_s={medians['internal']:.2f} latency_poll1_s={medians['poll1']:.2f} "
        f"latency_poll5_s={medians['poll5']:.2f} peer_poll1_s={medians['peer_poll1']:.2f} "
        f"peer_over_mlp_poll1={ratio:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
