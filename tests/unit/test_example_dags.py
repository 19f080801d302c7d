"""Every example DAG shipped in the package loads in a DagBag with zero import errors, and parses fast."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "airflow_provider_mlp" / "example_dags"
DAG_FILES = sorted(p for p in DAGS_FOLDER.glob("*.py") if not p.name.startswith("_"))


def test_there_are_example_dags() -> None:
    assert DAG_FILES, f"no DAG files in {DAGS_FOLDER}"


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_loads_without_import_errors(dag_file: Path) -> None:
    # A dag-processor has the providers' operator modules loaded after its first file: time the
    # DAG file's own parsing, not the first import of KubernetesPodOperator behind @task.mlp.
    import airflow.providers.cncf.kubernetes.operators.pod  # noqa: F401
    from airflow.dag_processing.dagbag import DagBag

    started = time.monotonic()
    bag = DagBag(dag_folder=str(dag_file))
    elapsed = time.monotonic() - started
    assert bag.import_errors == {}
    assert bag.dags, f"{dag_file.name} defines no DAG"
    for dag in bag.dags.values():
        assert dag.tags, f"{dag.dag_id} has no tags"
    # Parsing must not import heavy libraries at module level (pandas, pyarrow, bentoml, kubernetes).
    assert elapsed < 10, f"{dag_file.name} took {elapsed:.1f}s to parse"
