"""Fixtures shared by every test: an isolated MLP_HOME and the real services."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Airflow reads AIRFLOW_HOME when it is first imported: give the whole test session its own,
# so that tests never touch a user's ~/airflow and start from a clean configuration.
if "AIRFLOW_HOME" not in os.environ:
    os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="mlp-test-airflow-home-")
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

from tests.support.k8s_api_server import K8sApiServer, running_k8s_api_server
from tests.support.s3_server import CREDENTIALS, S3Server, running_s3_server


@pytest.fixture
def mlp_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh MLP_HOME: embedded catalog, warehouse and stores under a temporary directory."""
    home = tmp_path / "mlp-home"
    home.mkdir()
    monkeypatch.setenv("MLP_HOME", str(home))
    for var in ("MLP_CATALOG_URI", "MLP_WAREHOUSE", "MLP_ENV_STORE", "MLP_ENV_CACHE_DIR", "MLP_ARTIFACT_STORE"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A real S3-protocol server (moto, server mode) on 127.0.0.1, one per test session."""
    with pytest.MonkeyPatch.context() as patch:  # session-scoped: the function-scoped monkeypatch cannot
        for key, value in CREDENTIALS.items():
            patch.setenv(key, value)
        with running_s3_server() as server:
            yield server


@pytest.fixture(scope="session")
def memcached_server() -> str:
    """The memcached server `.ci/run` (or README's first command) started on 127.0.0.1."""
    address = os.environ.get("MLP_TEST_MEMCACHED", "127.0.0.1:11211")
    import socket

    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            pass
    except OSError as exc:
        pytest.fail(f"memcached is not running on {address} (start it: memcached -l 127.0.0.1 -p {port} -d): {exc}")
    return address


@pytest.fixture
def k8s_api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[K8sApiServer]:
    """A Kubernetes API test server with a simulated kubelet on 127.0.0.1 (tests/support/k8s_api_server.py).

    Every pod process is killed when the test ends, also when it fails.
    """
    with running_k8s_api_server(tmp_path_factory.mktemp("k8s")) as server:
        yield server


@pytest.fixture(scope="module")
def start_airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Start real Airflows (tests/support/airflow_cluster.py) on DAGs folders; all stop when the module ends.

    ``start_airflow(dags_folder, env={...}) -> AirflowCluster``; a module-scoped fixture usually wraps it.
    """
    from contextlib import ExitStack

    from tests.support.airflow_cluster import running_airflow

    with ExitStack() as stack:

        def start(dags_folder: Path, **kwargs: Any) -> Any:
            home = tmp_path_factory.mktemp("airflow-home")
            return stack.enter_context(running_airflow(home, dags_folder, **kwargs))

        yield start
