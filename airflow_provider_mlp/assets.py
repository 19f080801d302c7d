"""The provider's Airflow Asset URIs and their normalizers (registered in provider info, ``asset-uris``).

- ``iceberg://<catalog>/<namespace>/<table>``: an Iceberg table. A multi-level namespace is written with
  dots (``iceberg://mlp/content.raw/titles``).
- ``mlp://model/<name>``: a published model.
- ``mlp://env/<team>/<project>/<name>``: a built environment (its alias without the tag).

Nothing here imports Airflow at module level.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, quote, unquote

from airflow_provider_mlp.fastdata.identifiers import split_table_identifier

if TYPE_CHECKING:
    from airflow.sdk import Asset

SCHEME = "iceberg"
MLP_SCHEME = "mlp"
# kind -> the path components a ``mlp://<kind>/...`` URI has after its kind.
MLP_KINDS: dict[str, tuple[str, ...]] = {"model": ("name",), "env": ("team", "project", "name")}
_COMPONENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


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


def _mlp_uri(kind: str, parts: list[str], given: str) -> str:
    names = MLP_KINDS[kind]
    if len(parts) != len(names):
        layout = "/".join(f"<{n}>" for n in names)
        raise ValueError(f"mlp asset URI {given!r} must be mlp://{kind}/{layout} (got {len(parts)} path part(s))")
    for label, value in zip(names, parts, strict=True):
        if not _COMPONENT.match(value):
            raise ValueError(
                f"mlp asset URI {given!r} has an invalid {kind} {label} {value!r}; expected letters, digits, "
                "'.', '_' or '-' (starting with a letter or digit, at most 128 characters)"
            )
    return f"{MLP_SCHEME}://{kind}/{'/'.join(parts)}"


def model_asset_uri(name: str) -> str:
    """The asset URI of published model ``name``: ``mlp://model/<name>``."""
    return _mlp_uri("model", [name], f"model {name!r}")


def env_asset_uri(team: str, project: str, name: str) -> str:
    """The asset URI of environment alias ``team/project/name`` (any tag): ``mlp://env/<team>/<project>/<name>``."""
    return _mlp_uri("env", [team, project, name], f"env {team}/{project}/{name}")


def sanitize_mlp_uri(uri: SplitResult) -> SplitResult:
    """Normalize ``mlp://model/<name>`` and ``mlp://env/<team>/<project>/<name>``."""
    given = uri.geturl()
    if uri.scheme != MLP_SCHEME:
        raise ValueError(f"not an mlp asset URI (scheme {uri.scheme!r}): {given}")
    if uri.query or uri.fragment:
        raise ValueError(f"mlp asset URI {given!r} must not have a query or fragment")
    kind = uri.netloc
    if kind not in MLP_KINDS:
        raise ValueError(f"mlp asset URI {given!r} names kind {kind!r}; expected one of {sorted(MLP_KINDS)}")
    parts = [unquote(p) for p in uri.path.strip("/").split("/") if p]
    normalized = _mlp_uri(kind, parts, given)
    return SplitResult(MLP_SCHEME, kind, normalized[len(f"{MLP_SCHEME}://{kind}") :], "", "")


def create_model_asset(*, name: str, extra: dict[str, Any] | None = None) -> Asset:
    """The Asset of a published model (``mlp://model/<name>``)."""
    return create_mlp_asset(kind="model", name=name, extra=extra)


def create_mlp_asset(*, kind: str, extra: dict[str, Any] | None = None, **parts: str) -> Asset:
    """The Asset of a model (``kind="model", name=...``) or an environment (``kind="env", team, project, name``)."""
    from airflow.sdk import Asset

    if kind not in MLP_KINDS:
        raise ValueError(f"mlp asset kind {kind!r}; expected one of {sorted(MLP_KINDS)}")
    missing = [n for n in MLP_KINDS[kind] if n not in parts]
    if missing or set(parts) - set(MLP_KINDS[kind]):
        raise ValueError(f"an mlp {kind} asset takes {list(MLP_KINDS[kind])}, got {sorted(parts)}")
    uri = _mlp_uri(kind, [parts[n] for n in MLP_KINDS[kind]], f"{kind} {parts}")
    return Asset(uri=uri, extra=extra or {})
