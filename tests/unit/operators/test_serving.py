"""PublishModelOperator: outlets chosen at parse time, and what it saves from a training result (the
model store is faked here; tests/integration/serving/test_models.py saves to a real one)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from airflow.sdk import Asset, AssetAlias

from airflow_provider_mlp.compute.executor import encode_outcome
from airflow_provider_mlp.compute.work import RESULT_KIND
from airflow_provider_mlp.operators.serving import PublishModelOperator
from airflow_provider_mlp.serving import models
from airflow_provider_mlp.serving.models import PickledModel


class _Accessor:
    def __init__(self) -> None:
        self.extra: dict[str, Any] = {}
        self.added: list[tuple[Any, dict[str, Any]]] = []

    def add(self, asset: Any, extra: dict[str, Any] | None = None) -> None:
        self.added.append((asset, dict(extra or {})))


class _OutletEvents(dict):
    def __missing__(self, key: Any) -> _Accessor:
        self[key] = _Accessor()
        return self[key]


def _result_reference(tmp_path: Path, value: Any) -> dict[str, Any]:
    """A result as @task.mlp leaves it in the artifact store, and the reference XCom carries."""
    header, body = encode_outcome(value)
    path = tmp_path / "result"
    path.write_bytes(json.dumps(header).encode() + b"\n" + body)
    return {"kind": RESULT_KIND, "uri": str(path), "format": header["format"], "source": None}


@pytest.fixture
def saved(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, models.ModelRecord]]:
    calls: list[tuple[Any, models.ModelRecord]] = []

    def fake_save(model: Any, record: models.ModelRecord) -> str:
        calls.append((model, record))
        return f"{record.name}:v1"

    monkeypatch.setattr(models, "save_model", fake_save)
    return calls


def _context(outlet_events: _OutletEvents) -> dict[str, Any]:
    return {"run_id": "manual__1", "outlet_events": outlet_events}


def test_outlets_at_parse_time() -> None:
    assert isinstance(PublishModelOperator.template_fields, tuple) and "labels" in PublishModelOperator.template_fields
    literal = PublishModelOperator(task_id="a", model_name="ranker", model=len)
    assert literal.outlets == [Asset(uri="mlp://model/ranker")]
    templated = PublishModelOperator(task_id="b", model_name="{{ params.name }}", model=len)
    assert templated.outlets == []
    aliased = PublishModelOperator(task_id="c", model_name="{{ params.name }}", model=len, asset_alias="models")
    assert aliased.outlets == [AssetAlias(name="models")]


def test_training_result_reference_is_saved_as_pickled_bytes_with_its_metrics_and_labels(
    tmp_path: Path, saved: list[tuple[Any, models.ModelRecord]]
) -> None:
    model_bytes = cloudpickle.dumps({"weights": [1, 2]})
    result = {
        "model": model_bytes,
        "metrics": {"auc": 0.9, "rows": 10},
        "inputs": {"content.features": 42},
        "labels": {"model_type": "ridge", "owner": "team-a"},
    }
    op = PublishModelOperator(
        task_id="publish",
        model_name="ranker",
        model=_result_reference(tmp_path, result),
        env_id="e" * 64,
        labels={"owner": "team-b"},
    )
    events = _OutletEvents()
    extra = op.execute(_context(events))  # type: ignore[arg-type]
    [(model, record)] = saved
    assert model == PickledModel(model_bytes)
    assert record.metrics == {"auc": 0.9, "rows": 10.0} and record.inputs == {"content.features": 42}
    # An explicit argument beats the result's field.
    lineage = {"dag_id": record.dag_id, "run_id": "manual__1", "env_id": "e" * 64}
    assert record.labels() == {"model_type": "ridge", "owner": "team-b", **lineage}
    assert extra["tag"] == "ranker:v1" and extra["labels"] == {"model_type": "ridge", "owner": "team-b"}
    assert events[Asset(uri="mlp://model/ranker")].extra == extra


def test_explicit_metrics_and_inputs_win_and_an_alias_carries_the_event(
    saved: list[tuple[Any, models.ModelRecord]],
) -> None:
    op = PublishModelOperator(
        task_id="publish",
        model_name="ranker-explainer",
        model={"model": b"pickled", "metrics": {"auc": 0.5}, "inputs": {"a.b": 1}},
        metrics={"fidelity": 0.95},
        inputs={"a.b": 2},
        asset_alias="explainers",
    )
    events = _OutletEvents()
    extra = op.execute(_context(events))  # type: ignore[arg-type]
    [(_, record)] = saved
    assert record.metrics == {"fidelity": 0.95} and record.inputs == {"a.b": 2}
    assert events[AssetAlias(name="explainers")].added == [(Asset(uri="mlp://model/ranker-explainer"), extra)]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"metrics": {"auc": 1}}, "needs a 'model' key"),
        ({"model": b"x", "weights": []}, "unknown keys \\['weights'\\]"),
    ],
)
def test_a_bad_training_result_names_what_is_wrong(
    value: dict[str, Any], message: str, saved: list[tuple[Any, models.ModelRecord]]
) -> None:
    op = PublishModelOperator(task_id="publish", model_name="ranker", model=value)
    with pytest.raises(ValueError, match=message):
        op.execute(_context(_OutletEvents()))  # type: ignore[arg-type]
    assert saved == []


def test_lineage_labels_cannot_be_given(saved: list[tuple[Any, models.ModelRecord]]) -> None:
    op = PublishModelOperator(task_id="publish", model_name="ranker", model=b"x", labels={"run_id": "other"})
    with pytest.raises(ValueError, match="label 'run_id' is set from the run itself"):
        op.execute(_context(_OutletEvents()))  # type: ignore[arg-type]
