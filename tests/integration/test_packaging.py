"""The built wheel carries what `mlp demo` needs (example DAGs, the demo data) and nothing outside the package."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    uv = Path(sys.executable).with_name("uv")
    proc = subprocess.run(
        [str(uv), "build", "--wheel", "--out-dir", str(out), "--no-build-isolation", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    (built,) = out.glob("*.whl")
    return built


def test_the_wheel_ships_the_example_dags_and_the_demo(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "airflow_provider_mlp/example_dags/mlp_quickstart.py" in names
    assert "airflow_provider_mlp/demo/data.py" in names and "airflow_provider_mlp/demo/runner.py" in names
    assert any(n.startswith("airflow_provider_mlp/kernels/_native") and n.endswith(".so") for n in names)
    top_level = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top_level == {"airflow_provider_mlp", "env_builder"}


def test_the_wheel_declares_the_extras(wheel: Path) -> None:
    (metadata,) = [n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".dist-info/METADATA")]
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    for extra in ("s3", "polars", "conda", "serving", "all"):
        assert f"Provides-Extra: {extra}" in text
    assert "bentoml" in text and 'extra == "serving"' in text
