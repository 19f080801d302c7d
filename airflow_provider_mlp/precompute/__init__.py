"""Precompute layer: table results published to memcached as verified versions, read by serving code.

Runtime side: nothing here imports Airflow (the operator is ``operators.precompute``).

- :func:`publish` writes an Iceberg table, Arrow table or record batches as a new version of a
  namespace, verifies it and only then switches the namespace's ``current`` pointer;
- :class:`CacheReader` serves the current version (``get`` / ``get_many``);
- :class:`CacheNamespace` lists versions, shows the current one and rolls back (``mlp cache``).
"""

from __future__ import annotations

from airflow_provider_mlp.precompute.errors import (
    CacheError,
    CacheInputError,
    CacheServerError,
    CacheVersionError,
    DuplicateKeyError,
    MissingVersionError,
    PublishError,
    PublishServerError,
    TornVersionError,
    VerificationError,
)
from airflow_provider_mlp.precompute.namespace import CacheNamespace
from airflow_provider_mlp.precompute.options import MemcachedOptions
from airflow_provider_mlp.precompute.publisher import PublishResult, publish
from airflow_provider_mlp.precompute.reader import CacheReader

__all__ = [
    "CacheError",
    "CacheInputError",
    "CacheNamespace",
    "CacheReader",
    "CacheServerError",
    "CacheVersionError",
    "DuplicateKeyError",
    "MemcachedOptions",
    "MissingVersionError",
    "PublishError",
    "PublishResult",
    "PublishServerError",
    "TornVersionError",
    "VerificationError",
    "publish",
]
