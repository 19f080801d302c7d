"""Optional parts report the extra that installs them."""

from __future__ import annotations

import pytest

from airflow_provider_mlp.errors import MissingExtraError
from airflow_provider_mlp.extras import EXTRA_OF_MODULE, require


def test_require_returns_an_installed_module() -> None:
    assert require("json", feature="x").dumps([]) == "[]"


def test_a_missing_module_names_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(EXTRA_OF_MODULE, "mlp_not_installed_module", "serving")
    with pytest.raises(MissingExtraError, match=r"serving .* pip install 'airflow-provider-mlp\[serving\]'"):
        require("mlp_not_installed_module", feature="serving")


def test_every_extra_named_is_declared_in_pyproject() -> None:
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    declared = set(pyproject["project"]["optional-dependencies"])
    assert set(EXTRA_OF_MODULE.values()) <= declared


def test_conda_builds_without_the_conda_extra_name_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from env_builder import conda

    monkeypatch.setitem(sys.modules, "rattler", None)  # what an install without py-rattler sees
    with pytest.raises(MissingExtraError, match=r"conda environments .* pip install 'airflow-provider-mlp\[conda\]'"):
        conda._require()
