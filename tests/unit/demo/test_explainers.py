"""The explainer use case's generated features: deterministic, learnable, and written to Iceberg once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from airflow_provider_mlp.demo.explainers import (
    EXPLAINER_DAG_ID,
    FEATURES,
    INFORMATIVE_FEATURE,
    LABEL,
    MODEL_TYPES,
    NOISE_FEATURES,
    content_features,
    explainer_model_name,
    format_summary,
    prepare,
)
from airflow_provider_mlp.serving.models import check_model_name


def test_features_are_deterministic_and_the_label_follows_the_informative_feature() -> None:
    first, again = content_features(5_000), content_features(5_000)
    assert first.equals(again) and not first.equals(content_features(5_000, seed=1))
    assert first.column_names == ["title_id", *FEATURES, LABEL]
    label = first[LABEL].to_numpy()
    assert 0.3 < label.mean() < 0.7
    correlation = {name: abs(np.corrcoef(first[name].to_numpy(), label)[0, 1]) for name in FEATURES}
    assert max(correlation, key=correlation.__getitem__) == INFORMATIVE_FEATURE
    assert all(correlation[name] < 0.05 for name in NOISE_FEATURES), correlation


def test_too_few_rows_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 100 rows"):
        content_features(10)


def test_model_names_are_valid_and_the_teams_environments_differ() -> None:
    for spec in MODEL_TYPES.values():
        check_model_name(spec["model_name"])
        check_model_name(explainer_model_name(spec["model_name"]))
    assert len({tuple(spec["pip"]) for spec in MODEL_TYPES.values()}) == len(MODEL_TYPES)


def test_prepare_writes_the_table_once_and_names_the_runs(mlp_home: Path) -> None:
    from airflow_provider_mlp.fastdata import Table

    plan = prepare(scale=0.05)
    assert plan["rows"] == 1_000
    table = Table(plan["table"])
    assert table.read().to_arrow().num_rows == 1_000 and table.current_snapshot_id == plan["snapshot_id"]
    assert prepare(scale=0.05)["snapshot_id"] == plan["snapshot_id"]  # a second call adds nothing
    assert [run["dag_id"] for run in plan["runs"]] == [
        *(spec["dag_id"] for spec in MODEL_TYPES.values()),
        EXPLAINER_DAG_ID,
    ]
    assert plan["runs"][-1]["conf"]["models"] == [spec["model_name"] for spec in MODEL_TYPES.values()]
    with pytest.raises(ValueError, match="scale must be a positive number"):
        prepare(scale=0)


def test_summary_lines() -> None:
    rows = [
        {
            "tag": "m-explainer:v1",
            "env_id": "ab" * 32,
            "env_bytes": 110_000_000,
            "metrics": {"surrogate_fidelity": 0.91, "rows": 10, "importance.a": 0.1, "importance.b": 0.3},
            "explains": "m:v0",
        },
        {"tag": "m:v0", "env_id": "", "env_bytes": None, "metrics": {"roc_auc": 0.97, "train_rows": 8}, "explains": ""},
    ]
    assert format_summary(rows) == [
        "m-explainer:v1: env abababababababab (110 MB packed); explains m:v0; importances b 0.300, a 0.100; "
        "surrogate fidelity 0.910",
        "m:v0: env -; roc_auc 0.970",
    ]
