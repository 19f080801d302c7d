"""Model records: extra labels next to the lineage labels, and pickled models (no model store here)."""

from __future__ import annotations

import pytest

from airflow_provider_mlp.errors import ConfigurationError
from airflow_provider_mlp.serving.models import ModelRecord, PickledModel, check_labels


def test_extra_labels_join_the_lineage_labels_and_the_event_extra() -> None:
    record = ModelRecord(
        name="ranker", dag_id="train", run_id="manual__1", env_id="abc", extra_labels={"model_type": "ridge", "k": 3}
    )
    lineage = {"dag_id": "train", "run_id": "manual__1", "env_id": "abc"}
    assert record.labels() == {"model_type": "ridge", "k": "3", **lineage}
    extra = record.extra("ranker:v1")
    assert extra["labels"] == {"model_type": "ridge", "k": "3"} and extra["env_id"] == "abc"
    assert "labels" not in ModelRecord(name="ranker").extra("ranker:v1")  # the event of a model without any


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({"env_id": "x"}, "label 'env_id' is set from the run itself"),
        ({"bad key": "x"}, "label key 'bad key' is not valid"),
        ({"-x": "x"}, "label key '-x' is not valid"),
        ({"nested": {"a": 1}}, "label 'nested' must be a string or a number"),
        ({"missing": None}, "label 'missing' must be a string or a number"),
    ],
)
def test_bad_labels_are_refused_naming_the_label(labels: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        check_labels(labels, where="model 'ranker'")
    with pytest.raises(ConfigurationError, match=message):
        ModelRecord(name="ranker", extra_labels=labels)  # type: ignore[arg-type]


@pytest.mark.parametrize("data", [b"", "text", None])
def test_a_pickled_model_is_non_empty_bytes(data: object) -> None:
    with pytest.raises(TypeError, match="non-empty pickled bytes"):
        PickledModel(data)  # type: ignore[arg-type]
