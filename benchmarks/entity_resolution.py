"""Entity resolution end to end: the mlp_entity_resolution DAG's work against one pandas + rapidfuzz task.

Data: N generated candidate title pairs (``airflow_provider_mlp.demo.entity_resolution``; typos,
punctuation, translated-style variants, years off by one, overlapping casts, hard negatives) in
an Iceberg table of the embedded catalog, with its ground-truth table (3M pairs; --quick: 200k).
Both contenders compute the same scores: token-sorted Jaro-Winkler on lower-cased titles (weight
0.6), token-sorted Levenshtein on the joined cast lists (0.4), threshold 0.72, years at most one
apart (checked first: the string metrics score only the pairs it leaves); both read the pair
table and the truth, measure precision/recall, and commit the matches to an Iceberg table with the
numbers in the snapshot summary.

- ``mlp``: what the DAG does -- plan shards, one local-backend process per shard (the
  ``@task.mlp`` bootstrap, one shard per core of this 2-core machine) reading its shard with the fast
  reader, scoring with ``match_pairs`` and staging its matches; then the audit of the staged
  matches and ONE commit.
- ``pandas_rapidfuzz``: the same in one task, as the seed describes it: pyiceberg
  ``scan().to_pandas()`` of the whole table, rapidfuzz's ``JaroWinkler``/``Levenshtein`` per row
  over the token-sorted strings, a pandas filter, ``table.append``.
- ``pandas_cpdist`` (for reference): the same, scoring with rapidfuzz's vectorised
  ``process.cpdist(workers=-1)`` instead of per-row calls.

Contenders are interleaved, several rounds (see ``_timing``); medians with min-max; the ratio is
taken within each round. The last line is ``bench: er_pairs_per_s=N vs_pandas_rapidfuzz=X
vs_pandas_cpdist=Y precision=P recall=R`` (ours).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

# benchmarks/ is on sys.path when a benchmark runs as a script.
from _timing import Samples, header, interleaved, timer

PAIRS_TABLE = "content.title_pairs"
OURS_TABLE = "content.title_matches"
PEER_TABLE = "content.title_matches_pandas"
WORKERS = 2


def match_shard(shard: dict[str, Any], run_id: str, threads: int) -> dict[str, Any]:
    """The DAG's match_shard body (runs in the local backend's process)."""
    from airflow_provider_mlp.demo.entity_resolution import matches_schema, score_pairs
    from airflow_provider_mlp.fastdata import Table

    pairs = Table(shard["table"]).read(shard).to_arrow()
    matches = score_pairs(pairs, threads=threads)
    output = Table.create(OURS_TABLE, matches_schema(), exist_ok=True)
    return {**output.stage(matches, shard_id=shard["shard_id"], run_id=run_id), "pairs": pairs.num_rows}


def run_ours(round_id: list[int], target_bytes: int) -> dict[str, Any]:
    from airflow_provider_mlp.compute import local, pod
    from airflow_provider_mlp.compute.work import (
        WorkLocation,
        decode_result,
        encode_payload,
        put_payload,
        read_result_header,
    )
    from airflow_provider_mlp.config import settings
    from airflow_provider_mlp.demo.entity_resolution import MATCH_COLUMNS, evaluate, truth_identifier
    from airflow_provider_mlp.fastdata import Table

    round_id[0] += 1
    run_id = f"bench__{round_id[0]}"
    s = settings()
    shards = Table(PAIRS_TABLE).shards(target_bytes=target_bytes, columns=MATCH_COLUMNS)

    def task(index: int, shard: dict[str, Any]) -> Any:
        where = WorkLocation(s.artifact_store, "bench_er", run_id, "match_shard", map_index=index)
        put_payload(where, encode_payload(match_shard, [shard, run_id, 1]))
        arguments = pod.bootstrap_arguments(
            where.payload_uri, where.result_uri, env=None, env_store=None, cache_dir=str(s.env_cache_dir)
        )
        code, tail = local.run_bootstrap(arguments, log=lambda line: None)
        if code != 0:
            raise RuntimeError(f"shard {index} exited {code}: {tail[-5:]}")
        found = read_result_header(where)
        assert found is not None
        return decode_result(found[0], found[1], where=where.result_uri)

    with ThreadPoolExecutor(WORKERS) as pool:
        staged = list(pool.map(task, range(len(shards)), shards))
    out = Table(OURS_TABLE)
    matched = out.read_staged(staged, columns=["pair_id"])
    truth = Table(truth_identifier(PAIRS_TABLE)).read(columns=["pair_id", "is_match"]).to_arrow()
    quality = evaluate(matched["pair_id"], truth)
    out.commit(staged, run_id=run_id, snapshot_properties={f"er.{k}": v for k, v in quality.items()})
    return {**quality, "shards": len(shards)}


def _token_sort(text: str) -> str:
    return " ".join(sorted(text.split()))


def run_pandas(vectorised: bool) -> dict[str, Any]:
    import numpy as np
    import pyarrow as pa
    from rapidfuzz import process
    from rapidfuzz.distance import JaroWinkler, Levenshtein

    from airflow_provider_mlp.demo.entity_resolution import (
        CAST_WEIGHT,
        MATCH_THRESHOLD,
        MAX_YEAR_GAP,
        TITLE_WEIGHT,
        truth_identifier,
    )
    from airflow_provider_mlp.fastdata.catalog import default_catalog

    catalog = default_catalog()
    df = catalog.load_table(PAIRS_TABLE).scan().to_pandas()
    truth = catalog.load_table(truth_identifier(PAIRS_TABLE)).scan().to_pandas()
    # The year rule first, as ours does: the string metrics score only pairs it leaves.
    df = df.loc[(df["left_year"] - df["right_year"]).abs() <= MAX_YEAR_GAP].reset_index(drop=True)
    left_titles = [_token_sort(t.lower()) for t in df["left_title"]]
    right_titles = [_token_sort(t.lower()) for t in df["right_title"]]
    left_casts = [_token_sort(" ".join(c)) for c in df["left_cast"]]
    right_casts = [_token_sort(" ".join(c)) for c in df["right_cast"]]
    if vectorised:
        title = process.cpdist(left_titles, right_titles, scorer=JaroWinkler.normalized_similarity, workers=-1)
        cast = process.cpdist(left_casts, right_casts, scorer=Levenshtein.normalized_similarity, workers=-1)
    else:
        jw, lev = JaroWinkler.normalized_similarity, Levenshtein.normalized_similarity
        title = np.fromiter((jw(a, b) for a, b in zip(left_titles, right_titles, strict=True)), float, len(df))
        cast = np.fromiter((lev(a, b) for a, b in zip(left_casts, right_casts, strict=True)), float, len(df))
    df["score"] = (TITLE_WEIGHT * title + CAST_WEIGHT * cast) / (TITLE_WEIGHT + CAST_WEIGHT)
    matches = df.loc[df["score"] >= MATCH_THRESHOLD, ["pair_id", "score"]]
    positives = truth.loc[truth["is_match"], "pair_id"]
    true_positives = int(matches["pair_id"].isin(positives).sum())
    quality = {
        "matched": len(matches),
        "precision": round(true_positives / max(1, len(matches)), 4),
        "recall": round(true_positives / max(1, len(positives)), 4),
    }
    arrow = pa.Table.from_pandas(matches, preserve_index=False)
    if not catalog.table_exists(PEER_TABLE):
        catalog.create_table(PEER_TABLE, schema=arrow.schema)
    catalog.load_table(PEER_TABLE).append(arrow, snapshot_properties={f"er.{k}": str(v) for k, v in quality.items()})
    return quality


def _drop(*tables: str) -> None:
    from airflow_provider_mlp.fastdata.catalog import default_catalog

    catalog = default_catalog()
    for name in tables:
        if catalog.table_exists(name):
            catalog.purge_table(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200k pairs: well under a minute")
    parser.add_argument("--pairs", type=int, default=None, help="pairs to generate (default 3M; --quick 200k)")
    parser.add_argument("--runs", type=int, default=None, help="rounds (default 5; --quick 3)")
    args = parser.parse_args()
    pairs = args.pairs or (200_000 if args.quick else 3_000_000)
    rounds = args.runs or (3 if args.quick else 5)
    home = Path(tempfile.mkdtemp(prefix="mlp-bench-er-"))
    os.environ["MLP_HOME"] = str(home)
    for var in ("MLP_CATALOG_URI", "MLP_WAREHOUSE", "MLP_ARTIFACT_STORE"):
        os.environ.pop(var, None)

    from airflow_provider_mlp.demo.entity_resolution import create_title_pairs

    table, _ = create_title_pairs(PAIRS_TABLE, pairs, row_group_rows=50_000)
    total_bytes = sum(int(f["file_size_in_bytes"]) for f in table.iceberg.inspect.files().to_pylist())
    # One shard per worker: a second wave would pay the processes' start-up (imports) again.
    target_bytes = max(1, total_bytes // WORKERS)
    results: dict[str, dict[str, Any]] = {}
    round_id = [0]

    def ours() -> None:
        results["mlp"] = run_ours(round_id, target_bytes)

    def peer() -> None:
        results["pandas_rapidfuzz"] = run_pandas(vectorised=False)

    def peer_cpdist() -> None:
        results["pandas_cpdist"] = run_pandas(vectorised=True)

    def reset() -> None:
        _drop(OURS_TABLE, PEER_TABLE)

    print(
        f"entity resolution: {pairs:,} candidate title pairs, {total_bytes / 1e6:.1f} MB of Parquet ({header(rounds)})"
    )
    times = interleaved(
        {
            "mlp": timer(ours, reset),
            "pandas_rapidfuzz": timer(peer, reset),
            "pandas_cpdist": timer(peer_cpdist, reset),
        },
        rounds,
    )
    rates = {name: samples.map(lambda s: pairs / s) for name, samples in times.items()}
    for name, samples in times.items():
        quality = results[name]
        print(
            f"  {name:18s} {samples.format(2, 's')}  {rates[name].format(0, 'pairs/s')}  "
            f"matched {quality['matched']:,} precision {quality['precision']:.4f} recall {quality['recall']:.4f}"
            + (f"  ({quality['shards']} shards, {WORKERS} at a time)" if "shards" in quality else "")
        )
    vs_rowwise: Samples = times["pandas_rapidfuzz"] / times["mlp"]
    vs_cpdist: Samples = times["pandas_cpdist"] / times["mlp"]
    print(f"  speed-up over pandas + rapidfuzz per row: {vs_rowwise.format(2, 'x')}")
    print(f"  speed-up over pandas + rapidfuzz cpdist:  {vs_cpdist.format(2, 'x')}")
    ours_quality = results["mlp"]
    print(
        f"bench: er_pairs_per_s={rates['mlp'].median:.0f} vs_pandas_rapidfuzz={vs_rowwise.median:.2f} "
        f"vs_pandas_cpdist={vs_cpdist.median:.2f} precision={ours_quality['precision']:.4f} "
        f"recall={ours_quality['recall']:.4f}"
    )


if __name__ == "__main__":
    main()
