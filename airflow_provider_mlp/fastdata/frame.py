"""A thin DataFrame over an Arrow table: convert to Arrow, pandas or polars without extra copies."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl
    import pyarrow as pa


class DataFrame:
    """What ``Table.read`` returns. Arrow is the storage; the conversions share its buffers where they can."""

    __slots__ = ("_table",)

    def __init__(self, table: pa.Table) -> None:
        self._table = table

    def to_arrow(self) -> pa.Table:
        return self._table

    def to_pandas(self, *, arrow_dtypes: bool = False, **kwargs: Any) -> pd.DataFrame:
        """NumPy-backed by default; ``arrow_dtypes=True`` keeps every column in Arrow memory (no copy, but
        for the strings of a ``string_view=True`` read, which become large strings first)."""
        if arrow_dtypes:
            import pandas as pd

            kwargs.setdefault("types_mapper", pd.ArrowDtype)
        from airflow_provider_mlp.fastdata.reader import large_type, view_type

        table = self._table
        if any(large_type(f.type) != f.type and view_type(f.type) == f.type for f in table.schema):
            # A string_view read: pyarrow converts no list of views to NumPy-backed pandas, and Arrow
            # 26 has no compute kernels (filter, sort, compare) for views, which pandas users call.
            import pyarrow as pa

            table = table.cast(pa.schema([f.with_type(large_type(f.type)) for f in table.schema]))
        return table.to_pandas(**kwargs)

    def to_polars(self) -> pl.DataFrame:
        from airflow_provider_mlp.extras import require

        pl = require("polars", feature="DataFrame.to_polars()")

        frame = pl.from_arrow(self._table, rechunk=False)
        assert isinstance(frame, pl.DataFrame)
        return frame

    @property
    def schema(self) -> pa.Schema:
        return self._table.schema

    @property
    def num_rows(self) -> int:
        return self._table.num_rows

    @property
    def columns(self) -> list[str]:
        return list(self._table.column_names)

    def __len__(self) -> int:
        return self._table.num_rows

    def __repr__(self) -> str:
        return f"DataFrame({self._table.num_rows} rows: {', '.join(self._table.column_names)})"
