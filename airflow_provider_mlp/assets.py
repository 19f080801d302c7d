"""Airflow Assets of this provider: Iceberg tables and served models.

- ``iceberg://<catalog>/<namespace>/<table>``: a multi-level namespace is written with dots
  (``iceberg://mlp/content.raw/titles``);
- ``mlp://model/<name>``: a model in the BentoML model store, published by ``PublishModelOperator``.

Both normalizers are registered in provider info under ``asset-uris``. Nothing here imports Airflow
at module level.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, quote, unquote

from airflow_provider_mlp.fastdata.identifiers import split_table_identifier

if TYPE_CHECKING:
    from airflow.sdk import Asset

SCHEME = "iceberg"
MLP_SCHEME = "mlp"
# The kinds of thing an ``mlp://<kind>/...`` URI names; only models so far.
MLP_KINDS = ("model",)


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


def model_asset_uri(name: str) -> str:
    """The asset URI of model ``name`` (a BentoML model name)."""
    from airflow_provider_mlp.serving.models import check_model_name

    return f"{MLP_SCHEME}://model/{check_model_name(name)}"


def sanitize_mlp_uri(uri: SplitResult) -> SplitResult:
    """Normalize ``mlp://model/<name>``: one form per model, or a ValueError naming the problem."""
    from airflow_provider_mlp.serving.models import check_model_name

    if uri.scheme != MLP_SCHEME:
        raise ValueError(f"not an mlp asset URI (scheme {uri.scheme!r}): {uri.geturl()}")
    kind = uri.netloc.lower()
    if kind not in MLP_KINDS:
        raise ValueError(
            f"mlp asset URI {uri.geturl()!r} must name one of {', '.join(MLP_KINDS)}: mlp://model/<name> "
            f"(got {uri.netloc!r})"
        )
    if uri.query or uri.fragment:
        raise ValueError(f"mlp asset URI {uri.geturl()!r} must not have a query or fragment")
    parts = [unquote(p) for p in uri.path.strip("/").split("/") if p]
    if len(parts) != 1:
        raise ValueError(f"mlp asset URI {uri.geturl()!r} must be mlp://model/<name> (got path {uri.path!r})")
    try:
        name = check_model_name(parts[0].lower())
    except ValueError as exc:
        raise ValueError(f"mlp asset URI {uri.geturl()!r}: {exc}") from None
    return SplitResult(MLP_SCHEME, kind, f"/{name}", "", "")


def create_model_asset(*, name: str, extra: dict[str, Any] | None = None) -> Asset:
    """The Asset of a served model (provider-info ``factory``)."""
    from airflow.sdk import Asset

    return Asset(uri=model_asset_uri(name), extra=extra or {})
