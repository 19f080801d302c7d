"""Quickstart: plan shards of an Iceberg table, read them in parallel mapped tasks, write a report.

This is what `mlp demo` (README's first command) runs with `airflow dags test`. It shows the
Fast Data pattern every use case builds on: one planning task returns JSON shard descriptors,
``.expand()`` fans out one task per shard, each task reads its shard through the fast reader,
and a final task gathers the results.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from airflow_provider_mlp.operators.fastdata import IcebergShardsOperator


@dag(
    dag_id="mlp_quickstart",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["mlp", "example", "fastdata"],
    params={
        "table": Param("demo.events", type="string", description="namespace.table to summarize"),
        "report_name": Param("", type="string", description="report file name (default: the run id)"),
    },
)
def mlp_quickstart() -> None:
    # Small shards on purpose, so that even the demo's table fans out into several tasks.
    plan = IcebergShardsOperator(task_id="plan_shards", table="{{ params.table }}", target_bytes=64 << 10)

    @task
    def summarize_shard(shard: dict) -> dict:
        import pyarrow.compute as pc

        from airflow_provider_mlp.fastdata import Table

        events = Table(shard["table"]).read(shard, columns=["event_type", "amount"]).to_arrow()
        per_type = events.group_by("event_type").aggregate([("amount", "sum"), ("amount", "count")])
        return {
            "shard_id": shard["shard_id"],
            "rows": events.num_rows,
            "amount": float(pc.sum(events["amount"]).as_py() or 0.0),
            "by_type": {
                row["event_type"]: {"rows": row["amount_count"], "amount": row["amount_sum"]}
                for row in per_type.to_pylist()
            },
        }

    @task
    def write_report(summaries: list[dict], params: dict | None = None, run_id: str | None = None) -> dict:
        import json

        from airflow_provider_mlp.hooks.object_store import ObjectStoreHook

        summaries = list(summaries)
        by_type: dict[str, dict[str, float]] = {}
        for summary in summaries:
            for event_type, part in summary["by_type"].items():
                total = by_type.setdefault(event_type, {"rows": 0, "amount": 0.0})
                total["rows"] += part["rows"]
                total["amount"] = round(total["amount"] + part["amount"], 2)
        report = {
            "table": (params or {})["table"],
            "run_id": run_id,
            "shards": len(summaries),
            "rows": sum(s["rows"] for s in summaries),
            "amount": round(sum(s["amount"] for s in summaries), 2),
            "by_type": dict(sorted(by_type.items())),
        }
        hook = ObjectStoreHook()
        name = (params or {}).get("report_name") or str(run_id)
        path = f"{hook.url}/quickstart/{name}.json"
        hook.fs.makedirs(f"{hook.url}/quickstart", exist_ok=True)
        hook.fs.pipe(path, json.dumps(report, indent=2).encode())
        print(f"report: {path}")
        return report

    write_report(summarize_shard.expand(shard=plan.output))


mlp_quickstart()
