"""Resolve the Iceberg catalog a ``Table`` talks to: the embedded default, properties, or a connection."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog


_CACHE: dict[tuple[str, tuple[tuple[str, str], ...]], Catalog] = {}
_CACHE_LOCK = threading.Lock()


def _prepare_local_paths(properties: Mapping[str, str]) -> None:
    # SQLite creates the database file but not its directory, and a file:// warehouse must exist
    # before pyiceberg writes the first metadata file into it.
    uri = properties.get("uri", "")
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    warehouse = properties.get("warehouse", "")
    if warehouse.startswith("file://"):
        Path(urlparse(warehouse).path).mkdir(parents=True, exist_ok=True)


def load_catalog_cached(name: str, properties: Mapping[str, Any]) -> Catalog:
    """``pyiceberg.catalog.load_catalog`` memoised per (name, properties): engines and clients are reused."""
    from pyiceberg.catalog import load_catalog

    props = {str(k): str(v) for k, v in properties.items()}
    key = (name, tuple(sorted(props.items())))
    with _CACHE_LOCK:
        catalog = _CACHE.get(key)
        if catalog is None:
            _prepare_local_paths(props)
            catalog = load_catalog(name, **props)
            _CACHE[key] = catalog
        return catalog


def default_catalog() -> Catalog:
    """The embedded catalog: pyiceberg's SQL catalog on SQLite with a local warehouse under MLP_HOME."""
    from airflow_provider_mlp.config import settings

    resolved = settings()
    return load_catalog_cached(resolved.catalog_name, resolved.catalog_properties())


def resolve_catalog(catalog: Any = None, conn_id: str | None = None) -> Catalog:
    """Turn ``catalog=`` / ``conn_id=`` into a pyiceberg catalog (explicit catalog wins, then the connection)."""
    from pyiceberg.catalog import Catalog

    if isinstance(catalog, Catalog):
        return catalog
    if isinstance(catalog, Mapping):
        props = dict(catalog)
        name = str(props.pop("name", "default"))
        return load_catalog_cached(name, props)
    if catalog is not None:
        raise TypeError(
            f"catalog must be a pyiceberg Catalog, a dict of catalog properties or None, got {type(catalog).__name__}"
        )
    if conn_id is not None:
        return connection_catalog(conn_id)
    return default_catalog()


def connection_catalog(conn_id: str) -> Catalog:
    """The catalog of an Airflow ``iceberg`` connection, as the Iceberg provider's hook loads it.

    Airflow is imported only here, by design: a pod that never names a connection never imports
    it. The provider's ``IcebergHook`` is used directly (not this package's ``MlpIcebergHook``,
    which wraps this module), so Fast Data never depends on the Airflow-side hooks.
    """
    from airflow.providers.apache.iceberg.hooks.iceberg import IcebergHook

    return IcebergHook(iceberg_conn_id=conn_id).catalog
