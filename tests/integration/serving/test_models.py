"""A model trained in an environment is saved to a real BentoML model store as its pickled bytes,
without this process being able to unpickle it, and found again with its lineage and file."""

from __future__ import annotations

import pickle
import sys
import types
from pathlib import Path

import pytest

from airflow_provider_mlp.serving.models import (
    ModelLoadError,
    ModelRecord,
    PickledModel,
    find_model,
    load_model,
    save_model,
)

pytestmark = pytest.mark.integration


def _bytes_only_an_environment_can_load() -> bytes:
    """The pickle of an instance of a class from a module this process does not have."""
    module = types.ModuleType("mlp_test_env_only_models")
    exec("class Model:\n    def predict(self, features):\n        return 1\n", module.__dict__)
    sys.modules[module.__name__] = module
    try:
        return pickle.dumps(module.Model())
    finally:
        del sys.modules[module.__name__]


def test_pickled_bytes_are_stored_as_they_are_and_found_with_their_labels(bentoml_home: Path) -> None:
    data = _bytes_only_an_environment_can_load()
    record = ModelRecord(
        name="env-only-model",
        dag_id="train",
        run_id="manual__1",
        env_id="abc123",
        metrics={"auc": 0.9},
        inputs={"content.features": 7},
        extra_labels={"model_type": "gradient_boosting"},
    )
    tag = save_model(PickledModel(data), record)
    stored = find_model("env-only-model")
    assert stored.tag == tag and stored.name == "env-only-model"
    lineage = {"dag_id": "train", "run_id": "manual__1", "env_id": "abc123"}
    assert stored.labels == {"model_type": "gradient_boosting", **lineage}
    assert stored.metadata["metrics"] == {"auc": 0.9} and stored.metadata["inputs"] == {"content.features": 7}
    assert Path(stored.path).read_bytes() == data
    # Only where the model's packages are can it be loaded: not here.
    with pytest.raises(ModuleNotFoundError, match="mlp_test_env_only_models"):
        load_model(tag)


def test_find_model_names_a_missing_model(bentoml_home: Path) -> None:
    with pytest.raises(ModelLoadError, match="'no-such-model' is not in the BentoML model store"):
        find_model("no-such-model")
