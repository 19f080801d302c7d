"""The example DAGs through a real Airflow 3: the Params form in a real browser, and partition keys across DAGs.

In the browser, a person's path through the UI of a real Airflow 3 (tests/support/airflow_cluster.py, simple auth
manager with every user an admin): open the DAG, press Trigger, fill the form Airflow renders from the DAG's typed
Params, submit. The run's conf (read back through the REST API) holds the typed values, and the event the run emits
fills the downstream DAG's Params. Screenshots of the filled form and of the finished run are kept as test
artifacts (their paths are printed). A partition key given to the ETL DAG reaches the model and precompute
DAGs (mlp_partitions.py).

Needs Debian's ``chromium`` (``apt-get install -y --no-install-recommends chromium``); Playwright drives it
through ``executable_path`` and never downloads a browser.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_mlp.demo.runner import example_dags_folder
from tests.support.airflow_cluster import AirflowCluster
from tests.support.browser import artifact_dir, chromium_page

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITION_DAGS = ["mlp_etl_daily_orders", "mlp_train_demand", "mlp_precompute_demand"]


@pytest.fixture(scope="module")
def airflow(start_airflow: Any, tmp_path_factory: pytest.TempPathFactory) -> AirflowCluster:
    home = tmp_path_factory.mktemp("trigger-form-mlp-home")
    cluster: AirflowCluster = start_airflow(example_dags_folder(), env={"MLP_HOME": str(home)})
    cluster.wait_for_dags(["mlp_publish_model", "mlp_score_with_model", *PARTITION_DAGS])
    return cluster


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    with chromium_page(tmp_path / "chromium-profile") as browser_page:
        yield browser_page


def _artifact_dir(tmp_path: Path) -> Path:
    return artifact_dir(tmp_path, "trigger-form")


def test_trigger_form_runs_the_dag_with_typed_conf(
    airflow: AirflowCluster, page: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from playwright.sync_api import expect

    artifacts = _artifact_dir(tmp_path)
    before = len(airflow.runs("mlp_publish_model"))
    downstream_before = len(airflow.runs("mlp_score_with_model"))

    # The simple auth manager with every user an admin logs the browser in by itself.
    page.goto(f"{airflow.url}/dags/mlp_publish_model")
    page.get_by_test_id("trigger-dag-button").click()
    version = page.locator("input[name=element_version]")
    uri = page.locator("input[name=element_uri]")
    expect(version).to_be_visible()
    # The form starts from the Params' defaults and shows their descriptions.
    expect(version).to_have_value("1")
    expect(page.get_by_text("the model version to announce")).to_be_visible()
    version.fill("42")
    # uri is optional (a nullable Param): left empty, it reaches the run as null.
    expect(uri).to_have_value("")
    form_shot = artifacts / "01-trigger-form-filled.png"
    page.screenshot(path=str(form_shot), full_page=True)
    page.get_by_test_id("trigger-dag-submit").click()

    runs = airflow.wait_for_runs("mlp_publish_model", before + 1, timeout=120)
    run = runs[-1]
    assert run["state"] == "success", run
    assert run["run_type"] == "manual", run
    # Typed as the Params say: the version is the string "42", not the number 42.
    assert run["conf"] == {"version": "42", "uri": None}, run["conf"]
    emitted = airflow.xcom("mlp_publish_model", run["dag_run_id"], "publish")
    assert emitted["version"] == "42" and emitted.get("uri") is None, emitted

    # The run's model.published event fills the consumer's Params.
    downstream = airflow.wait_for_runs("mlp_score_with_model", downstream_before + 1, timeout=120)[-1]
    assert downstream["state"] == "success", downstream
    assert airflow.xcom("mlp_score_with_model", downstream["dag_run_id"], "score") == "42"

    # What a person sees afterwards: the run's page, finished.
    page.goto(f"{airflow.url}/dags/mlp_publish_model/runs/{run['dag_run_id']}")
    expect(page.get_by_text(run["dag_run_id"]).first).to_be_visible()
    expect(page.get_by_text("success").first).to_be_visible()
    run_shot = artifacts / "02-run-succeeded.png"
    page.screenshot(path=str(run_shot), full_page=True)

    for shot in (form_shot, run_shot):
        assert shot.stat().st_size > 10_000, f"{shot} looks empty"
    with capsys.disabled():
        print(f"\ntrigger form screenshots: {form_shot} {run_shot}")


def test_partition_key_flows_from_etl_to_model_to_precompute(
    airflow: AirflowCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    status, body = airflow.api(
        "POST", "/api/v2/dags/mlp_etl_daily_orders/dagRuns", {"logical_date": None, "partition_key": "2026-06-14"}
    )
    assert status == 200, body
    etl = airflow.wait_for_runs("mlp_etl_daily_orders", 1, timeout=120)[-1]
    assert etl["state"] == "success", etl
    assert etl["partition_key"] == "2026-06-14", etl

    train = airflow.wait_for_runs("mlp_train_demand", 1, timeout=120)[-1]
    assert train["state"] == "success", train
    assert train["partition_key"] == "2026-06-14", train
    published = airflow.xcom("mlp_train_demand", train["dag_run_id"], "train")
    assert published["version"] == "2026-06-14", published

    precompute = airflow.wait_for_runs("mlp_precompute_demand", 1, timeout=120)[-1]
    assert precompute["state"] == "success", precompute
    assert precompute["partition_key"] == "2026-06-14", precompute
    assert airflow.xcom("mlp_precompute_demand", precompute["dag_run_id"], "precompute") == {
        "partition_key": "2026-06-14",
        "model_version": "2026-06-14",
        "key_prefix": "demand/2026-06-14/",
    }
    # The day's rows are in the table, written once.
    from airflow_provider_mlp.fastdata.catalog import default_catalog

    monkeypatch.setenv("MLP_HOME", airflow.instance.env["MLP_HOME"])
    rows = default_catalog().load_table("sales.daily_orders").scan().to_arrow()
    assert rows.column("day").to_pylist() == ["2026-06-14"] * 3
