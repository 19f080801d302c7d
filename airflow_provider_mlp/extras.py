"""Optional parts of the provider and the extra that installs each.

The base install carries what the Airflow side and Fast Data need. Heavier parts are extras; using
one that is not installed raises :class:`~airflow_provider_mlp.errors.MissingExtraError` with the
``pip install 'airflow-provider-mlp[extra]'`` line, instead of a bare ``ModuleNotFoundError``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from airflow_provider_mlp.errors import MissingExtraError

# import name -> the extra that installs it (stated once; pyproject.toml's extras list the same).
EXTRA_OF_MODULE: dict[str, str] = {
    "s3fs": "s3",
    "polars": "polars",
    "rattler": "conda",
    "conda_pack": "conda",
    "bentoml": "serving",
}


def require(module: str, *, feature: str) -> ModuleType:
    """Import ``module`` or raise ``MissingExtraError`` naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        top = module.split(".")[0]
        if exc.name is not None and exc.name.split(".")[0] != top:
            raise  # the module is there but one of its own dependencies is broken: show that
        raise MissingExtraError(feature, EXTRA_OF_MODULE.get(top, top), top) from None
