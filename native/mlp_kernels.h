/* Declarations of every kernel the module exports; each lives in its own .c file. */
#ifndef MLP_KERNELS_H_INCLUDED
#define MLP_KERNELS_H_INCLUDED

#include "mlp_arrow.h"

PyObject* MlpArrayStats(PyObject* self, PyObject* args, PyObject* kwargs);
PyObject* MlpJaroWinklerSimilarity(PyObject* self, PyObject* args, PyObject* kwargs);
PyObject* MlpLevenshteinSimilarity(PyObject* self, PyObject* args, PyObject* kwargs);
PyObject* MlpMatchPairs(PyObject* self, PyObject* args, PyObject* kwargs);
PyObject* MlpIcebergBucket(PyObject* self, PyObject* args, PyObject* kwargs);
PyObject* MlpDecodeParquetColumn(PyObject* self, PyObject* args, PyObject* kwargs);

/* The output buffer cache (buffer_cache.c). */
int MlpBufferCacheInit(void);
/* `size` bytes as `buffer`'s memory, from the cache (or malloc, when small): 0, or -1 when out
 * of memory (no Python error set). */
int MlpBufferCacheReserve(struct ArrowBuffer* buffer, int64_t size);
PyObject* MlpTrimBufferCache(PyObject* self, PyObject* args, PyObject* kwargs);
PyObject* MlpSetBufferCacheLimit(PyObject* self, PyObject* args, PyObject* kwargs);
PyObject* MlpBufferCacheInfo(PyObject* self, PyObject* ignored);

/* libzstd's one-shot decompression, loaded at first use (zstd_library.c). */
typedef struct {
  void* (*create)(void);
  size_t (*release)(void* context);
  size_t (*decompress)(void* context, void* destination, size_t capacity, const void* source,
                       size_t size);
  unsigned (*is_error)(size_t code);
  const char* (*error_name)(size_t code);
  unsigned (*version)(void);
} MlpZstd;
/* With the GIL: the library's functions, or NULL when no libzstd could be loaded. */
const MlpZstd* MlpZstdLibrary(void);
PyObject* MlpZstdLibraryVersion(PyObject* self, PyObject* ignored);

#endif
