"""Code that runs in pods and serving processes must import without Airflow installed."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# The root package is imported alone (its Airflow-facing subpackages may import Airflow); every
# other entry is imported with all of its submodules.
RUNTIME_MODULES = [
    "airflow_provider_mlp",
    "airflow_provider_mlp.config",
    "airflow_provider_mlp.kernels",
    "airflow_provider_mlp.fastdata",
    "airflow_provider_mlp.precompute",
    "airflow_provider_mlp.runtime",
    "env_builder",
    "serving",
]

# A meta path finder that makes every `import airflow...` fail, as in a pod without Airflow.
BLOCK_AIRFLOW = textwrap.dedent(
    """
    import importlib.abc, sys

    class BlockAirflow(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "airflow" or name.startswith("airflow."):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked: runtime code must not import Airflow)")
            return None

    sys.meta_path.insert(0, BlockAirflow())
    """
)


@pytest.mark.parametrize("module", RUNTIME_MODULES)
def test_imports_where_importing_airflow_raises(module: str) -> None:
    code = BLOCK_AIRFLOW + textwrap.dedent(
        f"""
        try:
            import airflow
        except ModuleNotFoundError:
            pass
        else:
            raise SystemExit("the airflow block did not work")
        import {module}
        import pkgutil, importlib
        pkg = sys.modules[{module!r}]
        paths = getattr(pkg, "__path__", []) if {module!r} != "airflow_provider_mlp" else []
        for info in pkgutil.walk_packages(paths, prefix={module!r} + "."):
            importlib.import_module(info.name)
        assert not any(m == "airflow" or m.startswith("airflow.") for m in sys.modules), "airflow got imported"
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
