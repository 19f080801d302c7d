"""``Table.scan_polars()``: a polars LazyFrame whose projection and filter reach this package's reader.

polars hands an IO source the columns it needs and its predicate as a polars expression. The parts
of the predicate that translate to a pyiceberg expression (comparisons of a column with a literal,
``is_null``, ``is_in``, combined with ``&``, ``|`` and ``~``) prune files, row groups and rows in the
reader; the whole predicate is then applied by polars on every batch, so that a predicate only partly
translated (or with polars' own semantics, such as NaN ordering) still gives polars' answer.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa
    from pyiceberg.expressions import BooleanExpression
    from pyiceberg.schema import Schema

    from airflow_provider_mlp.fastdata.table import Table

# polars operator name -> (pyiceberg predicate class name, the same predicate with the operands swapped)
_COMPARISONS = {
    "Eq": ("EqualTo", "EqualTo"),
    "NotEq": ("NotEqualTo", "NotEqualTo"),
    "Lt": ("LessThan", "GreaterThan"),
    "LtEq": ("LessThanOrEqual", "GreaterThanOrEqual"),
    "Gt": ("GreaterThan", "LessThan"),
    "GtEq": ("GreaterThanOrEqual", "LessThanOrEqual"),
}
# For float columns polars orders NaN above every number (and NaN == NaN); Arrow's comparisons are
# false for NaN. These predicates are widened by ``or is_nan`` so that no row polars keeps is dropped.
_NAN_MATCHES = {"GreaterThan", "GreaterThanOrEqual", "NotEqualTo"}


def _expressions() -> Any:
    """pyiceberg.expressions, untyped: its predicates' constructors take a column name, which its
    pydantic-derived signatures do not say."""
    import pyiceberg.expressions

    return pyiceberg.expressions


def predicate_to_iceberg(predicate: pl.Expr | None, schema: Schema) -> BooleanExpression:
    """A pyiceberg expression matching at least every row ``predicate`` keeps (``AlwaysTrue`` if nothing translates)."""
    from pyiceberg.expressions import AlwaysTrue

    if predicate is None:
        return AlwaysTrue()
    try:
        tree = json.loads(predicate.meta.serialize(format="json"))
    except Exception:  # an expression polars cannot serialise as JSON: nothing is pushed down
        return AlwaysTrue()
    translated, _ = _translate(tree, schema)
    return translated


def _translate(node: Any, schema: Schema) -> tuple[BooleanExpression, bool]:
    """(a superset expression, whether it is exact): an inexact part may only be widened, never negated."""
    ex = _expressions()
    AlwaysTrue, And, Not, Or = ex.AlwaysTrue, ex.And, ex.Not, ex.Or

    relaxed = (AlwaysTrue(), False)
    if not isinstance(node, dict) or len(node) != 1:
        return relaxed
    kind, body = next(iter(node.items()))
    if kind == "BinaryExpr":
        op = body.get("op")
        if op in ("And", "LogicalAnd"):
            (left, left_exact), (right, right_exact) = (
                _translate(body["left"], schema),
                _translate(body["right"], schema),
            )
            return And(left, right), left_exact and right_exact
        if op in ("Or", "LogicalOr"):
            (left, left_exact), (right, right_exact) = (
                _translate(body["left"], schema),
                _translate(body["right"], schema),
            )
            return Or(left, right), left_exact and right_exact
        if op in _COMPARISONS:
            return _comparison(op, body["left"], body["right"], schema)
        return relaxed
    if kind == "Function":
        function = body.get("function")
        inputs = body.get("input") or []
        name = function.get("Boolean") if isinstance(function, dict) else None
        if name in ("IsNull", "IsNotNull") and len(inputs) == 1:
            column = _column(inputs[0], schema)
            if column is None:
                return relaxed
            return (ex.IsNull(column) if name == "IsNull" else ex.NotNull(column)), True
        if name == "Not" and len(inputs) == 1:
            inner, exact = _translate(inputs[0], schema)
            # The negation of a widened expression would be narrower: only an exact one is negated.
            return (Not(inner), True) if exact else relaxed
        if isinstance(name, dict) and "IsIn" in name and len(inputs) == 2:
            return _is_in(inputs[0], inputs[1], bool(name["IsIn"].get("nulls_equal")), schema)
    return relaxed


def _column(node: Any, schema: Schema) -> str | None:
    if isinstance(node, dict) and isinstance(node.get("Column"), str):
        name = node["Column"]
        try:
            schema.find_field(name)
        except ValueError:
            return None
        return str(name)
    return None


def _literal(node: Any) -> tuple[bool, Any]:
    """(whether ``node`` is a literal, its Python value), evaluated by polars itself."""
    if not isinstance(node, dict) or "Literal" not in node:
        return False, None
    import polars as pl

    try:
        expr = pl.Expr.deserialize(io.StringIO(json.dumps(node)), format="json")
        series = pl.select(expr).to_series()
    except Exception:
        return False, None
    if len(series) != 1:
        return False, None
    value = series[0]
    if isinstance(value, pl.Series):
        value = value.to_list()
    return True, value


def _fits(value: Any, field_type: Any) -> bool:
    """Whether pyiceberg binds ``value`` to the column type without changing it (no rounding, no parsing)."""
    import datetime as dt
    import math

    from pyiceberg.types import BooleanType, DateType, DoubleType, IntegerType, LongType, StringType

    if isinstance(value, bool):
        return isinstance(field_type, BooleanType)
    if isinstance(value, int):
        return isinstance(field_type, (IntegerType, LongType, DoubleType))
    if isinstance(value, float):
        return isinstance(field_type, DoubleType) and not math.isnan(value)
    if isinstance(value, str):
        return isinstance(field_type, StringType)
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return isinstance(field_type, DateType)
    return False


def _comparison(op: str, left: Any, right: Any, schema: Schema) -> tuple[BooleanExpression, bool]:
    ex = _expressions()

    column, (is_literal, value), swapped = _column(left, schema), _literal(right), False
    if column is None:
        column, (is_literal, value), swapped = _column(right, schema), _literal(left), True
    if column is None or not is_literal or value is None:
        return ex.AlwaysTrue(), False
    field_type = schema.find_field(column).field_type
    if not _fits(value, field_type):
        return ex.AlwaysTrue(), False
    name = _COMPARISONS[op][1 if swapped else 0]
    if hasattr(value, "isoformat"):
        value = value.isoformat()
    predicate = getattr(ex, name)(column, value)
    from pyiceberg.types import DoubleType, FloatType

    if isinstance(field_type, (FloatType, DoubleType)) and name in _NAN_MATCHES:
        return ex.Or(predicate, ex.IsNaN(column)), True
    return predicate, True


def _is_in(column_node: Any, values_node: Any, nulls_equal: bool, schema: Schema) -> tuple[BooleanExpression, bool]:
    ex = _expressions()

    column = _column(column_node, schema)
    is_literal, values = _literal(values_node)
    if column is None or not is_literal or not isinstance(values, list):
        return ex.AlwaysTrue(), False
    field_type = schema.find_field(column).field_type
    present = [v for v in values if v is not None]
    if not all(_fits(v, field_type) for v in present):
        return ex.AlwaysTrue(), False
    present = [v.isoformat() if hasattr(v, "isoformat") else v for v in present]
    predicate = ex.In(column, present) if present else ex.AlwaysFalse()
    if nulls_equal and len(present) < len(values):
        predicate = ex.Or(predicate, ex.IsNull(column))
    return predicate, True


def polars_schema(arrow_schema: pa.Schema) -> pl.Schema:
    import polars as pl

    frame = pl.from_arrow(arrow_schema.empty_table())
    assert isinstance(frame, pl.DataFrame)
    return frame.schema


def scan_polars(
    table: Table,
    shard: Any = None,
    *,
    snapshot_id: int | None = None,
    as_of: Any = None,
    batch_rows: int,
    prefetch: int,
) -> pl.LazyFrame:
    """See ``Table.scan_polars``."""
    from airflow_provider_mlp.extras import require

    polars = require("polars", feature="Table.scan_polars()")
    from polars.io.plugins import register_io_source

    from airflow_provider_mlp.fastdata.reader import iter_batches

    schema_id = None
    if shard is None:
        # Fixed now: every collect of the frame reads the same snapshot, with the same schema.
        schema_id = table._schema_id(snapshot_id, as_of)
        snapshot_id = table._resolve_snapshot(snapshot_id, as_of)
        as_of = None
    # The plan for every column checks the shard, snapshot and table now rather than at collect time.
    plan, _ = table._read_plan(shard, None, None, snapshot_id, as_of, (), schema_id=schema_id)
    table_schema = plan.projected_schema
    schema = polars_schema(plan.arrow_schema())
    names = list(schema.names())

    def source(
        with_columns: list[str] | None, predicate: pl.Expr | None, n_rows: int | None, batch_size: int | None
    ) -> Iterator[pl.DataFrame]:
        wanted = list(with_columns) if with_columns is not None else names
        needed = set(wanted)
        if predicate is not None:
            needed |= set(predicate.meta.root_names())
        columns: Sequence[str] = [name for name in names if name in needed] or names[:1]
        row_filter = predicate_to_iceberg(predicate, table_schema)
        remaining = n_rows
        if remaining is not None and remaining <= 0:
            return
        # Strings as views, which is what polars holds: its decoder's output reaches the frame uncopied.
        read_plan, parts = table._read_plan(
            shard, columns, row_filter, snapshot_id, as_of, (), schema_id=schema_id, string_view=True
        )
        for batch in iter_batches(read_plan, parts, batch_size or batch_rows, prefetch=prefetch):
            frame = polars.from_arrow(batch, rechunk=False)
            if predicate is not None:
                frame = frame.filter(predicate)
            frame = frame.select(wanted)
            if remaining is not None:
                frame = frame.head(remaining)
                remaining -= frame.height
            if frame.height:
                yield frame
            if remaining is not None and remaining <= 0:
                return

    return register_io_source(
        source,
        schema=schema,
        explain_name="airflow_provider_mlp.fastdata",
        explain_detail=f"table {table.identifier}"
        + (f" shard {shard.get('shard_id')}" if isinstance(shard, dict) else ""),
    )
