from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_mlp.config import settings


def test_embedded_defaults_live_under_mlp_home(mlp_home: Path) -> None:
    s = settings()
    assert s.home == mlp_home.resolve()
    assert s.catalog_uri == f"sqlite:///{mlp_home.resolve() / 'catalog.db'}"
    assert s.warehouse == (mlp_home.resolve() / "warehouse").as_uri()
    assert s.env_store.startswith("file://") and s.env_store.endswith("/envs")
    assert s.artifact_store.endswith("/artifacts")
    assert s.memcached_servers == ("127.0.0.1:11211",)
    assert s.env_base_python is None
    assert s.catalog_properties() == {"type": "sql", "uri": s.catalog_uri, "warehouse": s.warehouse}


def test_environment_variables_override_defaults(mlp_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLP_WAREHOUSE", "s3://bucket/warehouse")
    monkeypatch.setenv("MLP_MEMCACHED_SERVERS", "10.0.0.1:11211, 10.0.0.2:11212")
    s = settings()
    assert s.warehouse == "s3://bucket/warehouse"
    assert s.memcached_servers == ("10.0.0.1:11211", "10.0.0.2:11212")


def test_env_base_python_comes_from_the_environment_or_the_airflow_config(
    mlp_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import airflow.configuration  # noqa: F401  (settings() reads [mlp] only where Airflow is loaded)

    monkeypatch.setenv("AIRFLOW__MLP__ENV_BASE_PYTHON", "/opt/conf/python3.11")
    assert settings().env_base_python == "/opt/conf/python3.11"
    monkeypatch.setenv("MLP_ENV_BASE_PYTHON", "/opt/env/python3.11")
    assert settings().env_base_python == "/opt/env/python3.11"


def test_airflow_config_applies_below_environment(mlp_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import airflow.configuration  # noqa: F401  (settings() reads [mlp] only where Airflow is loaded)

    monkeypatch.setenv("AIRFLOW__MLP__ENV_STORE", "s3://from-airflow-config/envs")
    assert settings().env_store == "s3://from-airflow-config/envs"
    monkeypatch.setenv("MLP_ENV_STORE", "s3://from-env/envs")
    assert settings().env_store == "s3://from-env/envs"


def test_a_malformed_memcached_server_list_fails_when_read_naming_the_variable(
    mlp_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_mlp.errors import ConfigurationError

    monkeypatch.setenv("MLP_MEMCACHED_SERVERS", "127.0.0.1:99999")
    with pytest.raises(ConfigurationError, match="MLP_MEMCACHED_SERVERS: memcached server '127.0.0.1:99999'"):
        settings()
    monkeypatch.setenv("MLP_MEMCACHED_SERVERS", "127.0.0.1")
    assert settings().memcached_servers == ("127.0.0.1:11211",)
