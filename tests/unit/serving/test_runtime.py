"""ServingConfig from the environment: a lookup-only service (no model) needs its aggregation and namespace."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_mlp.errors import ConfigurationError
from airflow_provider_mlp.serving.runtime import ServingConfig

AGGREGATION = "airflow_provider_mlp.demo.content_performance:LOOKUP_AGGREGATION"


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch, mlp_home: Path) -> None:
    for name in (
        "MLP_SERVING_MODEL",
        "MLP_SERVING_LOOKUP_AGGREGATION",
        "MLP_SERVING_LOOKUP_NAMESPACE",
        "MLP_SERVING_PREDICT_NAMESPACE",
    ):
        monkeypatch.delenv(name, raising=False)


def test_a_model_or_a_lookup_aggregation_is_required() -> None:
    with pytest.raises(ConfigurationError, match="MLP_SERVING_MODEL is not set.*MLP_SERVING_LOOKUP_AGGREGATION"):
        ServingConfig.from_env()


def test_a_lookup_only_service_names_its_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLP_SERVING_LOOKUP_AGGREGATION", AGGREGATION)
    with pytest.raises(ConfigurationError, match="MLP_SERVING_LOOKUP_NAMESPACE is not set"):
        ServingConfig.from_env()
    monkeypatch.setenv("MLP_SERVING_LOOKUP_NAMESPACE", "content-performance")
    config = ServingConfig.from_env()
    assert config.model == "" and config.lookup_aggregation == AGGREGATION
    assert config.lookup_namespace == "content-performance"


def test_a_model_service_may_add_a_lookup_aggregation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLP_SERVING_MODEL", "ranker:1")
    monkeypatch.setenv("MLP_SERVING_LOOKUP_AGGREGATION", AGGREGATION)
    config = ServingConfig.from_env()
    assert (config.model, config.predict_namespace, config.lookup_namespace) == ("ranker:1", "ranker", "ranker")
