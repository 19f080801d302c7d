"""Every kernel test that takes ``impl`` runs against the native kernels and the pure-Python references."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_mlp.kernels import native, reference


@pytest.fixture(params=[pytest.param(native, id="native"), pytest.param(reference, id="reference")])
def impl(request: pytest.FixtureRequest) -> Any:
    return request.param
