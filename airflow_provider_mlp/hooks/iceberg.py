"""An Iceberg hook that defaults to the embedded catalog and hands out fastdata ``Table`` objects."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.apache.iceberg.hooks.iceberg import IcebergHook

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

    from airflow_provider_mlp.fastdata import Table


class MlpIcebergHook(IcebergHook):
    """The Iceberg provider's hook (connection extra -> pyiceberg ``load_catalog`` properties, REST by
    default), plus a fallback: with no connection id, or when the default connection does not exist,
    the catalog is the embedded one from ``airflow_provider_mlp.config.settings()``.

    :param iceberg_conn_id: an ``iceberg`` connection; ``None`` for the embedded catalog.
    """

    hook_name = "Iceberg (MLP Fast Data)"

    def __init__(self, iceberg_conn_id: str | None = IcebergHook.default_conn_name) -> None:
        super().__init__(iceberg_conn_id=iceberg_conn_id or "")
        self.conn_id = iceberg_conn_id or ""

    def _connection_exists(self) -> bool:
        from airflow.exceptions import AirflowNotFoundException

        try:
            self.get_connection(self.conn_id)
        except AirflowNotFoundException:
            return False
        return True

    @cached_property
    def uses_embedded_catalog(self) -> bool:
        if not self.conn_id:
            return True
        if self.conn_id == self.default_conn_name and not self._connection_exists():
            self.log.info("No connection %r: using the embedded Iceberg catalog", self.conn_id)
            return True
        return False

    @cached_property
    def catalog(self) -> Catalog:
        if self.uses_embedded_catalog:
            from airflow_provider_mlp.fastdata.catalog import default_catalog

            return default_catalog()
        return super().catalog

    @property
    def catalog_name(self) -> str:
        """The name used in asset URIs: the connection id, or the embedded catalog's configured name."""
        if self.uses_embedded_catalog:
            from airflow_provider_mlp.config import settings

            return settings().catalog_name
        return self.conn_id

    def get_table(self, identifier: str, **kwargs: Any) -> Table:
        """A fastdata ``Table`` on this hook's catalog."""
        from airflow_provider_mlp.fastdata import Table

        return Table(identifier, catalog=self.catalog, **kwargs)
