"""The generated title pairs, the matcher and its evaluation, on the real embedded catalog."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from airflow_provider_mlp.demo.entity_resolution import (
    create_title_pairs,
    evaluate,
    matches_schema,
    score_pairs,
    title_pairs,
)
from airflow_provider_mlp.fastdata import Table


def test_generated_pairs_are_deterministic_and_hold_hard_cases() -> None:
    data, truth = title_pairs(5_000, seed=3)
    again, _ = title_pairs(5_000, seed=3)
    assert data.equals(again)
    assert data.column("pair_id").to_pylist() == truth.column("pair_id").to_pylist()
    rate = pc.mean(truth["is_match"].cast(pa.int8())).as_py()
    assert 0.25 < rate < 0.5
    rows = data.to_pylist()
    matches = [r for r, m in zip(rows, truth["is_match"].to_pylist(), strict=True) if m]
    assert any(r["left_title"] != r["right_title"] for r in matches)  # variants, not copies
    assert any(abs(r["left_year"] - r["right_year"]) == 1 for r in matches)
    assert any(", The" in r["right_title"] for r in matches)
    non = [r for r, m in zip(rows, truth["is_match"].to_pylist(), strict=True) if not m]
    assert any(r["left_title"] == r["right_title"] for r in non)  # remakes: same title, another film


def test_matcher_precision_and_recall() -> None:
    data, truth = title_pairs(20_000)
    matches = score_pairs(data, threads=1)
    assert matches.schema == matches_schema()
    quality = evaluate(matches["pair_id"], truth)
    assert quality["precision"] >= 0.95 and quality["recall"] >= 0.9, quality
    assert score_pairs(data.slice(0, 0)).num_rows == 0
    # A matcher as strict as possible finds less, never more.
    assert score_pairs(data, threshold=1.0).num_rows < matches.num_rows


def test_created_tables_and_a_retried_shard_adds_no_rows(mlp_home: Path) -> None:
    pairs, truth = create_title_pairs("content.title_pairs", 12_000, row_group_rows=4_000)
    assert create_title_pairs("content.title_pairs", 12_000, row_group_rows=4_000)[0].current_snapshot_id == (
        pairs.current_snapshot_id
    )  # idempotent
    assert pairs.read().num_rows == truth.read().num_rows == 12_000
    shards = pairs.shards(target_bytes=1)
    assert len(shards) == 3
    out = Table.create("content.title_matches", matches_schema())
    staged = [out.stage(score_pairs(pairs.read(s).to_arrow()), shard_id=s["shard_id"], run_id="r") for s in shards]
    retried = out.stage(score_pairs(pairs.read(shards[0]).to_arrow()), shard_id=shards[0]["shard_id"], run_id="r")
    out.commit([*staged, retried], run_id="r")
    committed = out.read().to_arrow()
    assert committed.num_rows == sum(s["rows"] for s in staged) == len(pc.unique(committed["pair_id"]))
