/* The airflow_provider_mlp.kernels._native module: method table and initialisation. */
#include "mlp_columns.h"
#include "mlp_kernels.h"

static PyMethodDef MlpNativeMethods[] = {
    {"array_stats", (PyCFunction)(void (*)(void))MlpArrayStats, METH_VARARGS | METH_KEYWORDS,
     "array_stats(values) -> (length, null_count) of an Arrow array or stream."},
    {"jaro_winkler_similarity", (PyCFunction)(void (*)(void))MlpJaroWinklerSimilarity,
     METH_VARARGS | METH_KEYWORDS,
     "jaro_winkler_similarity(left, right, *, prefix_weight=0.1, boost_threshold=0.7, "
     "token_sort=False, threads=None) -> float64 ArrowResult, one score per aligned pair."},
    {"levenshtein_similarity", (PyCFunction)(void (*)(void))MlpLevenshteinSimilarity,
     METH_VARARGS | METH_KEYWORDS,
     "levenshtein_similarity(left, right, *, token_sort=False, threads=None) -> float64 "
     "ArrowResult of 1 - distance / max(len), one score per aligned pair."},
    {"match_pairs", (PyCFunction)(void (*)(void))MlpMatchPairs, METH_VARARGS | METH_KEYWORDS,
     "match_pairs(fields, *, threshold=None, threads=None) -> scores, or (scores, indices) "
     "with a threshold; fields are (left, right, weight, metric) tuples."},
    {"iceberg_bucket", (PyCFunction)(void (*)(void))MlpIcebergBucket,
     METH_VARARGS | METH_KEYWORDS,
     "iceberg_bucket(values, num_buckets, *, threads=None) -> int32 ArrowResult of Iceberg's "
     "bucket[num_buckets] transform."},
    {"decode_parquet_column", (PyCFunction)(void (*)(void))MlpDecodeParquetColumn,
     METH_VARARGS | METH_KEYWORDS,
     "decode_parquet_column(chunk, num_values, arrow_type, *, max_definition_level=1, "
     "decompress=None, allocate=None, decompress_into=None, selection=None, zstd=False) -> list "
     "of ArrowResult: one flat "
     "Parquet column chunk's "
     "values (arrow_type: large_string, large_binary, int32, int64, float32, float64 or date32)."},
    {"trim_buffer_cache", (PyCFunction)(void (*)(void))MlpTrimBufferCache,
     METH_VARARGS | METH_KEYWORDS,
     "trim_buffer_cache(older_than=0.0) -> int: unmaps the output buffers cached for reuse that "
     "were freed at least older_than seconds ago; returns the bytes given back."},
    {"set_buffer_cache_limit", (PyCFunction)(void (*)(void))MlpSetBufferCacheLimit,
     METH_VARARGS | METH_KEYWORDS,
     "set_buffer_cache_limit(limit_bytes) -> None: the most freed output memory kept for reuse "
     "(default an eighth of the machine's or the control group's memory, at most 4 GiB; 0 keeps "
     "none)."},
    {"zstd_library_version", (PyCFunction)MlpZstdLibraryVersion, METH_NOARGS,
     "zstd_library_version() -> str or None: the version of the libzstd decode_parquet_column "
     "decompresses zstd pages with itself (zstd=True), or None when none could be loaded."},
    {"buffer_cache_info", (PyCFunction)MlpBufferCacheInfo, METH_NOARGS,
     "buffer_cache_info() -> dict of retained_bytes, retained_blocks, outstanding_bytes, "
     "limit_bytes, hits, misses."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MlpNativeModule = {
    PyModuleDef_HEAD_INIT, "_native",
    "Arrow kernels on nanoarrow, fed through the Arrow PyCapsule protocol.", -1,
    MlpNativeMethods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__native(void) {
  /* The exception type is defined in Python so that the pure-Python reference kernels raise
   * exactly the same type. */
  PyObject* errors = PyImport_ImportModule("airflow_provider_mlp.kernels.errors");
  if (errors == NULL) return NULL;
  MlpArrowKernelError = PyObject_GetAttrString(errors, "ArrowKernelError");
  Py_DECREF(errors);
  if (MlpArrowKernelError == NULL) return NULL;

  if (MlpBufferCacheInit() != 0) return PyErr_NoMemory();
  PyObject* module = PyModule_Create(&MlpNativeModule);
  if (module == NULL) return NULL;
  if (PyModule_AddStringConstant(module, "NANOARROW_VERSION", NANOARROW_VERSION) != 0 ||
      MlpResultTypeReady(module) != 0) {
    Py_DECREF(module);
    return NULL;
  }
  return module;
}
