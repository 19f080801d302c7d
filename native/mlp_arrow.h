/* Shared plumbing of the native kernels: Arrow C data interface input through the PyCapsule
 * protocol, and the one exception type every kernel raises.
 *
 * Kernels never link libarrow: inputs arrive as ArrowSchema/ArrowArray structs moved out of
 * the producer's capsules and are read with nanoarrow's ArrowArrayView. */
#ifndef MLP_ARROW_H_INCLUDED
#define MLP_ARROW_H_INCLUDED

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "nanoarrow/nanoarrow.h"

/* The module's exception type (airflow_provider_mlp.kernels.errors.ArrowKernelError, a subclass
 * of both ValueError and TypeError); set at module init. */
extern PyObject* MlpArrowKernelError;

/* Set ArrowKernelError with a printf-style message; always returns NULL. */
PyObject* MlpRaise(const char* fmt, ...);

/* One Arrow input, owned: a schema and its chunks (one for __arrow_c_array__, any number for
 * __arrow_c_stream__). */
typedef struct {
  struct ArrowSchema schema;
  struct ArrowArray* chunks;
  int64_t n_chunks;
  int64_t length; /* sum of chunk lengths */
  char format[64]; /* the top-level format string, for error messages */
} MlpChunkedInput;

/* Import any object exposing __arrow_c_array__ or __arrow_c_stream__. On failure returns -1
 * with ArrowKernelError set, naming `func`'s argument `argname`. */
int MlpChunkedInputImport(PyObject* obj, const char* func, const char* argname,
                          MlpChunkedInput* out);
void MlpChunkedInputRelease(MlpChunkedInput* input);

/* Describe the schema (format and type) for error messages. */
void MlpSchemaDescribe(const struct ArrowSchema* schema, char* out, size_t n);

#endif
