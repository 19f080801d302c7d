/* The airflow_provider_mlp.kernels._native module: method table and initialisation. */
#include "mlp_kernels.h"

static PyMethodDef MlpNativeMethods[] = {
    {"array_stats", (PyCFunction)(void (*)(void))MlpArrayStats, METH_VARARGS | METH_KEYWORDS,
     "array_stats(values) -> (length, null_count) of an Arrow array or stream."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MlpNativeModule = {
    PyModuleDef_HEAD_INIT, "_native",
    "Arrow kernels on nanoarrow, fed through the Arrow PyCapsule protocol.", -1,
    MlpNativeMethods,
};

PyMODINIT_FUNC PyInit__native(void) {
  /* The exception type is defined in Python so that the pure-Python reference kernels raise
   * exactly the same type. */
  PyObject* errors = PyImport_ImportModule("airflow_provider_mlp.kernels.errors");
  if (errors == NULL) return NULL;
  MlpArrowKernelError = PyObject_GetAttrString(errors, "ArrowKernelError");
  Py_DECREF(errors);
  if (MlpArrowKernelError == NULL) return NULL;

  PyObject* module = PyModule_Create(&MlpNativeModule);
  if (module == NULL) return NULL;
  if (PyModule_AddStringConstant(module, "NANOARROW_VERSION", NANOARROW_VERSION) != 0) {
    Py_DECREF(module);
    return NULL;
  }
  return module;
}
