"""``runtime_packages=True``: a task in a packed environment of its own (toolz, which the runtime
lacks, and packaging at another version than the runtime's) reads a real Iceberg table with the
provider's Fast Data reader from the runtime's packages, while its own packages win; without the
flag the environment sees none of them."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_mlp.compute import bootstrap, pod
from airflow_provider_mlp.compute.work import ComputeError, RemoteTaskError
from airflow_provider_mlp.demo.data import create_sample_table
from airflow_provider_mlp.operators.compute import MlpPodOperator
from env_builder.builder import build
from env_builder.spec import EnvSpec, running_python
from tests.support.airflow_runs import TaskInstanceStub

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TABLE = "demo.runtime_packages"
ENV_PACKAGING = "24.1"


def _run(op: MlpPodOperator) -> Any:
    return op.execute({"ti": TaskInstanceStub(op.task_id), "run_id": "manual__1"})  # type: ignore[arg-type]


def count_with_toolz(table: str) -> dict[str, Any]:
    import sys

    import packaging
    import toolz

    from airflow_provider_mlp.fastdata import Table

    arrow = Table(table).read(columns=["user_id"]).to_arrow()
    users = list(toolz.unique(arrow["user_id"].to_pylist()))
    return {"rows": arrow.num_rows, "users": len(users), "prefix": sys.prefix, "packaging": packaging.__version__}


@pytest.fixture
def toolz_env(mlp_home: Path) -> str:
    assert importlib.util.find_spec("toolz") is None, "the test needs a package the runtime lacks"
    import packaging

    # packaging at another version than the runtime's: the environment's own must win.
    assert packaging.__version__ != ENV_PACKAGING
    return build(EnvSpec(python=running_python(), pip=["toolz==1.0.0", f"packaging=={ENV_PACKAGING}"])).id


def test_a_packed_environment_reads_fast_data_through_the_runtimes_packages(mlp_home: Path, toolz_env: str) -> None:
    table = create_sample_table(TABLE, rows=500)
    expected = table.read(columns=["user_id"]).to_arrow()
    op = MlpPodOperator(
        task_id="count",
        python_callable=count_with_toolz,
        op_args=[TABLE],
        env=toolz_env,
        runtime_packages=True,
        backend="local",
    )
    result = _run(op)
    assert result["rows"] == 500
    assert result["users"] == len(set(expected["user_id"].to_pylist()))
    assert toolz_env in result["prefix"]  # the environment's interpreter, not the runtime's
    assert result["packaging"] == ENV_PACKAGING  # its own packages come before the runtime's

    # Without the flag the environment sees none of the runtime's packages.
    op = MlpPodOperator(
        task_id="count_alone", python_callable=count_with_toolz, op_args=[TABLE], env=toolz_env, backend="local"
    )
    with pytest.raises(RemoteTaskError, match="No module named 'airflow_provider_mlp'"):
        _run(op)


def test_the_runtime_package_paths_hold_the_provider_and_pyarrow_but_not_the_stdlib() -> None:
    import os
    import sysconfig

    import pyarrow

    import airflow_provider_mlp

    paths = bootstrap.runtime_package_paths()
    provider_root = os.path.realpath(Path(airflow_provider_mlp.__file__).parents[1])
    pyarrow_root = os.path.realpath(Path(pyarrow.__file__).parents[1])
    assert provider_root in paths and pyarrow_root in paths
    assert os.path.realpath(sysconfig.get_paths()["stdlib"]) not in paths


def test_an_environment_of_another_python_is_refused_naming_both_versions(
    mlp_home: Path, toolz_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bootstrap, "_env_python_version", lambda env_dir, python: "3.9")
    with pytest.raises(ComputeError, match=r"runs Python 3\.9; runtime_packages needs the runtime's Python 3\.\d+"):
        bootstrap.run("file:///nowhere/payload", "file:///nowhere/result", env=toolz_env, runtime_packages=True)


def test_the_flag_reaches_the_bootstrap_only_with_an_environment() -> None:
    with_env = pod.bootstrap_arguments("p", "r", env="abc", env_store=None, cache_dir="/c", runtime_packages=True)
    without = pod.bootstrap_arguments("p", "r", env=None, env_store=None, cache_dir="/c", runtime_packages=True)
    assert "--runtime-packages" in with_env and "--runtime-packages" not in without
