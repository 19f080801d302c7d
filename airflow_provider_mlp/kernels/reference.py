"""Pure-Python reference implementations of the native kernels.

Each function here defines what its counterpart in ``_native`` must return; tests run every
case against both. They favour obviousness over speed.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_mlp.kernels.errors import ArrowKernelError


def _to_pyarrow_chunks(values: Any, func: str, argname: str) -> list[Any]:
    import pyarrow as pa

    if hasattr(values, "__arrow_c_array__"):
        return [pa.array(values)]
    if hasattr(values, "__arrow_c_stream__"):
        return list(pa.chunked_array(values).chunks)
    raise ArrowKernelError(
        f"{func}() argument '{argname}': expected an Arrow array or stream (an object with "
        "__arrow_c_array__ or __arrow_c_stream__, such as a pyarrow Array or ChunkedArray, "
        f"a polars Series or a nanoarrow array), got {type(values).__name__}"
    )


def array_stats(values: Any) -> tuple[int, int]:
    """Return ``(length, null_count)`` of an Arrow array or stream."""
    chunks = _to_pyarrow_chunks(values, "array_stats", "values")
    length = sum(len(chunk) for chunk in chunks)
    null_count = sum(1 for chunk in chunks for item in chunk.to_pylist() if item is None)
    return length, null_count
