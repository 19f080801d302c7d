"""Entity resolution for a content knowledge graph: which candidate title pairs are the same title?

The input is an Iceberg table of candidate pairs (``left_title``/``right_title``,
``left_year``/``right_year``, ``left_cast``/``right_cast``), as a blocking step produces them;
``mlp demo`` generates one (``airflow_provider_mlp.demo.entity_resolution.create_title_pairs``)
with typos, punctuation, translated-style variants, years off by one and overlapping cast lists,
plus a separate ground-truth table the matcher never reads.

1. **plan_shards** cuts the pair table into shards of about ``shard_bytes`` (one snapshot for all);
2. **match_shard** runs once per shard through ``@task.mlp`` (the local backend by default, a pod
   with ``[mlp] compute_backend = kubernetes``): it reads its shard with the fast reader, scores
   every pair with the native fused matcher ``match_pairs`` (token-sorted Jaro-Winkler on titles,
   token-sorted Levenshtein on cast lists, release years at most one apart) and stages the matches
   as files of ``content.title_matches``. A retried shard rewrites its own files, so it never adds rows;
3. **audit_matches** reads the staged (still invisible) matches and the ground truth and logs
   precision, recall and F1 -- the audit of a write-audit-publish;
4. **commit_matches** publishes every shard's matches in ONE snapshot whose summary carries the
   audit's numbers (``er.precision``, ``er.recall``, ...), and emits the table's asset event;
5. **report** logs the run's summary and stores it as JSON in the artifact store.

The matcher tasks run in the runtime's own Python unless ``env`` names an environment; they run
with ``runtime_packages=True``, so in an environment of their own (one adding, say, a text
normaliser) they still import the fast reader and ``match_pairs`` from the runtime's packages.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import Param, dag, task

from airflow_provider_mlp.demo.entity_resolution import (
    CAST_WEIGHT,
    MATCH_COLUMNS,
    MATCH_THRESHOLD,
    TITLE_WEIGHT,
)
from airflow_provider_mlp.operators.fastdata import IcebergCommitOperator, IcebergShardsOperator

MATCHES_TABLE = "content.title_matches"


@dag(
    dag_id="mlp_entity_resolution",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["mlp", "example", "use-case", "fastdata", "kernels", "compute"],
    doc_md=__doc__,
    params={
        "pairs_table": Param(
            "content.title_pairs",
            type="string",
            description="namespace.table of candidate title pairs; its ground truth is <pairs_table>_truth",
        ),
        "shard_bytes": Param(
            8 << 20,
            type="integer",
            minimum=1,
            description="about how many compressed bytes of the pair table each matcher task reads",
        ),
        "threshold": Param(
            MATCH_THRESHOLD,
            type="number",
            minimum=0,
            maximum=1,
            description="weighted similarity at or above which a pair is a match",
        ),
        "title_weight": Param(
            TITLE_WEIGHT, type="number", exclusiveMinimum=0, description="weight of the title similarity"
        ),
        "cast_weight": Param(
            CAST_WEIGHT, type="number", exclusiveMinimum=0, description="weight of the cast-list similarity"
        ),
        "max_year_gap": Param(
            1, type="integer", minimum=0, description="release years of a match differ by at most this"
        ),
        "threads": Param(
            0, type="integer", minimum=0, description="threads per matcher task for match_pairs (0: all cores)"
        ),
        "env": Param(
            "",
            type="string",
            description="environment (alias or env id) the matcher tasks run in; empty: the runtime's own Python",
        ),
        "report_name": Param("", type="string", description="report file name (default: the run id)"),
    },
)
def mlp_entity_resolution() -> None:
    plan = IcebergShardsOperator(
        task_id="plan_shards",
        table="{{ params.pairs_table }}",
        target_bytes="{{ params.shard_bytes }}",
        columns=MATCH_COLUMNS,
    )

    @task.mlp(
        env="{{ params.env }}",
        runtime_packages=True,
        cpu=1,
        memory="2Gi",
        retries=2,
        retry_delay=pendulum.duration(seconds=20),
    )
    def match_shard(shard: dict, params: dict, run_id: str) -> dict:
        # Runtime side only (no Airflow import): this body runs in a pod or a local process.
        import time

        from airflow_provider_mlp.demo.entity_resolution import matches_schema, score_pairs
        from airflow_provider_mlp.fastdata import Table

        started = time.perf_counter()
        pairs = Table(shard["table"]).read(shard).to_arrow()
        read_s = time.perf_counter() - started
        matches = score_pairs(
            pairs,
            threshold=float(params["threshold"]),
            title_weight=float(params["title_weight"]),
            cast_weight=float(params["cast_weight"]),
            max_year_gap=int(params["max_year_gap"]),
            threads=int(params["threads"]) or None,
        )
        score_s = time.perf_counter() - started - read_s
        # Mapped tasks race to create the table: one creates it, the others use it.
        output = Table.create(MATCHES_TABLE, matches_schema(), exist_ok=True)
        staged = output.stage(matches, shard_id=shard["shard_id"], run_id=run_id)
        print(
            f"shard {shard['shard_id']}: {pairs.num_rows} pairs read in {read_s:.2f}s, "
            f"{matches.num_rows} matches scored in {score_s:.2f}s, staged in "
            f"{time.perf_counter() - started - read_s - score_s:.2f}s"
        )
        return {**staged, "pairs": pairs.num_rows}

    @task
    def audit_matches(staged: Any, params: dict[str, Any] | None = None) -> dict[str, Any]:
        from airflow_provider_mlp.demo.entity_resolution import evaluate, truth_identifier
        from airflow_provider_mlp.fastdata import Table

        staged = list(staged)
        matches = Table(MATCHES_TABLE).read_staged(staged, columns=["pair_id"])
        truth = Table(truth_identifier((params or {})["pairs_table"])).read(columns=["pair_id", "is_match"])
        quality = evaluate(matches["pair_id"], truth.to_arrow())
        scored = sum(int(record.get("pairs", 0)) for record in staged)
        print(
            f"{scored} pairs scored in {len(staged)} shard(s), {quality['matched']} matched: "
            f"precision {quality['precision']:.4f}, recall {quality['recall']:.4f}, F1 {quality['f1']:.4f}"
        )
        return {f"er.{name}": value for name, value in {**quality, "scored": scored, "shards": len(staged)}.items()}

    staged = match_shard.expand(shard=plan.output)
    audit = audit_matches(staged)
    commit = IcebergCommitOperator(
        task_id="commit_matches", table=MATCHES_TABLE, staged=staged, snapshot_properties=audit
    )

    @task
    def report(
        audit: dict[str, Any], commit: dict[str, Any], params: dict | None = None, run_id: str | None = None
    ) -> dict[str, Any]:
        import json

        from airflow_provider_mlp.hooks.object_store import ObjectStoreHook

        summary = {
            "dag_id": "mlp_entity_resolution",
            "run_id": run_id,
            "pairs_table": (params or {})["pairs_table"],
            "matches_table": commit["table"],
            "snapshot_id": commit["snapshot_id"],
            "already_committed": commit["already_committed"],
            **{name.removeprefix("er."): value for name, value in audit.items()},
        }
        hook = ObjectStoreHook()
        name = (params or {}).get("report_name") or str(run_id)
        hook.fs.makedirs(f"{hook.url}/entity_resolution", exist_ok=True)
        path = f"{hook.url}/entity_resolution/{name}.json"
        hook.fs.pipe(path, json.dumps(summary, indent=2).encode())
        print(f"report: {path}: {json.dumps(summary)}")
        return summary

    report(audit, commit.output)


mlp_entity_resolution()
