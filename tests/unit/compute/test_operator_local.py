"""MlpPodOperator on the local backend: the real bootstrap as a subprocess, results and failures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_provider_mlp.compute.work import RESULT_KIND, ComputeError, RemoteTaskError, load_result
from airflow_provider_mlp.operators.compute import MlpPodOperator
from tests.support.airflow_runs import TaskInstanceStub


def _run(op: MlpPodOperator, try_number: int = 1) -> Any:
    context: dict[str, Any] = {"ti": TaskInstanceStub(op.task_id, try_number=try_number), "run_id": "manual__1"}
    return op.execute(context)  # type: ignore[arg-type]


def add(a: int, b: int = 0) -> dict[str, int]:
    return {"sum": a + b}


def fail() -> None:
    raise KeyError("the column 'title' is missing")


def make_table(rows: int) -> Any:
    import pyarrow as pa

    return pa.table({"x": list(range(rows))})


def die() -> None:
    import os

    os._exit(3)


def test_a_call_runs_in_a_subprocess_and_its_value_comes_back(mlp_home: Path) -> None:
    op = MlpPodOperator(task_id="add", python_callable=add, op_args=[2], op_kwargs={"b": 3}, backend="local")
    assert _run(op) == {"sum": 5}


def test_the_functions_exception_is_reraised_with_its_remote_traceback(mlp_home: Path) -> None:
    op = MlpPodOperator(task_id="fail", python_callable=fail, backend="local")
    with pytest.raises(RemoteTaskError, match=r"builtins.KeyError: \"the column 'title' is missing\"") as raised:
        _run(op)
    assert "Remote traceback" in str(raised.value) and "in fail" in raised.value.remote_traceback


def test_a_table_result_stays_in_the_store_as_arrow_and_xcom_carries_a_reference(mlp_home: Path) -> None:
    op = MlpPodOperator(task_id="table", python_callable=make_table, op_args=[4], backend="local")
    reference = _run(op)
    assert reference["kind"] == RESULT_KIND and reference["format"] == "arrow-ipc"
    assert load_result(reference).column("x").to_pylist() == [0, 1, 2, 3]


def test_a_large_value_stays_in_the_store(mlp_home: Path) -> None:
    op = MlpPodOperator(task_id="big", python_callable=add, op_args=[1], backend="local", max_xcom_bytes=4)
    reference = _run(op)
    assert reference["kind"] == RESULT_KIND and load_result(reference) == {"sum": 1}


def test_a_process_that_dies_without_a_result_names_the_task_and_its_exit_code(mlp_home: Path) -> None:
    op = MlpPodOperator(task_id="die", python_callable=die, backend="local")
    with pytest.raises(ComputeError, match=r"local process of task 'die' exited 3"):
        _run(op)


def test_each_try_has_its_own_work_so_a_retry_never_reads_an_earlier_result(mlp_home: Path) -> None:
    op = MlpPodOperator(task_id="add", python_callable=add, op_args=[1], backend="local")
    first = op.work_location({"ti": TaskInstanceStub("add", try_number=1), "run_id": "r"})  # type: ignore[arg-type]
    second = op.work_location({"ti": TaskInstanceStub("add", try_number=2), "run_id": "r"})  # type: ignore[arg-type]
    assert first.result_uri != second.result_uri and first.prefix == second.prefix


def test_an_unknown_backend_is_refused_naming_the_task(mlp_home: Path) -> None:
    from airflow_provider_mlp.errors import ConfigurationError

    op = MlpPodOperator(task_id="add", python_callable=add, backend="slurm")
    with pytest.raises(ConfigurationError, match="task 'add' backend: compute backend 'slurm'"):
        _run(op)


def stamp(label: str, run_id: str | None = None, try_number: int = 0) -> str:
    return f"{label}:{run_id}:{try_number}"


def test_context_values_fill_the_parameters_named_after_them(mlp_home: Path) -> None:
    op = MlpPodOperator(task_id="stamp", python_callable=stamp, op_args=["x"], backend="local")
    assert _run(op, try_number=2) == "x:manual__1:2"


def where_is_six() -> str:
    import six

    return str(six.__file__)


def test_an_env_spec_mapping_is_built_on_first_use_and_then_found_by_its_id(mlp_home: Path) -> None:
    from env_builder.spec import running_python
    from env_builder.store import EnvStore

    spec = {"python": running_python(), "pip": ["six==1.17.0"]}
    first = MlpPodOperator(task_id="six", python_callable=where_is_six, env=spec, backend="local")
    located = _run(first)
    (env_id,) = EnvStore.open().list_envs()
    assert env_id in located and str(mlp_home) in located
    again = MlpPodOperator(task_id="six_again", python_callable=where_is_six, env=dict(spec), backend="local")
    assert _run(again) == located and EnvStore.open().list_envs() == [env_id]


def test_build_environment_operators_xcom_forms_name_the_env() -> None:
    from airflow_provider_mlp.operators.compute import env_reference

    env_id = "e" * 64
    assert env_reference(env_id) == env_id
    assert env_reference({"id": env_id, "sha256": "f" * 64, "size": 1, "uri": "file:///x"}) == env_id
    assert env_reference("ranking/model-a:latest") == "ranking/model-a:latest"
    assert env_reference(None) is None and env_reference("") is None


def register_exit_hook(marker: str) -> str:
    import atexit
    from pathlib import Path

    atexit.register(Path(marker).write_text, "flushed")
    return "registered"


def test_the_users_atexit_handlers_run_although_the_interpreter_is_not_torn_down(
    mlp_home: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    op = MlpPodOperator(task_id="hook", python_callable=register_exit_hook, op_args=[str(marker)], backend="local")
    assert _run(op) == "registered"
    assert marker.read_text() == "flushed"


def returns_a_lock() -> Any:
    import threading

    return threading.Lock()


def test_a_return_value_that_cannot_be_stored_is_reported_as_the_tasks_error(mlp_home: Path) -> None:
    op = MlpPodOperator(task_id="lock", python_callable=returns_a_lock, backend="local")
    with pytest.raises(RemoteTaskError, match=r"returned a _thread.lock that cannot be stored"):
        _run(op)
