"""Row filters: parse text with pyiceberg's parser, and print expressions back to that text.

Shard descriptors carry the filter as text, so that they stay JSON and any process can re-plan the
same scan from them.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from airflow_provider_mlp.fastdata.errors import FilterError

if TYPE_CHECKING:
    from pyiceberg.expressions import BooleanExpression
    from pyiceberg.schema import Schema


def parse_filter(row_filter: Any, table: str = "") -> BooleanExpression:
    """A pyiceberg expression from ``None`` (everything), text, or an expression."""
    from pyiceberg.expressions import AlwaysTrue, BooleanExpression
    from pyiceberg.expressions.parser import parse

    if row_filter is None or row_filter == "":
        return AlwaysTrue()
    if isinstance(row_filter, BooleanExpression):
        return row_filter
    if not isinstance(row_filter, str):
        raise FilterError(f"row_filter must be text or a pyiceberg expression, got {type(row_filter).__name__}")
    try:
        return parse(row_filter)
    except Exception as exc:  # pyparsing's ParseException and the LIKE checks' ValueError
        where = f" on table {table!r}" if table else ""
        raise FilterError(f"row_filter {row_filter!r}{where} does not parse: {exc}") from None


def bind_filter(expr: BooleanExpression, schema: Schema, table: str, text: str) -> BooleanExpression:
    """Bind to ``schema``, turning an unknown column into an error that names it and the table."""
    from pyiceberg.expressions.visitors import bind

    try:
        return bind(schema, expr, case_sensitive=True)
    except ValueError as exc:
        columns = ", ".join(f.name for f in schema.fields)
        raise FilterError(f"row_filter {text!r} does not fit table {table!r}: {exc} (columns: {columns})") from None


def _literal_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # The parser reads plain decimals only: no exponent notation.
        return format(Decimal(repr(value)), "f")
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise FilterError(f"cannot write literal {value!r} ({type(value).__name__}) into a row filter")


def _column_text(name: str) -> str:
    if all(part.isidentifier() for part in name.split(".")):
        return name
    return '"' + name.replace('"', '\\"') + '"'


def filter_to_text(expr: BooleanExpression) -> str:
    """Text that ``parse_filter`` turns back into an equivalent expression (unbound expressions only)."""
    from pyiceberg.expressions import (
        AlwaysFalse,
        AlwaysTrue,
        And,
        EqualTo,
        GreaterThan,
        GreaterThanOrEqual,
        In,
        IsNaN,
        IsNull,
        LessThan,
        LessThanOrEqual,
        Not,
        NotEqualTo,
        NotIn,
        NotNaN,
        NotNull,
        NotStartsWith,
        Or,
        StartsWith,
    )

    comparisons: dict[type, str] = {
        EqualTo: "=",
        NotEqualTo: "!=",
        LessThan: "<",
        LessThanOrEqual: "<=",
        GreaterThan: ">",
        GreaterThanOrEqual: ">=",
    }
    connectives: dict[type, str] = {And: "and", Or: "or"}
    unary_tests: dict[type, str] = {IsNull: "is null", NotNull: "is not null", IsNaN: "is nan", NotNaN: "is not nan"}
    if isinstance(expr, AlwaysTrue):
        return "true"
    if isinstance(expr, AlwaysFalse):
        return "false"
    if type(expr) in connectives:
        return f"({filter_to_text(expr.left)} {connectives[type(expr)]} {filter_to_text(expr.right)})"  # type: ignore[attr-defined]
    if isinstance(expr, Not):
        return f"(not {filter_to_text(expr.child)})"
    term = getattr(expr, "term", None)
    name = getattr(term, "name", None)
    if name is None:
        raise FilterError(f"cannot write expression {expr!r} as a row filter (bound or unsupported)")
    column = _column_text(name)
    for kind, op in comparisons.items():
        if type(expr) is kind:
            return f"{column} {op} {_literal_text(expr.literal.value)}"  # type: ignore[attr-defined]
    if isinstance(expr, (In, NotIn)):
        values = sorted((lit.value for lit in expr.literals), key=repr)
        inner = ", ".join(_literal_text(v) for v in values)
        return f"{column} {'in' if isinstance(expr, In) else 'not in'} ({inner})"
    if type(expr) in unary_tests:
        return f"{column} {unary_tests[type(expr)]}"
    if isinstance(expr, (StartsWith, NotStartsWith)):
        pattern = str(expr.literal.value).replace("%", "\\%") + "%"
        return f"{column} {'like' if isinstance(expr, StartsWith) else 'not like'} {_literal_text(pattern)}"
    raise FilterError(f"cannot write expression {expr!r} as a row filter")


def filter_text(row_filter: Any) -> str:
    """Canonical text of a filter given as ``None``, text or expression (for descriptors)."""
    if row_filter is None or row_filter == "":
        return "true"
    if isinstance(row_filter, str):
        return row_filter
    return filter_to_text(row_filter)
