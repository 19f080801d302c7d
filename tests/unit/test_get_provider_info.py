from __future__ import annotations

import importlib
import json
from importlib import metadata, resources

import jsonschema
import pytest

from airflow_provider_mlp.get_provider_info import get_provider_info


@pytest.fixture(scope="module")
def provider_info() -> dict:
    return get_provider_info()


def test_validates_against_airflows_provider_info_schema(provider_info: dict) -> None:
    schema = json.loads((resources.files("airflow") / "provider_info.schema.json").read_text())
    jsonschema.validate(provider_info, schema)


def test_package_name_is_the_distribution_name(provider_info: dict) -> None:
    assert provider_info["package-name"] == "airflow-provider-mlp"
    assert metadata.distribution("airflow-provider-mlp").metadata["Name"] == "airflow-provider-mlp"


def test_entry_point_points_at_get_provider_info() -> None:
    (entry_point,) = [
        ep
        for ep in metadata.entry_points(group="apache_airflow_provider")
        if ep.dist is not None and ep.dist.name == "airflow-provider-mlp"
    ]
    assert entry_point.load() is get_provider_info


def _class(path: str) -> object:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def test_every_module_and_class_named_imports(provider_info: dict) -> None:
    for section in ("hooks", "operators", "sensors", "triggers"):
        for entry in provider_info.get(section, []):
            for module in entry["python-modules"]:
                importlib.import_module(module)
    for conn in provider_info["connection-types"]:
        hook = _class(conn["hook-class-name"])
        assert hook.conn_type == conn["connection-type"]  # type: ignore[attr-defined]
    for decorator in provider_info.get("task-decorators", []):
        _class(decorator["class-name"])
    for asset in provider_info.get("asset-uris", []):
        for attr in ("handler", "to_openlineage_converter", "factory"):
            if asset.get(attr):
                _class(asset[attr])


def test_connection_fields_are_declarative(provider_info: dict) -> None:
    for conn in provider_info["connection-types"]:
        assert conn["conn-fields"], conn["connection-type"]
        for field in conn["conn-fields"].values():
            assert field["label"] and "type" in field["schema"]


def test_config_section_documents_every_setting(provider_info: dict) -> None:
    from airflow_provider_mlp.config import OPTIONS

    options = provider_info["config"]["mlp"]["options"]
    assert set(options) == set(OPTIONS)
    for key, (env_var, _) in OPTIONS.items():
        assert env_var in options[key]["description"]
