"""``partition_by`` for ``Table.create``: column names and transform text turned into a PartitionSpec.

Accepted forms, as Iceberg's Spark DDL writes them: ``"region"`` (identity), ``"day(ts)"`` (also
``days``, ``year(s)``, ``month(s)``, ``hour(s)``), ``"bucket(16, id)"``, ``"truncate(4, name)"``,
``"identity(region)"`` and ``"void(region)"`` (``truncate(name, 4)``, the older order, is read too);
or a ready-made pyiceberg ``PartitionSpec`` over the schema's field ids.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_mlp.fastdata.errors import ColumnNotFoundError, PartitionSpecError

if TYPE_CHECKING:
    from pyiceberg.partitioning import PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.transforms import Transform

# Field ids of partition fields start here in every Iceberg implementation.
_FIRST_PARTITION_FIELD_ID = 1000
_CALL = re.compile(r"^\s*([A-Za-z_]\w*)\s*\((.*)\)\s*$", re.DOTALL)
_WIDTH_TRANSFORMS = ("bucket", "truncate")
_PLAIN_TRANSFORMS = {
    "identity": "identity",
    "void": "void",
    "year": "year",
    "years": "year",
    "month": "month",
    "months": "month",
    "day": "day",
    "days": "day",
    "date": "day",
    "hour": "hour",
    "hours": "hour",
    "date_hour": "hour",
}
_FORMS = "'column', 'day(ts)', 'bucket(16, id)' or 'truncate(4, name)'"


def _transform(name: str, width: int | None) -> Transform[Any, Any]:
    from pyiceberg.transforms import (
        BucketTransform,
        DayTransform,
        HourTransform,
        IdentityTransform,
        MonthTransform,
        TruncateTransform,
        VoidTransform,
        YearTransform,
    )

    if name == "bucket":
        return BucketTransform(num_buckets=width)  # type: ignore[arg-type]
    if name == "truncate":
        return TruncateTransform(width=width)  # type: ignore[arg-type]
    plain: dict[str, Any] = {
        "identity": IdentityTransform,
        "void": VoidTransform,
        "year": YearTransform,
        "month": MonthTransform,
        "day": DayTransform,
        "hour": HourTransform,
    }
    transform: Transform[Any, Any] = plain[name]()
    return transform


def parse_partition_term(term: str, table: str) -> tuple[str, str, int | None]:
    """``(column, transform name, width)`` of one ``partition_by`` entry, or a PartitionSpecError."""
    if not isinstance(term, str) or not term.strip():
        raise PartitionSpecError(f"partition_by entries of table {table!r} must be text such as {_FORMS}, got {term!r}")
    match = _CALL.match(term)
    if match is None:
        if "(" in term or ")" in term or "," in term:
            raise PartitionSpecError(f"partition_by entry {term!r} of table {table!r} is not of the form {_FORMS}")
        return term.strip(), "identity", None
    name, args = match.group(1).lower(), [a.strip() for a in match.group(2).split(",")]
    known = sorted({*_PLAIN_TRANSFORMS, *_WIDTH_TRANSFORMS})
    if name in _WIDTH_TRANSFORMS:
        if len(args) != 2 or not all(args):
            raise PartitionSpecError(
                f"partition_by entry {term!r} of table {table!r}: {name} takes a width and a column, "
                f"e.g. '{name}({16 if name == 'bucket' else 4}, column)'"
            )
        width_text, column = args
        if not width_text.isdigit() and column.isdigit():  # 'truncate(name, 4)', Iceberg's other order
            width_text, column = column, width_text
        if not width_text.isdigit() or int(width_text) <= 0:
            raise PartitionSpecError(
                f"partition_by entry {term!r} of table {table!r}: the {name} width must be a positive integer, "
                f"got {width_text!r}"
            )
        return column, name, int(width_text)
    if name not in _PLAIN_TRANSFORMS:
        raise PartitionSpecError(
            f"partition_by entry {term!r} of table {table!r}: unknown transform {name!r} "
            f"(transforms: {', '.join(known)})"
        )
    if len(args) != 1 or not args[0]:
        raise PartitionSpecError(
            f"partition_by entry {term!r} of table {table!r}: {name} takes one column, e.g. '{name}(column)'"
        )
    return args[0], _PLAIN_TRANSFORMS[name], None


def partition_spec(schema: Schema, partition_by: Any, table: str) -> PartitionSpec:
    """The PartitionSpec ``partition_by`` describes over ``schema`` (which must carry field ids)."""
    from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC, PartitionField, PartitionSpec

    if partition_by is None:
        return UNPARTITIONED_PARTITION_SPEC
    if isinstance(partition_by, PartitionSpec):
        for part in partition_by.fields:
            if schema.find_column_name(part.source_id) is None:
                raise PartitionSpecError(
                    f"partition field {part.name!r} of table {table!r} has source id {part.source_id}, which is "
                    f"no column of the schema (ids: {', '.join(f'{f.name}={f.field_id}' for f in schema.fields)})"
                )
        return partition_by
    if isinstance(partition_by, str) or not isinstance(partition_by, Sequence):
        raise PartitionSpecError(
            f"partition_by of table {table!r} must be a list such as ['region', 'day(ts)'] or a PartitionSpec, "
            f"got {partition_by!r}"
        )
    fields: list[PartitionField] = []
    seen: dict[tuple[int, str], str] = {}
    for term in partition_by:
        column, name, width = parse_partition_term(term, table)
        try:
            source = schema.find_field(column, case_sensitive=True)
        except ValueError:
            columns = ", ".join(schema.column_names)
            raise ColumnNotFoundError(
                f"partition_by entry {term!r}: column {column!r} is not in the schema of table {table!r} "
                f"(columns: {columns})"
            ) from None
        transform = _transform(name, width)
        if not transform.can_transform(source.field_type):
            raise PartitionSpecError(
                f"partition_by entry {term!r} of table {table!r}: {name} cannot partition column {column!r} of "
                f"type {source.field_type} ({_applies_to(name)})"
            )
        key = (source.field_id, str(transform))
        if key in seen:
            raise PartitionSpecError(f"partition_by of table {table!r} repeats {seen[key]!r} as {term!r}")
        seen[key] = term
        fields.append(
            PartitionField(
                source_id=source.field_id,
                field_id=_FIRST_PARTITION_FIELD_ID + len(fields),
                transform=transform,
                name=_field_name(column, name, width),
            )
        )
    return PartitionSpec(*fields)


def _applies_to(name: str) -> str:
    return {
        "year": "year, month and day apply to date and timestamp columns",
        "month": "year, month and day apply to date and timestamp columns",
        "day": "year, month and day apply to date and timestamp columns",
        "hour": "hour applies to timestamp columns",
        "truncate": "truncate applies to int, long, decimal, string and binary columns",
        "bucket": "bucket applies to int, long, decimal, date, time, timestamp, string, uuid, fixed and binary columns",
    }.get(name, "not a primitive column")


def _field_name(column: str, name: str, width: int | None) -> str:
    # The names pyiceberg's own spec builder gives (``ts_day``, ``id_bucket_16``, ``name_trunc_4``).
    if name == "identity":
        return column
    if name == "bucket":
        return f"{column}_bucket_{width}"
    if name == "truncate":
        return f"{column}_trunc_{width}"
    if name == "void":
        return f"{column}_null"
    return f"{column}_{name}"
