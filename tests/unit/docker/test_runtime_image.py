"""The runtime image's Dockerfile is hadolint-clean and installs no more than the bootstrap needs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "docker" / "runtime.Dockerfile"


def test_hadolint_finds_nothing() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    proc = subprocess.run([str(hadolint), str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_image_runs_as_non_root_and_starts_the_bootstrap() -> None:
    text = DOCKERFILE.read_text()
    assert "USER 1000:1000" in text
    assert 'ENTRYPOINT ["python", "-m", "airflow_provider_mlp.compute"]' in text
    assert "--no-deps" in text  # Airflow itself never enters the image


def test_the_pinned_runtime_requirements_match_the_project_constraints() -> None:
    pins = dict(
        line.split("==")
        for line in (ROOT / "docker" / "runtime-requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )
    constraints = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().splitlines() if "==" in line)
    assert pins and all(constraints.get(name) == version for name, version in pins.items()), pins
