/* libzstd, loaded at run time, for decode_parquet_column's zstd pages.
 *
 * Why: a zstd page handed to a Python callable (zstandard's decompressor) costs a call into
 * Python with the GIL for each page (pyiceberg writes pages of 20,000 rows: thousands a read),
 * and the GIL taken back twice more per page: the two decoding threads wait on each other. With
 * libzstd's own one-shot API the kernel decompresses a page without the GIL, and without
 * leaving C, straight into the output array or its scratch buffer.
 *
 * Why loaded and not linked: the extension then builds where zstd's headers are not installed,
 * and imports where libzstd is not, whose pages go to the Python callable as before
 * (zstd_library_version() says None). Only functions of zstd's stable API are used, each as
 * declared in zstd.h since 1.0. */
#define _POSIX_C_SOURCE 200809L

#include <dlfcn.h>
#include <stdio.h>

#include "mlp_kernels.h"

/* The names the shared library has: Linux's soname first, then macOS's, then unversioned ones. */
static const char* const MlpZstdNames[] = {
    "libzstd.so.1", "libzstd.1.dylib", "libzstd.so", "libzstd.dylib", NULL,
};

static MlpZstd MlpZstdLoaded;
static int MlpZstdTried = 0;

static void* Symbol(void* handle, const char* name, int* missing) {
  void* found = dlsym(handle, name);
  if (found == NULL) *missing = 1;
  return found;
}

const MlpZstd* MlpZstdLibrary(void) {
  if (MlpZstdTried) return MlpZstdLoaded.decompress != NULL ? &MlpZstdLoaded : NULL;
  MlpZstdTried = 1;
  void* handle = NULL;
  for (const char* const* name = MlpZstdNames; *name != NULL && handle == NULL; name++) {
    handle = dlopen(*name, RTLD_NOW | RTLD_LOCAL);
  }
  if (handle == NULL) return NULL;
  MlpZstd loaded;
  int missing = 0;
  /* (Object pointers converted to function pointers, as POSIX's dlsym requires of callers.) */
  *(void**)&loaded.create = Symbol(handle, "ZSTD_createDCtx", &missing);
  *(void**)&loaded.release = Symbol(handle, "ZSTD_freeDCtx", &missing);
  *(void**)&loaded.decompress = Symbol(handle, "ZSTD_decompressDCtx", &missing);
  *(void**)&loaded.is_error = Symbol(handle, "ZSTD_isError", &missing);
  *(void**)&loaded.error_name = Symbol(handle, "ZSTD_getErrorName", &missing);
  *(void**)&loaded.version = Symbol(handle, "ZSTD_versionNumber", &missing);
  if (missing) {
    dlclose(handle);
    return NULL;
  }
  MlpZstdLoaded = loaded;
  return &MlpZstdLoaded;
}

PyObject* MlpZstdLibraryVersion(PyObject* self, PyObject* ignored) {
  const MlpZstd* zstd = MlpZstdLibrary();
  if (zstd == NULL) Py_RETURN_NONE;
  unsigned version = zstd->version();
  return PyUnicode_FromFormat("%u.%u.%u", version / 10000, version / 100 % 100, version % 100);
}
