"""Iceberg tables as Airflow Assets: ``iceberg://<catalog>/<namespace>/<table>``.

A multi-level namespace is written with dots (``iceberg://mlp/content.raw/titles``). The normalizer
is registered in provider info under ``asset-uris`` for the ``iceberg`` scheme. Nothing here
imports Airflow at module level.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, quote, unquote

from airflow_provider_mlp.fastdata.identifiers import split_table_identifier

if TYPE_CHECKING:
    from airflow.sdk import Asset

SCHEME = "iceberg"


def table_asset_uri(catalog: str, identifier: str) -> str:
    """The asset URI of table ``identifier`` ("namespace.table") in catalog ``catalog``."""
    if not catalog:
        raise ValueError(f"an iceberg asset URI needs a catalog name (table {identifier!r})")
    namespace, table = split_table_identifier(identifier)
    return f"{SCHEME}://{quote(catalog, safe='')}/{quote(namespace, safe='.')}/{quote(table, safe='')}"


def sanitize_uri(uri: SplitResult) -> SplitResult:
    """Normalize ``iceberg://catalog/namespace/table``: one form per table, or a ValueError naming the problem."""
    if uri.scheme != SCHEME:
        raise ValueError(f"not an iceberg asset URI (scheme {uri.scheme!r}): {uri.geturl()}")
    if not uri.netloc:
        raise ValueError(f"iceberg asset URI {uri.geturl()!r} must name its catalog: iceberg://<catalog>/<ns>/<table>")
    if uri.query or uri.fragment:
        raise ValueError(f"iceberg asset URI {uri.geturl()!r} must not have a query or fragment")
    parts = [unquote(p) for p in uri.path.strip("/").split("/") if p]
    if len(parts) < 2:
        raise ValueError(
            f"iceberg asset URI {uri.geturl()!r} must be iceberg://<catalog>/<namespace>/<table> "
            f"(got path {uri.path!r})"
        )
    # iceberg://cat/a/b/t and iceberg://cat/a.b/t name the same table: namespace levels joined by dots.
    namespace, table = ".".join(parts[:-1]), parts[-1]
    path = f"/{quote(namespace, safe='.')}/{quote(table, safe='')}"
    return SplitResult(SCHEME, uri.netloc, path, "", "")


def create_asset(*, catalog: str, table: str, extra: dict[str, Any] | None = None) -> Asset:
    """The Asset of an Iceberg table (provider-info ``factory``)."""
    from airflow.sdk import Asset

    return Asset(uri=table_asset_uri(catalog, table), extra=extra or {})
