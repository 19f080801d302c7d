"""Table identifiers: ``"namespace.table"`` (the namespace may itself have dots), checked in one place."""

from __future__ import annotations

from collections.abc import Sequence

from airflow_provider_mlp.fastdata.errors import TableNotFoundError


def table_identifier(identifier: str | Sequence[str]) -> str:
    """``identifier`` as ``"namespace.table"`` text (a sequence of levels is joined with dots).

    Raises ``TableNotFoundError`` (a ``ValueError`` too): no table can have a name without a namespace.
    """
    if isinstance(identifier, str):
        text = identifier
    elif isinstance(identifier, Sequence) and all(isinstance(level, str) for level in identifier):
        text = ".".join(identifier)
    else:
        raise TableNotFoundError(f"table identifier must be a 'namespace.table' string, got {identifier!r}")
    namespace, _, name = text.rpartition(".")
    if not namespace or not name or namespace.startswith(".") or not text.strip() or ".." in text:
        raise TableNotFoundError(f"table identifier {text!r} must be 'namespace.table'")
    return text


def split_table_identifier(identifier: str | Sequence[str]) -> tuple[str, str]:
    """``(namespace, table)`` of a checked identifier."""
    namespace, _, name = table_identifier(identifier).rpartition(".")
    return namespace, name
