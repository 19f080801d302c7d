"""Where things live: the embedded defaults, and how to override them.

One place decides the Iceberg catalog, the environment and artifact stores and the memcached
servers. Precedence, highest first:

1. an explicit argument (``Table(..., catalog=...)``, ``build(..., store=...)``);
2. an Airflow connection, where the caller names one;
3. an ``MLP_*`` environment variable (``MLP_HOME``, ``MLP_CATALOG_URI``, ...);
4. the ``[mlp]`` section of the Airflow configuration (also settable as ``AIRFLOW__MLP__*``),
   read only where Airflow is already imported, so pods never pay for importing it;
5. the embedded default, everything under ``MLP_HOME`` (default ``~/.mlp``).

This module never imports Airflow at module level: pods and serving processes use it too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from airflow_provider_mlp.errors import ConfigurationError

# (key, environment variable, description). Defaults are derived from ``home`` in ``settings``.
OPTIONS: dict[str, tuple[str, str]] = {
    "home": ("MLP_HOME", "Root directory of every embedded default (catalog, warehouse, stores)."),
    "catalog_name": ("MLP_CATALOG_NAME", "Name of the default pyiceberg catalog."),
    "catalog_uri": ("MLP_CATALOG_URI", "SQLAlchemy URI of the default pyiceberg SQL catalog."),
    "warehouse": ("MLP_WAREHOUSE", "fsspec URL under which new Iceberg tables are created."),
    "env_store": ("MLP_ENV_STORE", "fsspec URL where packed environments and their manifests are stored."),
    "env_cache_dir": ("MLP_ENV_CACHE_DIR", "Node-local directory where environments are rehydrated."),
    "env_base_python": (
        "MLP_ENV_BASE_PYTHON",
        "Python executable that pip environments are built against and relinked to (empty: found by version).",
    ),
    "artifact_store": ("MLP_ARTIFACT_STORE", "fsspec URL where task artifacts are stored."),
    "memcached_servers": ("MLP_MEMCACHED_SERVERS", "Comma-separated host:port list of memcached servers."),
    "compute_backend": (
        "MLP_COMPUTE_BACKEND",
        "Where @task.mlp and MlpPodOperator run: 'local' (a subprocess on the worker) or 'kubernetes' (a pod).",
    ),
    "runtime_image": ("MLP_RUNTIME_IMAGE", "Container image of pods that run tasks (docker/runtime.Dockerfile)."),
}

DEFAULT_HOME = "~/.mlp"
DEFAULT_CATALOG_NAME = "mlp"
COMPUTE_BACKENDS = ("local", "kubernetes")
DEFAULT_COMPUTE_BACKEND = "local"
DEFAULT_RUNTIME_IMAGE = "airflow-provider-mlp-runtime:0.1.0"
DEFAULT_MEMCACHED_PORT = 11211
DEFAULT_MEMCACHED_SERVERS = f"127.0.0.1:{DEFAULT_MEMCACHED_PORT}"
# Defaults that do not depend on ``home``; every other option's default is derived from it in ``settings``.
FIXED_DEFAULTS = {
    "home": DEFAULT_HOME,
    "catalog_name": DEFAULT_CATALOG_NAME,
    "env_base_python": "",
    "memcached_servers": DEFAULT_MEMCACHED_SERVERS,
    "compute_backend": DEFAULT_COMPUTE_BACKEND,
    "runtime_image": DEFAULT_RUNTIME_IMAGE,
}


@dataclass(frozen=True)
class Settings:
    """Resolved settings; every path is absolute and every store an fsspec URL."""

    home: Path
    catalog_name: str
    catalog_uri: str
    warehouse: str
    env_store: str
    env_cache_dir: Path
    env_base_python: str | None
    artifact_store: str
    memcached_servers: tuple[str, ...]
    compute_backend: str
    runtime_image: str

    def catalog_properties(self) -> dict[str, str]:
        """pyiceberg properties of the default catalog (``load_catalog(name, **props)``)."""
        return {"type": "sql", "uri": self.catalog_uri, "warehouse": self.warehouse}


def parse_servers(servers: str | Iterable[str], *, source: str) -> list[tuple[str, int]]:
    """Parse ``"host[:port],host[:port]"`` (or a list of them) into ``(host, port)`` tuples.

    A host without a port gets memcached's default port, as a connection's host field does;
    ``[::1]:11211`` is an IPv6 address. Nothing at all (``""``) is an error, never a silent default.
    ``source`` names where the text came from (a variable, a connection field) for the message.
    """
    items = servers.split(",") if isinstance(servers, str) else [str(item) for item in servers]
    parsed: list[tuple[str, int]] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        host, port_text = item, ""
        if item.startswith("["):
            host, closed, rest = item[1:].partition("]")
            if not closed or (rest and not rest.startswith(":")):
                host = ""
            port_text = rest[1:]
        elif item.count(":") == 1:
            host, _, port_text = item.partition(":")
        elif ":" in item:
            host = ""  # a bare IPv6 address needs brackets to tell its last group from a port
        if (
            not host
            or any(c.isspace() for c in host)
            or (port_text and not (port_text.isascii() and port_text.isdigit()))
        ):
            raise ConfigurationError(
                f"{source}: memcached server {item!r} is not of the form host[:port] "
                "(e.g. 127.0.0.1:11211, or [::1]:11211 for IPv6)"
            )
        port = int(port_text) if port_text else DEFAULT_MEMCACHED_PORT
        if not 1 <= port <= 65535:
            raise ConfigurationError(f"{source}: memcached server {item!r} has port {port}, expected 1-65535")
        parsed.append((host, port))
    if not parsed:
        raise ConfigurationError(f"{source}: no memcached server given (expected host[:port][,host[:port]...])")
    return parsed


def compute_backend(value: str, source: str) -> str:
    """A checked compute backend name."""
    backend = value.strip().lower()
    if backend not in COMPUTE_BACKENDS:
        raise ConfigurationError(f"{source}: compute backend {value!r} is not one of {', '.join(COMPUTE_BACKENDS)}")
    return backend


def format_server(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _source_of(key: str) -> str:
    env_var = OPTIONS[key][0]
    return env_var if os.environ.get(env_var) else f"[mlp] {key}"


def _airflow_option(key: str) -> str | None:
    # Only consult Airflow's configuration inside processes that already imported it (the
    # scheduler, workers, the API server): importing it here would cost pods a second or more.
    if "airflow.configuration" not in sys.modules:
        return None
    from airflow.configuration import conf

    value = conf.get("mlp", key, fallback=None)
    return value or None


def _lookup(key: str) -> str | None:
    env_var = OPTIONS[key][0]
    value = os.environ.get(env_var)
    if value:
        return value
    return _airflow_option(key)


def settings() -> Settings:
    """Resolve the settings now (cheap; call it where they are needed rather than caching)."""
    home = Path(os.path.expanduser(_lookup("home") or DEFAULT_HOME)).resolve()
    servers = _lookup("memcached_servers") or DEFAULT_MEMCACHED_SERVERS
    # Checked now, naming the variable, rather than when a hook first connects.
    addresses = parse_servers(servers, source=_source_of("memcached_servers"))
    return Settings(
        home=home,
        catalog_name=_lookup("catalog_name") or DEFAULT_CATALOG_NAME,
        catalog_uri=_lookup("catalog_uri") or f"sqlite:///{home / 'catalog.db'}",
        warehouse=_lookup("warehouse") or (home / "warehouse").as_uri(),
        env_store=_lookup("env_store") or (home / "envs").as_uri(),
        env_cache_dir=Path(os.path.expanduser(_lookup("env_cache_dir") or str(home / "env-cache"))),
        env_base_python=_lookup("env_base_python"),
        artifact_store=_lookup("artifact_store") or (home / "artifacts").as_uri(),
        memcached_servers=tuple(format_server(address) for address in addresses),
        compute_backend=compute_backend(
            _lookup("compute_backend") or DEFAULT_COMPUTE_BACKEND, _source_of("compute_backend")
        ),
        runtime_image=_lookup("runtime_image") or DEFAULT_RUNTIME_IMAGE,
    )
