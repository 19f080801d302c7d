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

#endif
