"""Event latency through a real Airflow 3: commit -> downstream DAG run queued.

Starts its own local Airflow (``mlp airflow up``'s launcher: every listener on 127.0.0.1, LocalExecutor
on SQLite) in a temporary AIRFLOW_HOME and MLP_HOME (stopped at the end), and measures, interleaved,
several samples of the time from an Iceberg snapshot's commit timestamp to the ``queued_at`` of the
downstream run it caused:

- ``internal``: a commit through the provider (``IcebergCommitOperator``), announced by its outlet event;
- ``poll1`` / ``poll5``: a plain pyiceberg commit outside Airflow, seen by our snapshot watcher
  (``IcebergSnapshotWatchTrigger``) polling every 1 s / 5 s;
- ``peer_poll1``: the same commit seen by the Iceberg provider's own ``IcebergTableSnapshotTrigger``
  (through an ``iceberg`` connection to the same SQL catalog), polling every 1 s.

Prints medians with min-max spread. Last line: ``bench: internal_s=S latency_poll1_s=S latency_poll5_s=S``
(plus ``peer_poll1_s``).
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
        @dag(dag_id=dag_id, schedule=schedule, start_date=START, catchup=False)
        def consume():
            @task
            def noop():
                return None

            noop()

        consume()


    consumer("bench_internal", iceberg_table_asset("bench.internal"))
    consumer("bench_poll1", watched_table_asset("bench.ext1", poll_interval=1))
    consumer("bench_poll5", watched_table_asset("bench.ext5", poll_interval=5))
    peer = IcebergTableSnapshotTrigger(table="bench.peer1", iceberg_conn_id="bench_iceberg", poll_interval=1)
    peer_asset = Asset("iceberg://bench_iceberg/bench/peer1", watchers=[AssetWatcher(name="peer1", trigger=peer)])
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
    raise SystemExit(f"{dag_id}: no new run within {timeout}s")


def _latency(airflow: AirflowCluster, dag_id: str, table: Any, commit: Any) -> float:
    known = len(airflow.runs(dag_id))
    commit()
    run = _wait_new_run(airflow, dag_id, known)
    snapshot_ms = table.refresh().current_snapshot().timestamp_ms
    return _ts(run["queued_at"]) - snapshot_ms / 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 samples (under a minute after start-up)")
    args = parser.parse_args()
    samples = 2 if args.quick else args.samples
    import pyarrow as pa

    with tempfile.TemporaryDirectory(prefix="mlp-bench-events-") as tmp:
        root = Path(tmp)
        os.environ["MLP_HOME"] = str(root / "mlp-home")
        from airflow_provider_mlp.config import settings
        from airflow_provider_mlp.fastdata.catalog import default_catalog

        catalog = default_catalog()
        catalog.create_namespace("bench")
        schema = pa.schema([pa.field("x", pa.int64())])
        tables = {name: catalog.create_table(name, schema=schema) for name in TABLES}
        props = settings().catalog_properties()
        conn = {"conn_type": "iceberg", "extra": {"type": "sql", **{k: v for k, v in props.items() if k != "type"}}}
        (root / "dags").mkdir()
        (root / "dags" / "bench_dags.py").write_text(DAGS)
        env = {"MLP_HOME": os.environ["MLP_HOME"], "AIRFLOW_CONN_BENCH_ICEBERG": json.dumps(conn)}
        print("starting Airflow ...", file=sys.stderr)
        with running_airflow(root / "airflow-home", root / "dags", env=env) as airflow:
            airflow.wait_for_dags(
                ["bench_producer", "bench_internal", "bench_poll1", "bench_poll5", "bench_peer_poll1"]
            )
            for uri in ("iceberg://mlp/bench/ext1", "iceberg://mlp/bench/ext5", "iceberg://bench_iceberg/bench/peer1"):
                airflow.wait_for_asset(uri)
            time.sleep(8)  # the triggerer starts the watchers

            def append(name: str) -> Any:
                return lambda: tables[name].append(pa.table({"x": [1]}, schema=schema))

            def produce() -> None:
                status, body = airflow.api("POST", "/api/v2/dags/bench_producer/dagRuns", {"logical_date": None})
                assert status == 200, body

            # The peer's first poll reports the current head as new: prime it with one commit.
            known = len(airflow.runs("bench_peer_poll1"))
            append("bench.peer1")()
            try:
                _wait_new_run(airflow, "bench_peer_poll1", known, timeout=20)
                peer = True
            except SystemExit:
                peer = False
                print("peer trigger produced no run within 20 s: peer not measured", file=sys.stderr)
            results: dict[str, list[float]] = {"internal": [], "poll1": [], "poll5": []}
            if peer:
                results["peer_poll1"] = []
            for _ in range(samples):
                results["internal"].append(_latency(airflow, "bench_internal", tables["bench.internal"], produce))
                results["poll1"].append(_latency(airflow, "bench_poll1", tables["bench.ext1"], append("bench.ext1")))
                results["poll5"].append(_latency(airflow, "bench_poll5", tables["bench.ext5"], append("bench.ext5")))
                if peer:
                    results["peer_poll1"].append(
                        _latency(airflow, "bench_peer_poll1", tables["bench.peer1"], append("bench.peer1"))
                    )
    medians: dict[str, float] = {}
    for name, values in results.items():
        medians[name] = statistics.median(values)
        print(
            f"{name:>11}: median {medians[name]:.2f} s  (min {min(values):.2f}, max {max(values):.2f}, n={len(values)})"
        )
    print(
        f"bench: internal_s={medians['internal']:.2f} latency_poll1_s={medians['poll1']:.2f} "
        f"latency_poll5_s={medians['poll5']:.2f}" + (f" peer_poll1_s={medians['peer_poll1']:.2f}" if peer else "")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
