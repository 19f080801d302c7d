"""The pod-side half runs with the standard library, fsspec and zstandard only."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from env_builder.store import EnvStore
from tests.unit.env_builder.helpers import Publish

# Refuses every import outside the standard library, fsspec, zstandard and this project's runtime
# packages, as in a bare pod image that only has those.
ONLY_POD_DEPENDENCIES = textwrap.dedent(
    """
    import importlib.abc, sys

    ALLOWED = set(sys.stdlib_module_names) | {"fsspec", "zstandard", "env_builder", "airflow_provider_mlp"}

    class PodImports(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] not in ALLOWED:
                raise ModuleNotFoundError(f"{name!r} is not available in a pod")
            return None

    sys.meta_path.insert(0, PodImports())
    """
)


def test_cold_and_warm_rehydration_need_only_stdlib_fsspec_and_zstandard(tmp_path: Path, publish: Publish) -> None:
    store = EnvStore.open(str(tmp_path / "store"))
    env_id = publish(store)
    cache = tmp_path / "cache"
    cold = ONLY_POD_DEPENDENCIES + textwrap.dedent(
        f"""
        from env_builder.rehydrate import ensure
        env = ensure({env_id!r}, store={store.url!r}, cache_dir={str(cache)!r})
        assert env.python.exists()
        """
    )
    proc = subprocess.run([sys.executable, "-c", cold], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]

    # A cache hit does not even import fsspec or zstandard: it reads one small file.
    warm = ONLY_POD_DEPENDENCIES + textwrap.dedent(
        f"""
        from env_builder.rehydrate import ensure
        ensure({env_id!r}, store="/nonexistent", cache_dir={str(cache)!r})
        heavy = sorted(m for m in ("fsspec", "zstandard", "tarfile", "env_builder.store") if m in sys.modules)
        assert not heavy, heavy
        """
    )
    proc = subprocess.run([sys.executable, "-c", warm], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
