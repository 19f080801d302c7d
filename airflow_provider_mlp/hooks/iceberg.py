"""An Iceberg hook that defaults to the embedded catalog and hands out fastdata ``Table`` objects."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.apache.iceberg.hooks.iceberg import IcebergHook

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

    from airflow_provider_mlp.fastdata import Table


def catalog_name_for(iceberg_conn_id: str | None) -> str:
    """The catalog name in asset URIs, without I/O: a connection's catalog is named after the connection
    (IcebergHook loads it under its conn id); with no connection id it is the embedded catalog's name."""
    if iceberg_conn_id:
        return iceberg_conn_id
    from airflow_provider_mlp.config import settings

    return settings().catalog_name


class MlpIcebergHook(IcebergHook):
    """The Iceberg provider's hook (connection extra -> pyiceberg ``load_catalog`` properties, REST by
    default), or, with no connection id (the default), the embedded catalog from
    ``airflow_provider_mlp.config.settings()``.

    A connection id always means that connection, ``iceberg_default`` included: a missing one is an
    error, never a silent switch to the embedded catalog, so the catalog a task writes to and the one
    its asset URI names (decided at DAG parse time, without I/O) are always the same.

    :param iceberg_conn_id: an ``iceberg`` connection; ``None`` for the embedded catalog.
    """

    hook_name = "Iceberg (MLP Fast Data)"

    def __init__(self, iceberg_conn_id: str | None = None) -> None:
        super().__init__(iceberg_conn_id=iceberg_conn_id or "")
        self.conn_id = iceberg_conn_id or ""

    @property
    def uses_embedded_catalog(self) -> bool:
        return not self.conn_id

    @cached_property
    def catalog(self) -> Catalog:
        if self.uses_embedded_catalog:
            from airflow_provider_mlp.fastdata.catalog import default_catalog

            return default_catalog()
        return super().catalog

    @property
    def catalog_name(self) -> str:
        """The name used in asset URIs: the connection id, or the embedded catalog's configured name."""
        return catalog_name_for(self.conn_id)

    def get_table(self, identifier: str, **kwargs: Any) -> Table:
        """A fastdata ``Table`` on this hook's catalog."""
        from airflow_provider_mlp.fastdata import Table

        return Table(identifier, catalog=self.catalog, **kwargs)
