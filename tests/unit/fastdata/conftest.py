"""Fixtures: the embedded catalog under a fresh MLP_HOME, and a partitioned sample table."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyiceberg.catalog import Catalog

from airflow_provider_mlp.demo.data import create_sample_table
from airflow_provider_mlp.fastdata import Table
from airflow_provider_mlp.fastdata.catalog import default_catalog


@pytest.fixture
def catalog(mlp_home: Path) -> Catalog:
    return default_catalog()


@pytest.fixture
def events(catalog: Catalog) -> Table:
    """20,000 events partitioned by event_type (four files), in the embedded catalog."""
    return create_sample_table("demo.events", rows=20_000)


@pytest.fixture(params=["polars", "pyarrow"])
def each_decoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The test runs once per Parquet decoder: every ``Table`` it makes decodes with this one."""
    defaults = Table.__init__.__kwdefaults__
    assert defaults is not None and "decoder" in defaults
    monkeypatch.setitem(defaults, "decoder", request.param)
    return str(request.param)
