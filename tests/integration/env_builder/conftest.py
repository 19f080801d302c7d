"""One real uv build per test session (tiny pure-Python wheels), shared by the integration tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from env_builder.builder import build
from env_builder.spec import EnvSpec, running_python
from env_builder.store import EnvRef

# Builds use this interpreter's Python version, so its base interpreter is always there.
PY = running_python()
SIX_SPEC = EnvSpec(python=PY, pip=["six==1.17.0"])


@dataclass(frozen=True)
class BuiltEnv:
    spec: EnvSpec
    ref: EnvRef
    store: str


@pytest.fixture(scope="session")
def six_env(tmp_path_factory: pytest.TempPathFactory) -> BuiltEnv:
    store = tmp_path_factory.mktemp("env-store")
    ref = build(SIX_SPEC, str(store))
    return BuiltEnv(SIX_SPEC, ref, str(store))


@pytest.fixture
def store_copy(six_env: BuiltEnv, tmp_path: Path) -> str:
    """A private copy of the session store, for tests that add aliases or delete environments."""
    import shutil

    target = tmp_path / "store"
    shutil.copytree(six_env.store, target)
    return str(target)
