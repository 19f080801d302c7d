"""The reader: Parquet column chunks fetched in parallel into memory, decoded by Arrow, polars (local
files) and the native kernel (flat columns; see polars_decode and native_decode), with
Iceberg's read semantics applied through pyiceberg's own projection helpers, so that results equal
``scan().to_arrow()``: field-id projection, renames, added columns, type promotion, identity
partition values missing from files, positional deletes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_mlp.fastdata.defaults import DEFAULT_DECODER, DEFAULT_IO_CONCURRENCY
from airflow_provider_mlp.fastdata.errors import DataFileError
from airflow_provider_mlp.fastdata.fetch import (
    WHOLE_FILE_MAX,
    RemoteFile,
    RowGroupSource,
    WholeFileBuffers,
    chunk_span,
    data_memory_pool,
)
from airflow_provider_mlp.fastdata.polars_decode import POLARS, resolve_decoder

if TYPE_CHECKING:
    import numpy as np
    import polars as pl
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from pyiceberg.expressions import BooleanExpression
    from pyiceberg.schema import Schema
    from pyiceberg.table import FileScanTask
    from pyiceberg.table.metadata import TableMetadata

    from airflow_provider_mlp.fastdata.native_decode import NativeColumn

ROW_INDEX = "__fastdata_row_index__"


@dataclass
class ReadPlan:
    """What every file of one scan shares: schemas, the bound filter, I/O settings."""

    table_name: str
    metadata: TableMetadata
    io: Any
    io_properties: dict[str, str]
    projected_schema: Schema
    bound_row_filter: BooleanExpression
    projected_field_ids: set[int]
    downcast_ns_timestamp_to_us: bool | None
    dictionary_columns: tuple[str, ...] = ()
    io_concurrency: int = DEFAULT_IO_CONCURRENCY
    # Threads decoding row groups, each also column-parallel inside Arrow: two per core keeps cores
    # busy while another thread waits on I/O or the GIL.
    decode_workers: int = field(default_factory=lambda: max(4, 2 * (os.cpu_count() or 2)))
    # Who decodes Parquet: "polars" (when installed) or "pyarrow"; see polars_decode.
    decoder: str = DEFAULT_DECODER
    # Strings and binaries as Arrow's view types instead of pyiceberg's large types (see output_schema).
    string_view: bool = False
    _arrow_schema: pa.Schema | None = field(default=None, repr=False, compare=False)
    # What open_file derives from a Parquet schema (and, for the filter, from the partition values a
    # file lacks), per distinct one: the files of a table are mostly written alike, and deriving it
    # through pyiceberg's schema visitors costs milliseconds a file, with the GIL held.
    _layouts: dict[tuple[Any, ...], FileLayout] = field(default_factory=dict, repr=False, compare=False)
    _file_filters: dict[tuple[Any, ...], FileFilter] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def create(
        cls,
        table_name: str,
        metadata: TableMetadata,
        io: Any,
        projected_schema: Schema,
        row_filter: BooleanExpression,
        dictionary_columns: Sequence[str] = (),
        io_concurrency: int = DEFAULT_IO_CONCURRENCY,
        decoder: str = DEFAULT_DECODER,
        string_view: bool = False,
    ) -> ReadPlan:
        from pyiceberg.io.pyarrow import ArrowScan

        from airflow_provider_mlp.fastdata.fetch import properties_of

        # ArrowScan is pyiceberg's own reader: taking its bound filter, projected field ids and
        # timestamp setting makes ours resolve exactly the columns pyiceberg's would.
        arrow_scan = ArrowScan(metadata, io, projected_schema, row_filter, True)
        return cls(
            table_name=table_name,
            metadata=metadata,
            io=io,
            io_properties=properties_of(io),
            projected_schema=projected_schema,
            bound_row_filter=arrow_scan._bound_row_filter,
            projected_field_ids=arrow_scan._projected_field_ids,
            downcast_ns_timestamp_to_us=arrow_scan._downcast_ns_timestamp_to_us,
            dictionary_columns=tuple(dictionary_columns),
            io_concurrency=io_concurrency,
            decoder=resolve_decoder(decoder),
            string_view=string_view,
        )

    def arrow_schema(self) -> pa.Schema:
        """The schema of every batch this plan reads, derived from the projection alone.

        pyiceberg's ``schema_to_pyarrow`` of the projection (large string, binary and list types),
        as its scan returns for columns missing from files and for empty results; the
        ``dictionary_columns`` as dictionaries of those types. With ``string_view``, every string and
        binary (nested ones too, dictionary columns' values not) is ``string_view`` / ``binary_view``
        instead. The files a shard holds, and the types their Parquet footers record, never change it.
        """
        if self._arrow_schema is None:
            self._arrow_schema = output_schema(self.projected_schema, self.dictionary_columns, self.string_view)
        return self._arrow_schema


def output_schema(
    projected_schema: Schema, dictionary_columns: Sequence[str] = (), string_view: bool = False
) -> pa.Schema:
    """The Arrow schema of a read of ``projected_schema`` (see ``ReadPlan.arrow_schema``)."""
    import pyarrow as pa
    from pyiceberg.io.pyarrow import schema_to_pyarrow

    schema = schema_to_pyarrow(projected_schema, include_field_ids=False)
    if string_view:
        schema = pa.schema(
            [f if f.name in dictionary_columns else f.with_type(view_type(f.type)) for f in schema],
            metadata=schema.metadata,
        )
    for name in dictionary_columns:
        index = schema.get_field_index(name)
        if index >= 0:
            column = schema.field(index)
            schema = schema.set(index, column.with_type(pa.dictionary(pa.int32(), column.type)))
    return schema


def view_type(arrow_type: pa.DataType) -> pa.DataType:
    """``arrow_type`` with every string and binary in it as Arrow's view type (what polars holds)."""
    import pyarrow as pa

    return _strings_as(arrow_type, pa.string_view(), pa.binary_view())


def large_type(arrow_type: pa.DataType) -> pa.DataType:
    """``arrow_type`` with every string and binary in it as the large type (pyiceberg's)."""
    import pyarrow as pa

    return _strings_as(arrow_type, pa.large_string(), pa.large_binary())


def _strings_as(arrow_type: pa.DataType, string: pa.DataType, binary: pa.DataType) -> pa.DataType:
    # The nested types pyiceberg's schema_to_pyarrow makes (no fixed-size or view lists).
    import pyarrow as pa

    t = pa.types
    if t.is_string(arrow_type) or t.is_large_string(arrow_type) or t.is_string_view(arrow_type):
        return string
    if t.is_binary(arrow_type) or t.is_large_binary(arrow_type) or t.is_binary_view(arrow_type):
        return binary
    if t.is_large_list(arrow_type) or t.is_list(arrow_type):
        item = arrow_type.value_field
        make = pa.large_list if t.is_large_list(arrow_type) else pa.list_
        return make(item.with_type(_strings_as(item.type, string, binary)))
    if t.is_map(arrow_type):
        return pa.map_(
            arrow_type.key_field.with_type(_strings_as(arrow_type.key_type, string, binary)),
            arrow_type.item_field.with_type(_strings_as(arrow_type.item_type, string, binary)),
        )
    if t.is_struct(arrow_type):
        return pa.struct([f.with_type(_strings_as(f.type, string, binary)) for f in arrow_type])
    return arrow_type


def conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` with exactly ``schema``: columns whose file-dependent type differs (``string`` where the
    projection says ``large_string``, ``list`` for ``large_list``, a dictionary's value type) are cast.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if batch.schema.equals(schema, check_metadata=True):
        return batch
    columns = []
    for target, column in zip(schema, batch.columns, strict=True):
        if column.type != target.type:
            column = pc.cast(column, target.type, memory_pool=data_memory_pool())
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, schema=schema)


@dataclass
class OpenFile:
    """One data file after its footer was read: which columns to decode and how to project them."""

    task: FileScanTask
    remote: RemoteFile
    parquet: pq.FileMetaData
    file_project_schema: Schema
    columns: list[str]
    filter_columns: list[str]
    pyarrow_filter: pc.Expression | None
    projected_missing_fields: dict[int, Any]
    dictionary_columns: list[str]
    leaves: dict[str, list[int]]
    row_offsets: list[int]
    downcast_ns_timestamp_to_us: bool
    projected_schema: Schema
    output_schema: pa.Schema
    deletes: np.ndarray | None = None
    # Whether output_schema has view types for strings and binaries (ReadPlan.string_view).
    string_view: bool = False
    # The local path polars decodes this file from (see polars_decode), or None for Arrow's decode;
    # the filter as polars evaluates it, or None when Arrow's ``pyarrow_filter`` is applied instead.
    polars_source: str | None = None
    polars_filter: pl.Expr | None = None
    # Whether pyiceberg's projection of this file's batches only renames (FileLayout.renames_only).
    renames_only: bool = False
    # The columns the native kernel decodes where a run is read without filter or deletes
    # (FileLayout.native_columns but dictionary columns, which Arrow decodes as dictionaries).
    native_columns: dict[str, NativeColumn] = field(default_factory=dict)
    # Row groups still to be decoded: the file's bytes fetched whole are dropped after the last.
    pending_row_groups: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def row_group_done(self) -> None:
        with self.lock:
            self.pending_row_groups -= 1
            if self.pending_row_groups <= 0:
                self.remote.release_whole()

    def ranges(self, row_group: int, columns: Sequence[str]) -> list[tuple[int, int]]:
        rg = self.parquet.row_group(row_group)
        spans = []
        for name in columns:
            for leaf in self.leaves.get(name, ()):
                spans.append(chunk_span(rg.column(leaf)))
        return spans


def check_file_formats(table_name: str, tasks: Sequence[FileScanTask]) -> None:
    # Equality deletes never get this far: pyiceberg's planner refuses them, and Table._tasks turns
    # that into UnsupportedDeletesError.
    from pyiceberg.manifest import FileFormat

    for task in tasks:
        if task.file.file_format != FileFormat.PARQUET:
            raise DataFileError(
                f"data file {task.file.file_path} of table {table_name!r} is {task.file.file_format}; "
                "only Parquet data files are supported"
            )


def read_positional_deletes(plan: ReadPlan, tasks: Sequence[FileScanTask], pool: ThreadPoolExecutor) -> dict[str, Any]:
    """Positions deleted per data file path, as sorted unique int64 arrays."""
    import numpy as np
    from pyiceberg.io.pyarrow import _read_deletes

    delete_files = {d.file_path: d for task in tasks for d in task.delete_files}
    if not delete_files:
        return {}
    wanted = {task.file.file_path for task in tasks}

    def load(delete_file: Any) -> dict[str, pa.ChunkedArray]:
        try:
            return _read_deletes(plan.io, delete_file)
        except FileNotFoundError:
            raise DataFileError(
                f"delete file {delete_file.file_path} of table {plan.table_name!r} is missing"
            ) from None

    collected: dict[str, list[Any]] = {}
    for per_file in pool.map(load, [delete_files[k] for k in sorted(delete_files)]):
        for path, positions in per_file.items():
            if path in wanted:
                collected.setdefault(path, []).append(positions.to_numpy())
    return {path: np.unique(np.concatenate(arrays)) for path, arrays in collected.items()}


@dataclass(frozen=True)
class FileLayout:
    """What a file's Parquet schema alone decides about reading it under one plan."""

    key: tuple[Any, ...]
    file_schema: Schema
    file_project_schema: Schema
    # The file's names of the projected columns, in file order.
    columns: list[str]
    leaves: dict[str, list[int]]
    # Whether pyiceberg's projection of a batch of these columns (``_to_requested_schema``) only
    # renames: every projected field is a plain primitive the file holds at the projection's position
    # with the projection's type. ``conform`` then gives the same batch in fewer steps.
    renames_only: bool
    # Whether polars decodes every one of ``columns`` exactly as Arrow would (see polars_can_decode).
    polars_decodable: bool
    # Those of ``columns`` the native kernel decodes (see native_decode), with the polars decoder.
    native_columns: dict[str, NativeColumn] = field(default_factory=dict)


@dataclass(frozen=True)
class FileFilter:
    """The plan's filter translated to the column names of files of one layout that lack the same
    partition values (None when there is no filter)."""

    pyarrow: pc.Expression | None
    columns: list[str]
    polars: pl.Expr | None


def _layout_key(parquet: pq.FileMetaData, physical_schema: pa.Schema, downcast: bool) -> tuple[Any, ...]:
    # The Parquet schema's text names physical and logical types and field ids, untruncated (its
    # first line is the object's address); the serialized Arrow schema adds, exactly, what a stored
    # ARROW:schema changes. Without the schema-level metadata: writers put per-file values there
    # (pandas its index's length), which nothing derived from the layout reads.
    return (
        str(parquet.schema).split("\n", 1)[-1],
        physical_schema.remove_metadata().serialize().to_pybytes(),
        downcast,
    )


def _renames_only(file_project_schema: Schema, projected_schema: Schema) -> bool:
    from pyiceberg.types import (
        BinaryType,
        BooleanType,
        DateType,
        DoubleType,
        FloatType,
        IntegerType,
        LongType,
        StringType,
    )

    # Primitives whose projection is the file's column itself when file and projection agree on it
    # (timestamps are left to pyiceberg: it also settles their units and zones).
    plain = (BooleanType, IntegerType, LongType, FloatType, DoubleType, StringType, BinaryType, DateType)
    file_fields = file_project_schema.fields
    projected_fields = projected_schema.fields
    # No columns: pyiceberg's projection has no rows either (an empty struct), conform would keep them.
    if not projected_fields or len(file_fields) != len(projected_fields):
        return False
    for file_field, projected in zip(file_fields, projected_fields, strict=True):
        if (
            file_field.field_id != projected.field_id
            or not isinstance(projected.field_type, plain)
            or file_field.field_type != projected.field_type
        ):
            return False
    return True


def _file_layout(plan: ReadPlan, parquet: pq.FileMetaData, physical_schema: pa.Schema, downcast: bool) -> FileLayout:
    from pyiceberg.io.pyarrow import pyarrow_to_schema
    from pyiceberg.schema import prune_columns

    key = _layout_key(parquet, physical_schema, downcast)
    layout = plan._layouts.get(key)
    if layout is not None:
        return layout
    metadata = plan.metadata
    # The same steps, with the same pyiceberg helpers, as pyiceberg's _task_to_record_batches.
    file_schema = pyarrow_to_schema(
        physical_schema,
        metadata.name_mapping(),
        downcast_ns_timestamp_to_us=downcast,
        format_version=metadata.format_version,
    )
    file_project_schema = prune_columns(file_schema, plan.projected_field_ids, select_full_types=False)
    columns = [col.name for col in file_project_schema.columns]
    leaves: dict[str, list[int]] = {}
    for index in range(parquet.num_columns):
        top = parquet.schema.column(index).path.split(".")[0]
        leaves.setdefault(top, []).append(index)
    polars_decodable = False
    if resolve_decoder(plan.decoder) == POLARS and columns:
        from airflow_provider_mlp.fastdata.polars_decode import polars_can_decode

        polars_decodable = polars_can_decode(parquet, physical_schema, columns, leaves)
    native: dict[str, NativeColumn] = {}
    if resolve_decoder(plan.decoder) == POLARS and not plan.string_view:
        from airflow_provider_mlp.fastdata.native_decode import native_columns

        native = native_columns(parquet, physical_schema, columns)
    layout = FileLayout(
        key=key,
        file_schema=file_schema,
        file_project_schema=file_project_schema,
        columns=columns,
        leaves=leaves,
        renames_only=_renames_only(file_project_schema, plan.projected_schema),
        polars_decodable=polars_decodable,
        native_columns=native,
    )
    # Threads opening files alike may each derive it once: the layouts are equal, the first stays.
    return plan._layouts.setdefault(key, layout)


def _file_filter(
    plan: ReadPlan, layout: FileLayout, projected_missing_fields: dict[int, Any], with_polars: bool
) -> FileFilter:
    """The filter for a file of ``layout`` lacking ``projected_missing_fields``; ``with_polars`` also
    as a polars expression (only for files polars decodes: translating imports polars)."""
    from pyiceberg.expressions import AlwaysTrue
    from pyiceberg.expressions.visitors import bind, extract_field_ids, translate_column_names
    from pyiceberg.io.pyarrow import expression_to_pyarrow

    if plan.bound_row_filter is AlwaysTrue():
        return FileFilter(pyarrow=None, columns=[], polars=None)
    # repr, not the values: 1, 1.0 and True are equal keys, and NaN equals nothing.
    missing = tuple(sorted((k, repr(v)) for k, v in projected_missing_fields.items()))
    key = (*layout.key, missing, with_polars)
    cached = plan._file_filters.get(key)
    if cached is not None:
        return cached
    file_schema = layout.file_schema
    translated = translate_column_names(
        plan.bound_row_filter, file_schema, case_sensitive=True, projected_field_values=projected_missing_fields
    )
    bound = bind(file_schema, translated, case_sensitive=True)
    filter_top = {file_schema.find_column_name(i).split(".")[0] for i in extract_field_ids(bound)}  # type: ignore[union-attr]
    polars_filter = None
    if with_polars:
        from airflow_provider_mlp.fastdata.polars_decode import filter_to_polars

        polars_filter = filter_to_polars(bound, file_schema)
    file_filter = FileFilter(
        pyarrow=expression_to_pyarrow(bound, file_schema),
        columns=[c for c in layout.columns if c in filter_top],
        polars=polars_filter,
    )
    return plan._file_filters.setdefault(key, file_filter)


def open_file(
    plan: ReadPlan,
    task: FileScanTask,
    deletes: np.ndarray | None,
    whole_file_into: WholeFileBuffers | None = None,
) -> OpenFile:
    """Read the file's footer; with ``whole_file_into``, a remote file's every byte in the same
    request, into that memory."""
    from pyiceberg.io.pyarrow import _get_column_projection_values

    remote = RemoteFile(
        task.file.file_path, task.file.file_size_in_bytes, plan.io_properties, plan.io_concurrency, io=plan.io
    )
    if whole_file_into is not None and remote.local_path is None and remote.size <= WHOLE_FILE_MAX:
        remote.fetch_whole(whole_file_into)
    parquet = remote.footer()
    try:
        physical_schema = parquet.schema.to_arrow_schema()
    except Exception as exc:
        raise DataFileError(f"data file {remote.path} has a Parquet schema Arrow cannot read: {exc}") from exc
    metadata = plan.metadata
    downcast = (
        plan.downcast_ns_timestamp_to_us
        if plan.downcast_ns_timestamp_to_us is not None
        else metadata.format_version <= 2
    )
    layout = _file_layout(plan, parquet, physical_schema, downcast)
    projected_missing_fields = _get_column_projection_values(
        task.file,
        plan.projected_schema,
        metadata.schema(),
        metadata.specs().get(task.file.spec_id),
        layout.file_schema.field_ids,
    )

    offsets = [0]
    for rg in range(parquet.num_row_groups):
        offsets.append(offsets[-1] + parquet.row_group(rg).num_rows)
    if offsets[-1] != task.file.record_count:
        raise DataFileError(
            f"data file {remote.path} has {offsets[-1]} rows but its manifest says {task.file.record_count}"
        )

    dictionary_columns = []
    for name in plan.dictionary_columns:
        field_id = plan.projected_schema.find_field(name).field_id
        # By field id: a file may hold another column of that name (dropped and re-added since).
        file_name = layout.file_schema.find_column_name(field_id)
        if file_name is not None and "." not in file_name:
            dictionary_columns.append(file_name)
    polars_source = None
    if layout.polars_decodable and remote.local_path is not None and not dictionary_columns:
        polars_source = remote.local_path
    file_filter = _file_filter(plan, layout, projected_missing_fields, with_polars=polars_source is not None)
    return OpenFile(
        task=task,
        remote=remote,
        parquet=parquet,
        file_project_schema=layout.file_project_schema,
        columns=layout.columns,
        filter_columns=file_filter.columns,
        pyarrow_filter=file_filter.pyarrow,
        projected_missing_fields=projected_missing_fields,
        dictionary_columns=dictionary_columns,
        leaves=layout.leaves,
        row_offsets=offsets,
        downcast_ns_timestamp_to_us=downcast,
        projected_schema=plan.projected_schema,
        output_schema=plan.arrow_schema(),
        deletes=deletes,
        string_view=plan.string_view,
        polars_source=polars_source,
        polars_filter=file_filter.polars,
        renames_only=layout.renames_only,
        native_columns={k: v for k, v in layout.native_columns.items() if k not in dictionary_columns},
    )


def prune_row_groups(opened: OpenFile, row_groups: Sequence[int] | None) -> list[int]:
    """Row groups to read: those asked for, minus those whose statistics rule the filter out."""
    candidates = list(range(opened.parquet.num_row_groups)) if row_groups is None else list(row_groups)
    for rg in candidates:
        if not 0 <= rg < opened.parquet.num_row_groups:
            raise DataFileError(
                f"data file {opened.remote.path} has {opened.parquet.num_row_groups} row groups; "
                f"row group {rg} was asked for (a shard descriptor from another version of the file?)"
            )
    if opened.deletes is not None and len(opened.deletes):
        candidates = [rg for rg in candidates if not _fully_deleted(opened, rg)]
    if opened.pyarrow_filter is None or not candidates:
        return candidates
    import pyarrow as pa
    import pyarrow.dataset as ds

    # Arrow prunes row groups by their statistics given only the footer: serialise it alone.
    sink = pa.BufferOutputStream()
    opened.parquet.write_metadata_file(sink)
    fragment = ds.ParquetFileFormat().make_fragment(pa.BufferReader(sink.getvalue()), row_groups=candidates)
    try:
        kept = {rg.id for rg in fragment.subset(opened.pyarrow_filter).row_groups}
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return candidates
    return [rg for rg in candidates if rg in kept]


def _fully_deleted(opened: OpenFile, rg: int) -> bool:
    import numpy as np

    assert opened.deletes is not None
    start, end = opened.row_offsets[rg], opened.row_offsets[rg + 1]
    lo, hi = np.searchsorted(opened.deletes, [start, end])
    return bool(hi - lo == end - start)


def _dictionary_coded(opened: OpenFile, rg: int, column: str) -> bool:
    """Whether a string/binary column chunk's pages are (almost) all dictionary indices.

    Plain-encoded strings take at least 4 bytes a value (their length prefix); indices take fewer.
    Such chunks decode several times faster to a dictionary array, then one vectorised take.
    """
    leaves = opened.leaves.get(column, ())
    # Only a top-level string column: the one leaf of a list or struct is not the column Arrow reads.
    if len(leaves) != 1 or opened.parquet.schema.column(leaves[0]).path != column:
        return False
    # A list of strings also has one leaf, but pyarrow reads only top-level columns as dictionaries
    # (naming the list column there raises KeyError).
    if opened.parquet.schema.column(leaves[0]).path != column:
        return False
    chunk = opened.parquet.row_group(rg).column(leaves[0])
    if chunk.physical_type != "BYTE_ARRAY" or not chunk.has_dictionary_page or chunk.num_values == 0:
        return False
    return bool(chunk.total_uncompressed_size < 4 * chunk.num_values)


def _decode(opened: OpenFile, source: RowGroupSource, rg: int, columns: Sequence[str]) -> pa.Table:
    """The row group's ``columns``; those that ``_dictionary_coded`` picks still as dictionaries (see ``_plain``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    source.fetch(opened.ranges(rg, columns))
    asked = [c for c in opened.dictionary_columns if c in columns]
    as_dictionary = [c for c in columns if c not in asked and _dictionary_coded(opened, rg, c)]
    try:
        # ParquetReader rather than ParquetFile: only it takes the memory pool to decode into.
        reader = pq.ParquetReader(memory_pool=data_memory_pool())
        reader.open(
            source.reader(),
            metadata=opened.parquet,
            read_dictionary=(asked + as_dictionary) or None,
            pre_buffer=False,
            arrow_extensions_enabled=True,
        )
        leaves = [leaf for name in columns for leaf in opened.leaves.get(name, ())]
        return reader.read_row_group(rg, column_indices=leaves, use_threads=True)
    except (OSError, pa.ArrowException) as exc:
        raise DataFileError(f"data file {opened.remote.path} is corrupt in row group {rg}: {exc}") from exc


def _plain(opened: OpenFile, rg: int, table: pa.Table) -> pa.Table:
    """Columns ``_decode`` read as dictionaries only for speed, back to the plain type: same values, same type.

    Called after rows were taken, so that only the rows kept are materialised.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    for index, name in enumerate(table.column_names):
        column = table.column(index)
        if (
            pa.types.is_dictionary(column.type)
            and name not in opened.dictionary_columns
            and _dictionary_coded(opened, rg, name)
        ):
            # Straight to the large type every projection of a string/binary column has (see
            # ``output_schema``): one conversion rather than a plain one and then ``conform``'s.
            # (A string_view read takes one more, large to view: Arrow casts no dictionary to a view.)
            target = large_type(column.type.value_type)
            table = table.set_column(
                index,
                table.schema.field(index).with_type(target),
                pc.cast(column, target, memory_pool=data_memory_pool()),
            )
    return table


def _take(table: pa.Table, indices: pa.Array | pa.ChunkedArray) -> pa.Table:
    import pyarrow.compute as pc

    return pc.take(table, indices, memory_pool=data_memory_pool())


def _kept_positions(opened: OpenFile, rg: int) -> np.ndarray | None:
    """Row positions (within the row group) that positional deletes leave, or None for all."""
    import numpy as np

    if opened.deletes is None or not len(opened.deletes):
        return None
    start, end = opened.row_offsets[rg], opened.row_offsets[rg + 1]
    lo, hi = np.searchsorted(opened.deletes, [start, end])
    if lo == hi:
        return None
    keep = np.ones(end - start, dtype=bool)
    keep[opened.deletes[lo:hi] - start] = False
    return np.flatnonzero(keep)


def _read_rows(opened: OpenFile, source: RowGroupSource, rg: int) -> pa.Table:
    """The row group's surviving rows (deletes and filter applied), in file column names."""
    import numpy as np
    import pyarrow as pa

    kept = _kept_positions(opened, rg)
    if opened.pyarrow_filter is not None:
        first = opened.filter_columns
        head = _plain(opened, rg, _decode(opened, source, rg, first))
        indexed = head.append_column(ROW_INDEX, pa.array(np.arange(head.num_rows, dtype=np.int64)))
        if kept is not None:
            indexed = _take(indexed, pa.array(kept))
        matched = indexed.filter(opened.pyarrow_filter).column(ROW_INDEX)
        if len(matched) == 0:
            return head.slice(0, 0)
        rest = [c for c in opened.columns if c not in first]
        head_rows = head.num_rows
        if len(matched) < head_rows:
            head = _take(head, matched)
        if not rest:
            return head
        # Only now the other columns: a row group no row of which matches never has them fetched or decoded.
        others = _decode(opened, source, rg, rest)
        if len(matched) < head_rows:
            others = _take(others, matched)
        others = _plain(opened, rg, others)
        columns = {
            **dict(zip(head.column_names, head.columns, strict=True)),
            **dict(zip(rest, others.columns, strict=True)),
        }
        return pa.Table.from_arrays([columns[c] for c in opened.columns], names=opened.columns)
    table = _decode(opened, source, rg, opened.columns)
    if kept is not None:
        table = _take(table, pa.array(kept))
    return _plain(opened, rg, table)


def _decoded(opened: OpenFile, row_groups: Sequence[int], spread: bool) -> list[pa.Table]:
    """The surviving rows of consecutive ``row_groups``: flat columns by the native kernel when nothing
    filters the rows (see native_decode; over every core with ``spread``), the rest by polars in one go
    where it can, else by Arrow."""
    import pyarrow as pa

    from airflow_provider_mlp.fastdata.native_decode import (
        NativeDecodeError,
        read_columns,
        read_selected,
        selectable,
        usable,
    )

    native: dict[str, pa.ChunkedArray] = {}
    if selectable(opened, row_groups):
        # Every column by the kernel, the filter's first and the others only where it keeps rows.
        try:
            return [_joined(opened, read_selected(opened, row_groups, spread), None)]
        except NativeDecodeError:
            pass  # the other decoders decode it instead, and name the file if it is corrupt
    if usable(opened, row_groups):
        try:
            native = read_columns(opened, row_groups, spread)
        except NativeDecodeError:
            pass  # the other decoders decode those columns too, and name the file if it is corrupt
    rest = [name for name in opened.columns if name not in native]
    if opened.polars_source is not None:
        from airflow_provider_mlp.fastdata.polars_decode import PolarsDecodeError, read_rows

        try:
            if not native:
                return [read_rows(opened, row_groups[0], row_groups[-1])]
            return [_joined(opened, native, read_rows(opened, row_groups[0], row_groups[-1], rest) if rest else None)]
        except PolarsDecodeError:
            native, rest = {}, opened.columns  # Arrow decodes it all instead
    if native:
        # No filter and no deletes (see usable): each row group's other columns as they are.
        others = None
        if rest:
            decoded = []
            for rg in row_groups:
                source = opened.remote.row_group_source()
                try:
                    decoded.append(_plain(opened, rg, _decode(opened, source, rg, rest)))
                finally:
                    source.close()
            others = pa.concat_tables(decoded)
        return [_joined(opened, native, others)]
    tables = []
    for rg in row_groups:
        source = opened.remote.row_group_source()
        try:
            tables.append(_read_rows(opened, source, rg))
        finally:
            source.close()
    return tables


def _joined(opened: OpenFile, native: dict[str, pa.ChunkedArray], others: pa.Table | None) -> pa.Table:
    """The file's columns in its order: the kernel's, and the other decoder's (None when it had none)."""
    import pyarrow as pa

    columns = []
    for name in opened.columns:
        if name in native:
            columns.append(native[name])
        else:
            assert others is not None, name
            columns.append(others.column(name))
    return pa.Table.from_arrays(columns, names=opened.columns)


def read_row_group(opened: OpenFile, rg: int, spread: bool = True) -> list[pa.RecordBatch]:
    """Decode one row group: filter columns first, the rest only if some row survives."""
    return read_row_groups(opened, [rg], spread)


def read_row_groups(opened: OpenFile, row_groups: Sequence[int], spread: bool = True) -> list[pa.RecordBatch]:
    """Decode consecutive row groups of one file into batches of the plan's schema; ``spread`` (when
    nothing else decodes at the same time) lets the native kernel's column chunks use every core."""
    try:
        tables = _decoded(opened, row_groups, spread)
    finally:
        for _ in row_groups:
            opened.row_group_done()
    return [batch for table in tables if table.num_rows for batch in _projected(opened, table)]


def _projected(opened: OpenFile, table: pa.Table) -> list[pa.RecordBatch]:
    from pyiceberg.io.pyarrow import _to_requested_schema

    if opened.renames_only:
        return [conform(batch, opened.output_schema) for batch in table.to_batches() if batch.num_rows]
    return [
        conform(
            _to_requested_schema(
                opened.projected_schema,
                opened.file_project_schema,
                batch,
                downcast_ns_timestamp_to_us=opened.downcast_ns_timestamp_to_us,
                projected_missing_fields=opened.projected_missing_fields,
                allow_timestamp_tz_mismatch=True,
            ),
            opened.output_schema,
        )
        for batch in table.to_batches()
        if batch.num_rows
    ]


Part = tuple["FileScanTask", "list[int] | None"]


def open_parts(plan: ReadPlan, parts: Sequence[Part], whole_file: bool = True) -> list[tuple[OpenFile, list[int]]]:
    """Read every part's footer (in parallel) and its delete files; prune its row groups.

    With ``whole_file``, a read of everything fetches each remote file whole with its footer; a
    streaming read passes False, since that would hold every file in memory before the first batch."""
    pool, open_part, buffers = _part_opener(plan, parts, whole_file)
    try:
        return list(pool.map(open_part, parts))
    finally:
        buffers.close()


def _part_opener(
    plan: ReadPlan, parts: Sequence[Part], whole_file: bool
) -> tuple[Executor, Callable[[Part], tuple[OpenFile, list[int]]], WholeFileBuffers]:
    """The pool to open ``parts`` in, the function opening one (footer, deletes, pruned row groups),
    and the memory it fetches files whole into (to be closed when the opens are done)."""
    from pyiceberg.expressions import AlwaysTrue

    from airflow_provider_mlp.fastdata.fetch import io_pool

    tasks = [task for task, _ in parts]
    check_file_formats(plan.table_name, tasks)
    local = all("://" not in t.file.file_path or t.file.file_path.startswith("file:") for t in tasks)
    # Local footers are parsed, not waited for: more threads than cores only cost their start-up.
    pool = io_pool(min(plan.io_concurrency, os.cpu_count() or 2) if local else plan.io_concurrency)
    deletes = read_positional_deletes(plan, tasks, pool)  # type: ignore[arg-type]
    # A read of every column of every row group, without a filter, needs each file whole.
    reads_all_columns = plan.projected_field_ids >= set(plan.metadata.schema().field_ids)
    everything = whole_file and plan.bound_row_filter == AlwaysTrue() and reads_all_columns
    # The files fetched whole share memory: each file decoded frees its buffer for one fetched later.
    buffers = WholeFileBuffers()

    def open_part(part: Part) -> tuple[OpenFile, list[int]]:
        task, row_groups = part
        whole_file_into = buffers if everything and row_groups is None else None
        opened = open_file(plan, task, deletes.get(task.file.file_path), whole_file_into)
        kept = prune_row_groups(opened, row_groups)
        opened.pending_row_groups = len(kept)
        if not kept:
            opened.remote.release_whole()
        return opened, kept

    return pool, open_part, buffers


def _runs(opened: OpenFile, row_groups: Sequence[int]) -> list[list[int]]:
    """The row groups one decode job takes: runs of consecutive ones for polars, which decodes a run
    in one call (its own threads spread the work), else one each."""
    if opened.polars_source is None:
        return [[rg] for rg in row_groups]
    runs: list[list[int]] = []
    for rg in row_groups:
        if runs and runs[-1][-1] + 1 == rg:
            runs[-1].append(rg)
        else:
            runs.append([rg])
    return runs


def read_table(plan: ReadPlan, parts: Sequence[Part]) -> pa.Table:
    """Everything the parts hold, as one Arrow table (row groups decoded in parallel).

    A file's row groups are decoded as soon as that file is open, while later files are still being
    fetched: a remote scan's downloads and decodes overlap instead of following one another. Opening
    runs in the shared I/O pool and never waits on that pool itself (a whole file is one request,
    fetched inline), so a full pool of opens cannot wait on work queued behind it.
    """
    open_pool, open_part, buffers = _part_opener(plan, parts, whole_file=True)
    try:
        return _read_opening(plan, [open_pool.submit(open_part, part) for part in parts], buffers)
    finally:
        buffers.close()  # after a failure too: memory given back is unmapped, not kept


def _read_opening(
    plan: ReadPlan, opening: list[Future[tuple[OpenFile, list[int]]]], buffers: WholeFileBuffers
) -> pa.Table:
    import pyarrow as pa

    if len(opening) == 1:
        opened, row_groups = opening[0].result()
        runs = _runs(opened, row_groups)
        if len(runs) == 1:
            # One file's run: polars or Arrow spreads it over the cores.
            return pa.Table.from_batches(read_row_groups(opened, runs[0]), schema=plan.arrow_schema())
    decoding: list[Future[list[pa.RecordBatch]]] = []
    with ThreadPoolExecutor(max_workers=max(1, plan.decode_workers)) as pool:
        try:
            for future in opening:  # in the parts' order, so that the batches are too
                opened, row_groups = future.result()
                # Files decode side by side here: each run on its own thread, its columns too.
                runs = _runs(opened, row_groups)
                decoding.extend(pool.submit(read_row_groups, opened, run, False) for run in runs)
            # Every file is fetched: memory the decodes give back from now on is unmapped at once,
            # not kept for a fetch that will not come.
            buffers.close()
            results = [future.result() for future in decoding]
        except BaseException:
            for job in decoding:
                job.cancel()
            # Files fetched whole are let go of now (or when their fetch ends), not with the traceback.
            for each in opening:
                if not each.cancel():
                    each.add_done_callback(_release_opened)
            raise
    # Every batch already has the plan's schema, whatever file it came from.
    return pa.Table.from_batches([batch for result in results for batch in result], schema=plan.arrow_schema())


def _release_opened(future: Future[tuple[OpenFile, list[int]]]) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result()[0].remote.release_whole()


def iter_batches(plan: ReadPlan, parts: Sequence[Part], batch_rows: int, prefetch: int = 2) -> Iterator[pa.RecordBatch]:
    """Batches of at most ``batch_rows`` rows; at most ``prefetch`` row groups are in memory at once."""
    from collections import deque

    if batch_rows <= 0:
        raise ValueError(f"batch_rows must be positive, got {batch_rows}")
    jobs = [(o, rg) for o, rgs in open_parts(plan, parts, whole_file=False) for rg in rgs]
    pool = ThreadPoolExecutor(max_workers=max(1, min(prefetch, plan.decode_workers)))
    window: deque[Future[list[pa.RecordBatch]]] = deque()
    try:
        for job in jobs:
            window.append(pool.submit(read_row_group, *job))
            if len(window) >= prefetch:
                yield from _sliced(window.popleft().result(), batch_rows)
        while window:
            yield from _sliced(window.popleft().result(), batch_rows)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _sliced(batches: list[pa.RecordBatch], batch_rows: int) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        for offset in range(0, batch.num_rows, batch_rows):
            yield batch.slice(offset, batch_rows)
