"""Hot operations over Arrow data, in C on nanoarrow, with pure-Python references.

``airflow_provider_mlp.kernels.native`` is the C extension's functions and
``airflow_provider_mlp.kernels.reference`` the pure-Python ones; the names exported here are
the native ones. Inputs are anything speaking the Arrow PyCapsule protocol (pyarrow, polars,
nanoarrow); errors are :class:`ArrowKernelError`.
"""

from __future__ import annotations

from airflow_provider_mlp.kernels import _native as native
from airflow_provider_mlp.kernels._native import array_stats
from airflow_provider_mlp.kernels.errors import ArrowKernelError

__all__ = ["ArrowKernelError", "array_stats", "native"]
