/* array_stats: length and null count of any Arrow array or stream. The smallest kernel that
 * exercises the whole chain: capsule import, nanoarrow validation, GIL release, errors. */
#include "mlp_kernels.h"

PyObject* MlpArrayStats(PyObject* self, PyObject* args, PyObject* kwargs) {
  static char* keywords[] = {"values", NULL};
  PyObject* values;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O:array_stats", keywords, &values)) {
    return NULL;
  }
  MlpChunkedInput input;
  if (MlpChunkedInputImport(values, "array_stats", "values", &input) != 0) return NULL;

  struct ArrowArrayView view;
  struct ArrowError error;
  error.message[0] = '\0';
  if (ArrowArrayViewInitFromSchema(&view, &input.schema, &error) != NANOARROW_OK) {
    MlpChunkedInputRelease(&input);
    return MlpRaise("array_stats() argument 'values': unsupported Arrow type '%s': %s",
                    input.format, error.message);
  }
  int64_t null_count = 0;
  int failed = 0;
  int64_t failed_chunk = -1;
  Py_BEGIN_ALLOW_THREADS;
  for (int64_t i = 0; i < input.n_chunks; i++) {
    if (ArrowArrayViewSetArray(&view, &input.chunks[i], &error) != NANOARROW_OK) {
      failed = 1;
      failed_chunk = i;
      break;
    }
    null_count += ArrowArrayViewComputeNullCount(&view);
  }
  Py_END_ALLOW_THREADS;
  ArrowArrayViewReset(&view);
  int64_t length = input.length;
  char format[64];
  memcpy(format, input.format, sizeof(format));
  MlpChunkedInputRelease(&input);
  if (failed) {
    return MlpRaise("array_stats() argument 'values': invalid Arrow array of type '%s' in chunk "
                    "%lld: %s",
                    format, (long long)failed_chunk, error.message);
  }
  return Py_BuildValue("(LL)", (long long)length, (long long)null_count);
}
