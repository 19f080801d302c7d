"""Code that runs in pods and serving processes must import without Airflow installed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# The root package is imported alone (its Airflow-facing subpackages may import Airflow); every
# other entry is imported with all of its submodules.
RUNTIME_MODULES = [
    "airflow_provider_mlp",
    "airflow_provider_mlp.config",
    "airflow_provider_mlp.errors",
    "airflow_provider_mlp.extras",
    "airflow_provider_mlp.stores",
    "airflow_provider_mlp.kernels",
    "airflow_provider_mlp.fastdata",
    "airflow_provider_mlp.serving",
    "airflow_provider_mlp.compute",
    "airflow_provider_mlp.precompute",
    "airflow_provider_mlp.events",
    "airflow_provider_mlp.airflow_local",
    "env_builder",
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


# Every runtime-side folder (and the ones the next capabilities fill) is under the linter's ban.
RUNTIME_PATHS = [
    "airflow_provider_mlp/config.py",
    "airflow_provider_mlp/errors.py",
    "airflow_provider_mlp/stores.py",
    "airflow_provider_mlp/fastdata/probe.py",
    "airflow_provider_mlp/kernels/probe.py",
    "airflow_provider_mlp/compute/probe.py",
    "airflow_provider_mlp/events/probe.py",
    "airflow_provider_mlp/precompute/probe.py",
    "airflow_provider_mlp/serving/probe.py",
    "env_builder/probe.py",
]
AIRFLOW_SIDE_PATHS = [
    "airflow_provider_mlp/hooks/probe.py",
    "airflow_provider_mlp/operators/probe.py",
    "airflow_provider_mlp/decorators/probe.py",
    "airflow_provider_mlp/sensors/probe.py",
    "airflow_provider_mlp/triggers/probe.py",
]
ROOT = Path(__file__).resolve().parents[2]


def _ruff(path: str, source: str) -> subprocess.CompletedProcess[str]:
    ruff = Path(sys.executable).with_name("ruff")
    return subprocess.run(
        [str(ruff), "check", "--no-cache", "--select", "TID251,TID253", "--stdin-filename", path, "-"],
        input=source,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


@pytest.mark.parametrize("path", RUNTIME_PATHS)
def test_the_linter_refuses_an_airflow_import_in_runtime_code(path: str) -> None:
    lazy = "from __future__ import annotations\n\n\ndef f() -> None:\n    from airflow.sdk import BaseHook\n"
    module_level = "from __future__ import annotations\n\nimport airflow.sdk\n"
    assert "TID25" in _ruff(path, module_level).stdout
    if path not in ("airflow_provider_mlp/config.py",):
        assert "TID251" in _ruff(path, lazy).stdout


@pytest.mark.parametrize("path", AIRFLOW_SIDE_PATHS)
def test_the_linter_lets_the_airflow_side_import_airflow(path: str) -> None:
    source = "from __future__ import annotations\n\nfrom airflow.sdk import BaseHook\n\nprint(BaseHook)\n"
    proc = _ruff(path, source)
    assert proc.returncode == 0, proc.stdout
