"""Hot operations over Arrow data, in C on nanoarrow, with pure-Python references.

``airflow_provider_mlp.kernels.native`` is the C extension's functions and
``airflow_provider_mlp.kernels.reference`` the pure-Python ones; the names exported here are
the native ones. Inputs are anything speaking the Arrow PyCapsule protocol (pyarrow, polars,
nanoarrow); outputs are :class:`ArrowResult` objects that pyarrow (``pa.array(result)``) and
polars (``pl.Series(result)``) take without copying; errors are :class:`ArrowKernelError`.

Kernels:

- ``jaro_winkler_similarity(left, right, *, prefix_weight=0.1, boost_threshold=0.7,
  token_sort=False, threads=None)`` and ``levenshtein_similarity(left, right, *,
  token_sort=False, threads=None)``: one float64 score per aligned pair of two text columns
  (strings, or lists of strings whose non-null items are joined by one space); a null on either
  side gives a null score;
- ``match_pairs(fields, *, threshold=None, threads=None)``: the weighted mean of several such
  scores (fields with a null drop out of a row's mean; a row with none left is null), and with
  a threshold also the int64 indices of the rows that reach it;
- ``iceberg_bucket(values, num_buckets, *, threads=None)``: Iceberg's ``bucket[N]`` transform;
- ``decode_parquet_column(chunk, num_values, arrow_type, *, max_definition_level=1,
  decompress=None, allocate=None, decompress_into=None, selection=None, zstd=False)``: one Parquet column
  chunk of a flat column (its pages' bytes, from the first) as a list of ``large_string``,
  ``large_binary``, ``int32``, ``int64``,
  ``float32``, ``float64`` or ``date32`` arrays (of at most 8 MiB a buffer, unless one page or
  value needs more: sizes the buffer cache keeps); ``decompress(data, uncompressed_size)`` returns a page's
  bytes (None for an uncompressed chunk), ``allocate(size)`` a writable buffer for the output
  (None: the buffer cache below). ``decompress_into(data, uncompressed_size, out)``, when given,
  is used instead of ``decompress``: it fills the writable memoryview ``out`` and returns the bytes
  written, and must keep no buffer or view of ``data`` or ``out`` after the call (a buffer of
  ``out`` still exported makes the call fail with BufferError, and its memory is then never
  freed; views made by slicing are not detected); the kernel then decompresses PLAIN pages of fixed-width values
  without nulls straight into the output array, with no copy (all but an array's first page of
  an optional column's v1 pages), and the other pages into one scratch buffer it reuses.
  ``zstd=True`` (for a zstd chunk, instead of either callable: every compressed page is taken to
  be zstd) has the kernel decompress the pages itself, through the system's libzstd, loaded at
  first use (``zstd_library_version()`` gives its version, or None when there is none: then
  zstd=True raises), where decompress_into's pages would land (in place too), without the GIL
  and without a call into Python for each page.
  ``selection``, when given, is a bitmap (a buffer of at least ``(num_values + 7) // 8`` bytes,
  Arrow's bit order) of the rows to output: the others are read past and never copied, a page
  none of whose rows is selected is not decompressed, and only selected strings are checked to be
  UTF-8 (every length and index still is).

The buffer cache: ``decode_parquet_column``'s output buffers of 64 KiB and more are mapped by
the module and, once Arrow frees them, kept for the next buffers of about their size instead of
being handed back to the system, whose fresh pages cost a fault each (about 0.4 s per GiB).
``buffer_cache_info()`` says what it holds, ``trim_buffer_cache(older_than=0.0)`` unmaps what was
freed at least that many seconds ago, ``set_buffer_cache_limit(limit_bytes)`` bounds what it keeps
(by default an eighth of the memory the process may use: the machine's, or its control group's,
at most 4 GiB). Fast Data's reader trims it every 10 seconds while it holds anything; other
callers of ``decode_parquet_column`` trim it themselves (or set a limit of 0 to keep nothing).
"""

from __future__ import annotations

from airflow_provider_mlp.kernels import _native as native
from airflow_provider_mlp.kernels._native import (
    ArrowResult,
    array_stats,
    buffer_cache_info,
    decode_parquet_column,
    iceberg_bucket,
    jaro_winkler_similarity,
    levenshtein_similarity,
    match_pairs,
    set_buffer_cache_limit,
    trim_buffer_cache,
    zstd_library_version,
)
from airflow_provider_mlp.kernels.errors import ArrowKernelError

__all__ = [
    "ArrowKernelError",
    "ArrowResult",
    "array_stats",
    "buffer_cache_info",
    "decode_parquet_column",
    "iceberg_bucket",
    "jaro_winkler_similarity",
    "levenshtein_similarity",
    "match_pairs",
    "native",
    "set_buffer_cache_limit",
    "trim_buffer_cache",
    "zstd_library_version",
]
