"""BuildEnvironmentOperator in a real Airflow run: `airflow dags test` builds an environment at
execution time, and a downstream task of the same run rehydrates it from the env id in XCom."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.integration.env_builder.conftest import PY

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAG = textwrap.dedent(
    """
    from __future__ import annotations

    import json
    import os
    import subprocess

    from airflow.sdk import DAG, task

    from airflow_provider_mlp.operators.environment import BuildEnvironmentOperator

    with DAG("mlp_env_build_test", schedule=None, params={{"model_type": "xgb"}}) as dag:
        built = BuildEnvironmentOperator(
            task_id="build_env",
            spec={{"python": "{python}", "pip": ["six==1.17.0"]}},
            name="ranking/explainer-{{{{ params.model_type }}}}-{{{{ run_id }}}}",
        )

        @task
        def use_env(env_id: str, ti=None) -> None:
            from env_builder.rehydrate import ensure

            env = ensure(env_id)
            out = subprocess.run(
                [str(env.python), "-c", "import six; print(six.__version__)"],
                capture_output=True, text=True, check=True,
            )
            alias = ti.xcom_pull(task_ids="build_env", key="alias")
            with open(os.environ["MLP_TEST_RESULT"], "w") as fh:
                json.dump({{"env_id": env_id, "six": out.stdout.strip(), "alias": alias}}, fh)

        use_env(built.output)
    """
)


def _airflow(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    airflow = Path(sys.executable).with_name("airflow")
    return subprocess.run([str(airflow), *args], env=env, capture_output=True, text=True, timeout=600, check=False)


def test_env_built_at_execution_time_is_used_downstream_in_the_same_run(tmp_path: Path) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "mlp_env_build_test.py").write_text(DAG.format(python=PY))
    home = tmp_path / "mlp-home"
    env = {
        **os.environ,
        "MLP_HOME": str(home),
        "AIRFLOW_HOME": str(tmp_path / "airflow-home"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "MLP_TEST_RESULT": str(tmp_path / "result.json"),
    }
    for var in ("MLP_ENV_STORE", "MLP_ENV_CACHE_DIR"):
        env.pop(var, None)
    migrated = _airflow(["db", "migrate"], env)
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    ran = _airflow(["dags", "test", "mlp_env_build_test"], env)
    assert ran.returncode == 0 and "state=failed" not in ran.stdout + ran.stderr, (
        ran.stdout[-4000:] + ran.stderr[-4000:]
    )

    result = json.loads((tmp_path / "result.json").read_text())
    assert result["six"] == "1.17.0"
    assert result["alias"].startswith("ranking/default/explainer-xgb-")
    alias_file = home / "envs" / "aliases" / "ranking" / "default" / result["alias"].split("/")[2].split(":")[0]
    assert json.loads((alias_file / "latest.json").read_text())["env_id"] == result["env_id"]
    assert (home / "env-cache" / "envs" / result["env_id"] / ".mlp-ready").exists()
