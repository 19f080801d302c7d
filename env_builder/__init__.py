"""Portable execution environments: spec -> lock -> content-addressed packed environment.

The pod-side half (fetch, verify, unpack, activate) imports only the standard library,
fsspec and zstandard; nothing here imports Airflow. Names are loaded on first use so that
``from env_builder.rehydrate import ensure`` on a warm node stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "EnvSpec": "env_builder.spec",
    "Lock": "env_builder.lock",
    "resolve": "env_builder.resolve",
    "build": "env_builder.builder",
    "alias": "env_builder.builder",
    "EnvRef": "env_builder.store",
    "EnvStore": "env_builder.store",
    "ensure": "env_builder.rehydrate",
    "LocalEnv": "env_builder.rehydrate",
    "EnvBuilderError": "env_builder.errors",
    "SpecError": "env_builder.errors",
    "ResolutionError": "env_builder.errors",
    "BuildError": "env_builder.errors",
    "StoreError": "env_builder.errors",
    "EnvNotFoundError": "env_builder.errors",
    "AliasError": "env_builder.errors",
    "AmbiguousEnvError": "env_builder.errors",
    "IntegrityError": "env_builder.errors",
    "UnsafeArchiveError": "env_builder.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'env_builder' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
