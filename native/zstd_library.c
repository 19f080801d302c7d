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
#include <string.h>

#include "mlp_kernels.h"

/* The names the shared library has: Linux's soname first, then macOS's, then unversioned ones. */
static const char* const MlpZstdNames[] = {
    "libzstd.so.1", "libzstd.1.dylib", "libzstd.so", "libzstd.dylib", NULL,
};

static MlpZstd MlpZstdLoaded;
static int MlpZstdTried = 0;

/* dlsym's object pointer into the function pointer at `slot`: copied, as ISO C has no conversion
 * between the two (POSIX guarantees their representations agree). */
static void Bind(void* handle, const char* name, void* slot, int* missing) {
  void* found = dlsym(handle, name);
  if (found == NULL) *missing = 1;
  memcpy(slot, &found, sizeof(found));
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
  Bind(handle, "ZSTD_createDCtx", &loaded.create, &missing);
  Bind(handle, "ZSTD_freeDCtx", &loaded.release, &missing);
  Bind(handle, "ZSTD_decompressDCtx", &loaded.decompress, &missing);
  Bind(handle, "ZSTD_isError", &loaded.is_error, &missing);
  Bind(handle, "ZSTD_getErrorName", &loaded.error_name, &missing);
  Bind(handle, "ZSTD_versionNumber", &loaded.version, &missing);
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
