from __future__ import annotations

from typing import Any, overload

NANOARROW_VERSION: str

class ArrowResult:
    """A kernel's output: an Arrow array owned in C, exported zero-copy through __arrow_c_array__."""

    @property
    def format(self) -> str: ...
    @property
    def null_count(self) -> int: ...
    def __len__(self) -> int: ...
    def __arrow_c_array__(self, requested_schema: object | None = None) -> tuple[object, object]: ...
    def __arrow_c_schema__(self) -> object: ...

def array_stats(values: Any) -> tuple[int, int]: ...
def jaro_winkler_similarity(
    left: Any,
    right: Any,
    *,
    prefix_weight: float = 0.1,
    boost_threshold: float = 0.7,
    token_sort: bool = False,
    threads: int | None = None,
) -> ArrowResult: ...
def levenshtein_similarity(
    left: Any, right: Any, *, token_sort: bool = False, threads: int | None = None
) -> ArrowResult: ...
@overload
def match_pairs(fields: Any, *, threshold: None = None, threads: int | None = None) -> ArrowResult: ...
@overload
def match_pairs(fields: Any, *, threshold: float, threads: int | None = None) -> tuple[ArrowResult, ArrowResult]: ...
def iceberg_bucket(values: Any, num_buckets: int, *, threads: int | None = None) -> ArrowResult: ...
def decode_parquet_column(
    chunk: Any,
    num_values: int,
    arrow_type: str,
    *,
    max_definition_level: int = 1,
    decompress: Any | None = None,
    allocate: Any | None = None,
) -> list[ArrowResult]: ...
