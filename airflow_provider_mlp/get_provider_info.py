"""Provider metadata read by Airflow's ProvidersManager (``apache_airflow_provider`` entry point).

Kept as plain data, as in Airflow's own providers: importing this module must stay cheap.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_mlp.config import FIXED_DEFAULTS, OPTIONS


def _config_options() -> dict[str, dict[str, Any]]:
    options: dict[str, dict[str, Any]] = {}
    for key, (env_var, description) in OPTIONS.items():
        home_derived = key not in FIXED_DEFAULTS
        options[key] = {
            "description": f"{description} Overridden by the {env_var} environment variable. "
            + ("Empty means the embedded default." if home_derived else ""),
            "version_added": "0.1.0",
            "type": "string",
            "example": None,
            # Defaults that depend on ``home`` are computed at run time; the config file leaves them empty.
            "default": FIXED_DEFAULTS.get(key, ""),
        }
    return options


def _nullable(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], **extra}


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-mlp",
        "name": "MLP (ML platform)",
        "description": "ML-platform integrations for Airflow: fast Iceberg data, portable environments, "
        "compute in Kubernetes pods, events, precompute and serving.",
        "integrations": [
            {
                "integration-name": "MLP",
                "external-doc-url": "https://iceberg.apache.org/",
                "tags": ["software"],
            }
        ],
        "hooks": [
            {
                "integration-name": "MLP",
                "python-modules": [
                    "airflow_provider_mlp.hooks.iceberg",
                    "airflow_provider_mlp.hooks.object_store",
                    "airflow_provider_mlp.hooks.memcached",
                ],
            }
        ],
        "operators": [
            {
                "integration-name": "MLP",
                "python-modules": [
                    "airflow_provider_mlp.operators.fastdata",
                    "airflow_provider_mlp.operators.environment",
                    "airflow_provider_mlp.operators.compute",
                    "airflow_provider_mlp.operators.precompute",
                    "airflow_provider_mlp.operators.serving",
                ],
            }
        ],
        "sensors": [{"integration-name": "MLP", "python-modules": ["airflow_provider_mlp.sensors.iceberg"]}],
        "triggers": [{"integration-name": "MLP", "python-modules": ["airflow_provider_mlp.triggers.iceberg"]}],
        "task-decorators": [
            {"class-name": "airflow_provider_mlp.decorators.mlp.mlp_task", "name": "mlp"},
        ],
        # MlpIcebergHook reuses the Iceberg provider's ``iceberg`` connection type, so it
        # registers no connection type of its own.
        "asset-uris": [
            {
                "schemes": ["iceberg"],
                "handler": "airflow_provider_mlp.assets.sanitize_uri",
                "factory": "airflow_provider_mlp.assets.create_asset",
            },
            {
                "schemes": ["mlp"],
                "handler": "airflow_provider_mlp.assets.sanitize_mlp_uri",
                "factory": "airflow_provider_mlp.assets.create_mlp_asset",
            },
        ],
        "connection-types": [
            {
                "hook-class-name": "airflow_provider_mlp.hooks.object_store.ObjectStoreHook",
                "hook-name": "MLP Object Store",
                "connection-type": "mlp_object_store",
                "conn-fields": {
                    "url": {
                        "label": "Root URL",
                        "description": "fsspec URL, e.g. s3://bucket/mlp or file:///data/mlp",
                        "schema": _nullable("string"),
                    },
                    "endpoint_url": {
                        "label": "Endpoint URL",
                        "description": "S3-compatible endpoint when not AWS",
                        "schema": _nullable("string"),
                    },
                    "storage_options": {
                        "label": "Storage options (JSON)",
                        "description": "Extra fsspec options as a JSON object",
                        "schema": _nullable("string"),
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["host", "schema", "port"],
                    "relabeling": {"login": "Access key", "password": "Secret key"},
                },
            },
            {
                "hook-class-name": "airflow_provider_mlp.hooks.memcached.MemcachedHook",
                "hook-name": "MLP memcached",
                "connection-type": "mlp_memcached",
                "conn-fields": {
                    "servers": {
                        "label": "Servers",
                        "description": "Comma-separated host[:port] list; overrides host and port",
                        "schema": _nullable("string"),
                    },
                    "connect_timeout": {
                        "label": "Connect timeout (s)",
                        "description": "Seconds to wait for a connection",
                        "schema": _nullable("number"),
                    },
                    "timeout": {
                        "label": "Timeout (s)",
                        "description": "Seconds to wait for a reply",
                        "schema": _nullable("number"),
                    },
                    "max_pool_size": {
                        "label": "Max pool size",
                        "description": "Connections kept per server",
                        "schema": _nullable("integer"),
                    },
                    "tls": {"label": "TLS", "description": "Connect with TLS", "schema": _nullable("boolean")},
                    "tls_verify": {
                        "label": "Verify TLS certificates",
                        "description": "Check the servers' certificates (default true)",
                        "schema": _nullable("boolean"),
                    },
                    "tls_ca_file": {
                        "label": "TLS CA file",
                        "description": "CA bundle path",
                        "schema": _nullable("string"),
                    },
                    "tls_cert_file": {
                        "label": "TLS client certificate",
                        "description": "Client certificate path",
                        "schema": _nullable("string"),
                    },
                    "tls_key_file": {
                        "label": "TLS client key",
                        "description": "Client key path",
                        "schema": _nullable("string"),
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "login", "password"],
                    "placeholders": {"host": "127.0.0.1", "port": "11211"},
                },
            },
        ],
        "config": {
            "mlp": {
                "description": "Where the ML platform keeps its catalog, stores and caches. Each option "
                "is overridden by its MLP_* environment variable, and by connections where an operator "
                "or hook names one.",
                "options": _config_options(),
            }
        },
    }
