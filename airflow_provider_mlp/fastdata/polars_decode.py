"""Row groups decoded by polars' native Parquet reader, handed to Arrow through the C data interface.

polars decodes Parquet in about half the CPU time Arrow's reader takes (strings into views, and the
filter applied while decoding, so that rows it rules out are never materialised). When polars is
installed, the reader asks it for a file's projected columns over a run of row groups, with the
residual filter and positional deletes as polars predicates; the result comes back as Arrow
(``to_arrow`` at the oldest compat level: large string, binary and list types, which the projected
schema asks for; at the newest, polars' own string views, when the read asks for ``string_view``)
and goes through the same Iceberg projection and schema conformance as Arrow's decode. Whatever
polars is not trusted with here (dictionary columns, maps, decimals, fixed-size binary, INT96,
time, remote files) and any error polars raises fall back to Arrow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa
    from pyiceberg.expressions import BooleanExpression
    from pyiceberg.schema import Schema

    from airflow_provider_mlp.fastdata.reader import OpenFile

POLARS = "polars"
PYARROW = "pyarrow"
DECODERS = (POLARS, PYARROW)
ROW_POSITION = "__fastdata_row_position__"


@lru_cache(maxsize=1)
def polars_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("polars") is not None


def resolve_decoder(decoder: str) -> str:
    """``polars`` or ``pyarrow``: ``auto`` is polars when it is installed."""
    if decoder == "auto":
        return POLARS if polars_installed() else PYARROW
    if decoder not in DECODERS:
        from airflow_provider_mlp.errors import ConfigurationError

        raise ConfigurationError(f"decoder must be 'auto', 'polars' or 'pyarrow', got {decoder!r}")
    if decoder == POLARS and not polars_installed():
        from airflow_provider_mlp.errors import MissingExtraError

        raise MissingExtraError("Fast Data's polars decoder", "polars", "polars")
    return decoder


def _supported_type(arrow_type: pa.DataType) -> bool:
    """Arrow types whose polars decode round-trips to exactly what Arrow's decode would give, up to the
    string/binary/list offset width that ``conform`` settles anyway."""
    import pyarrow as pa

    t = pa.types
    if t.is_struct(arrow_type):
        return arrow_type.num_fields > 0 and all(_supported_type(f.type) for f in arrow_type)
    if t.is_list(arrow_type) or t.is_large_list(arrow_type):
        return _supported_type(arrow_type.value_type)
    if t.is_timestamp(arrow_type):
        return arrow_type.unit in ("ms", "us", "ns")
    return bool(
        t.is_boolean(arrow_type)
        or (t.is_integer(arrow_type) and t.is_signed_integer(arrow_type))
        or t.is_float32(arrow_type)
        or t.is_float64(arrow_type)
        or t.is_string(arrow_type)
        or t.is_large_string(arrow_type)
        or t.is_binary(arrow_type)
        or t.is_large_binary(arrow_type)
        or t.is_date32(arrow_type)
    )


def polars_can_decode(
    parquet: Any, physical_schema: pa.Schema, columns: Sequence[str], leaves: dict[str, list[int]]
) -> bool:
    """Whether every one of ``columns`` has a type polars decodes the same as Arrow (see ``_supported_type``)."""
    for name in columns:
        index = physical_schema.get_field_index(name)
        if index < 0 or not _supported_type(physical_schema.field(index).type):
            return False
        for leaf in leaves.get(name, ()):
            # INT96 timestamps and fixed-length byte arrays (decimals, UUIDs, fixed) stay with Arrow.
            if parquet.schema.column(leaf).physical_type in ("INT96", "FIXED_LEN_BYTE_ARRAY"):
                return False
    return True


class _Untranslatable(Exception):
    """A filter term without an exact polars equivalent: Arrow evaluates the filter instead."""


def filter_to_polars(bound_file_filter: BooleanExpression, file_schema: Schema) -> pl.Expr | None:
    """The polars expression keeping exactly the rows pyiceberg's Arrow filter keeps, or None.

    pyiceberg's Arrow expressions (``expression_to_pyarrow``) are the reference; polars differs in two
    places handled here: NaN orders above every number (Arrow's comparisons are false for NaN), and
    ``is_in`` of a null is null (Arrow's is false, so ``not in`` keeps nulls).
    """
    from pyiceberg.expressions.visitors import visit

    try:
        return visit(bound_file_filter, _to_polars_class()(file_schema))
    except _Untranslatable:
        return None


@lru_cache(maxsize=1)
def _to_polars_class() -> type:
    """The visitor class, made on first use: pyiceberg is imported only when a filter is translated."""
    from pyiceberg.expressions.visitors import BoundBooleanExpressionVisitor

    class ToPolars(_ToPolarsMethods, BoundBooleanExpressionVisitor):
        pass

    return ToPolars


class _ToPolarsMethods:
    def __init__(self, file_schema: Schema) -> None:
        self.file_schema = file_schema

    def _column(self, term: Any) -> tuple[pl.Expr, Any]:
        import polars as pl

        field = term.ref().field
        name = self.file_schema.find_column_name(field.field_id)
        # Top-level columns only: a nested path would need the parent's type to be walked.
        if name is None or "." in name or name not in self.file_schema.column_names:
            raise _Untranslatable(name)
        return pl.col(name), field.field_type

    def _literal(self, value: Any, field_type: Any) -> Any:
        from pyiceberg.types import BooleanType, DateType, DoubleType, FloatType, IntegerType, LongType, StringType

        if isinstance(field_type, (IntegerType, LongType)) and isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(field_type, (FloatType, DoubleType)) and isinstance(value, (int, float)):
            if math.isnan(value):
                raise _Untranslatable(value)
            return float(value)
        if isinstance(field_type, StringType) and isinstance(value, str):
            return value
        if isinstance(field_type, BooleanType) and isinstance(value, bool):
            return value
        if isinstance(field_type, DateType) and isinstance(value, int):
            return date(1970, 1, 1) + timedelta(days=value)
        raise _Untranslatable(field_type)

    def _compare(self, term: Any, literal: Any, op: str) -> pl.Expr:
        import polars as pl
        from pyiceberg.types import DoubleType, FloatType

        column, field_type = self._column(term)
        value = pl.lit(self._literal(literal.value, field_type))
        result = getattr(column, op)(value)
        if isinstance(field_type, (FloatType, DoubleType)) and op in ("__gt__", "__ge__"):
            # polars orders NaN above every number; Arrow's ``>`` is false for NaN.
            result = result & column.is_not_nan()
        return result

    def _is_in(self, term: Any, literals: set[Any]) -> pl.Expr:
        import polars as pl
        from pyiceberg.types import DoubleType, FloatType

        column, field_type = self._column(term)
        if isinstance(field_type, (FloatType, DoubleType)):
            raise _Untranslatable("float is_in")  # signed zeros and NaN hash differently in the two
        values = [self._literal(v, field_type) for v in literals]
        # Arrow's is_in of a null is false (so ``not in`` keeps nulls); polars' is null.
        return column.is_in(pl.Series(values).implode()).fill_null(False)

    def visit_in(self, term: Any, literals: set[Any]) -> pl.Expr:
        return self._is_in(term, literals)

    def visit_not_in(self, term: Any, literals: set[Any]) -> pl.Expr:
        return ~self._is_in(term, literals)

    def visit_is_nan(self, term: Any) -> pl.Expr:
        column, field_type = self._float_column(term)
        return column.is_nan()

    def visit_not_nan(self, term: Any) -> pl.Expr:
        column, field_type = self._float_column(term)
        return ~column.is_nan()

    def _float_column(self, term: Any) -> tuple[pl.Expr, Any]:
        from pyiceberg.types import DoubleType, FloatType

        column, field_type = self._column(term)
        if not isinstance(field_type, (FloatType, DoubleType)):
            raise _Untranslatable(field_type)
        return column, field_type

    def visit_is_null(self, term: Any) -> pl.Expr:
        return self._column(term)[0].is_null()

    def visit_not_null(self, term: Any) -> pl.Expr:
        return self._column(term)[0].is_not_null()

    def visit_equal(self, term: Any, literal: Any) -> pl.Expr:
        return self._compare(term, literal, "__eq__")

    def visit_not_equal(self, term: Any, literal: Any) -> pl.Expr:
        return self._compare(term, literal, "__ne__")

    def visit_greater_than_or_equal(self, term: Any, literal: Any) -> pl.Expr:
        return self._compare(term, literal, "__ge__")

    def visit_greater_than(self, term: Any, literal: Any) -> pl.Expr:
        return self._compare(term, literal, "__gt__")

    def visit_less_than(self, term: Any, literal: Any) -> pl.Expr:
        return self._compare(term, literal, "__lt__")

    def visit_less_than_or_equal(self, term: Any, literal: Any) -> pl.Expr:
        return self._compare(term, literal, "__le__")

    def visit_starts_with(self, term: Any, literal: Any) -> pl.Expr:
        column, field_type = self._column(term)
        return column.str.starts_with(self._string(literal.value, field_type))

    def visit_not_starts_with(self, term: Any, literal: Any) -> pl.Expr:
        column, field_type = self._column(term)
        return ~column.str.starts_with(self._string(literal.value, field_type))

    def _string(self, value: Any, field_type: Any) -> str:
        from pyiceberg.types import StringType

        if not isinstance(field_type, StringType) or not isinstance(value, str):
            raise _Untranslatable(field_type)
        return value

    def visit_true(self) -> pl.Expr:
        import polars as pl

        return pl.lit(True)

    def visit_false(self) -> pl.Expr:
        import polars as pl

        return pl.lit(False)

    def visit_not(self, child_result: pl.Expr) -> pl.Expr:
        return ~child_result

    def visit_and(self, left_result: pl.Expr, right_result: pl.Expr) -> pl.Expr:
        return left_result & right_result

    def visit_or(self, left_result: pl.Expr, right_result: pl.Expr) -> pl.Expr:
        return left_result | right_result


class PolarsDecodeError(Exception):
    """polars could not decode a run of row groups: the caller decodes it with Arrow instead."""


def read_rows(opened: OpenFile, first: int, last: int, columns: Sequence[str] | None = None) -> pa.Table:
    """Row groups ``first``..``last`` (consecutive) of the file, deletes and filter applied, in file column
    names: ``columns`` of them (all the file's projected ones by default)."""
    import numpy as np
    import polars as pl

    assert opened.polars_source is not None
    start, end = opened.row_offsets[first], opened.row_offsets[last + 1]
    deleted = None
    if opened.deletes is not None and len(opened.deletes):
        lo, hi = np.searchsorted(opened.deletes, [start, end])
        if hi > lo:
            deleted = opened.deletes[lo:hi]
    try:
        frame = pl.scan_parquet(
            opened.polars_source,
            row_index_name=ROW_POSITION if deleted is not None else None,
            hive_partitioning=False,
            glob=False,
        )
        if start or end != opened.row_offsets[-1]:
            frame = frame.slice(start, end - start)
        predicate = opened.polars_filter
        if deleted is not None:
            kept = ~pl.col(ROW_POSITION).is_in(pl.Series(deleted, dtype=pl.get_index_type()).implode())
            predicate = kept if predicate is None else kept & predicate
        selected = list(opened.columns if columns is None else columns)
        frame = frame.select(selected + ([ROW_POSITION] if deleted is not None else []))
        if predicate is not None:
            frame = frame.filter(predicate)
        if deleted is not None:
            frame = frame.drop(ROW_POSITION)
        # A read that asks for views gets polars' own string views, uncopied; else the large types.
        # Not when Arrow must still filter the rows: Arrow 26 filters no table with a view column.
        arrow_filters = opened.pyarrow_filter is not None and opened.polars_filter is None
        level = pl.CompatLevel.newest() if opened.string_view and not arrow_filters else pl.CompatLevel.oldest()
        table = frame.collect().to_arrow(compat_level=level)
        if arrow_filters and table.num_rows:
            table = table.filter(opened.pyarrow_filter)
    except Exception as exc:  # anything polars refuses (or Arrow refuses of its output) is decoded by Arrow instead
        raise PolarsDecodeError(str(exc)) from exc
    return table
