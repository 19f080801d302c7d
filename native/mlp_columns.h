/* Column access, Arrow output and thread splitting shared by the kernels beyond array_stats.
 *
 * An MlpColumn is an imported Arrow input (MlpChunkedInput) with one validated ArrowArrayView
 * per chunk and the row where each chunk starts, so that kernels can walk any row range
 * without Python and without the GIL. An MlpResult is the Python object kernels return: it owns
 * a nanoarrow-built ArrowArray and hands it out through __arrow_c_array__ without copying. */
#ifndef MLP_COLUMNS_H_INCLUDED
#define MLP_COLUMNS_H_INCLUDED

#include "mlp_arrow.h"

typedef struct {
  MlpChunkedInput input;
  struct ArrowArrayView* views; /* n_chunks views, each set on its chunk */
  int64_t n_views;              /* how many of them are initialised */
  int64_t* starts;              /* n_chunks + 1 entries: the first row of each chunk, then length */
  enum ArrowType type;         /* the logical type (timestamp, date32, ...) */
  enum ArrowTimeUnit time_unit; /* for time and timestamp types */
  int64_t length;
  int64_t null_count;
} MlpColumn;

/* Import `obj` (argument `argname` of `func`) and check that its logical type is one of
 * `accepted` (terminated by NANOARROW_TYPE_UNINITIALIZED); `expected` describes them for the
 * error message. Returns 0, or -1 with ArrowKernelError set. */
int MlpColumnOpen(PyObject* obj, const char* func, const char* argname,
                  const enum ArrowType* accepted, const char* expected, MlpColumn* out);
void MlpColumnClose(MlpColumn* column);

/* The chunk holding `row` (binary search over starts). */
int64_t MlpColumnChunkOf(const MlpColumn* column, int64_t row);

extern const enum ArrowType MlpStringTypes[];
/* Text columns: strings, or lists of strings (whose non-null items are joined by a space). */
extern const enum ArrowType MlpTextTypes[];
#define MLP_TEXT_EXPECTED                                                                    \
  "a string column (string 'u', large_string 'U' or string_view 'vu') or a list of strings " \
  "(list '+l' or large_list '+L' of those)"

/* The result type: create from a finished ArrowArray and its schema (both moved in). */
extern PyTypeObject MlpResultType;
PyObject* MlpResultNew(struct ArrowSchema* schema, struct ArrowArray* array);
int MlpResultTypeReady(PyObject* module);

/* A fixed-width output column of `length` rows with a validity bitmap, allocated with the GIL
 * held and filled without it. */
typedef struct {
  struct ArrowSchema schema;
  struct ArrowArray array;
  void* values;      /* length * element size bytes */
  uint8_t* validity; /* (length + 7) / 8 bytes, zeroed */
  int64_t length;
} MlpOutput;

int MlpOutputInit(MlpOutput* out, enum ArrowType type, int64_t length);
/* Finish with `null_count` nulls (the validity buffer is dropped when there are none) and wrap
 * into an MlpResult; releases `out` on failure. */
PyObject* MlpOutputFinish(MlpOutput* out, int64_t null_count);
void MlpOutputRelease(MlpOutput* out);

/* Split [0, n) into at most `threads` contiguous ranges, each starting on a multiple of
 * `align` rows, and run fn(ctx, index, begin, end) on each, in pthreads when more than one.
 * Must be called without the GIL. Returns 0, or -1 when a thread could not start (the work is
 * then done on the calling thread, so results never depend on it). */
typedef void (*MlpRangeFn)(void* ctx, int index, int64_t begin, int64_t end);
int MlpParallelFor(int threads, int64_t n, int64_t align, MlpRangeFn fn, void* ctx);

/* The UTF-8 text of a repr() result, or "?" (never NULL; clears any error). */
const char* MlpReprText(PyObject* repr);

/* Parse a threads= argument: None -> 1, otherwise an int >= 1 (capped at 256). */
int MlpParseThreads(PyObject* obj, const char* func, int* out);

#endif
