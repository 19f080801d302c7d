/* Column access, Arrow output (the MlpResult type) and pthread range splitting. */
#define _POSIX_C_SOURCE 200809L

#include "mlp_columns.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

const enum ArrowType MlpStringTypes[] = {NANOARROW_TYPE_STRING, NANOARROW_TYPE_LARGE_STRING,
                                         NANOARROW_TYPE_STRING_VIEW,
                                         NANOARROW_TYPE_UNINITIALIZED};
const enum ArrowType MlpTextTypes[] = {NANOARROW_TYPE_STRING,      NANOARROW_TYPE_LARGE_STRING,
                                       NANOARROW_TYPE_STRING_VIEW, NANOARROW_TYPE_LIST,
                                       NANOARROW_TYPE_LARGE_LIST,  NANOARROW_TYPE_UNINITIALIZED};

/* ------------------------------------------------------------------------------------------ */
/* Columns                                                                                    */

void MlpColumnClose(MlpColumn* column) {
  if (column->views != NULL) {
    for (int64_t i = 0; i < column->n_views; i++) ArrowArrayViewReset(&column->views[i]);
    PyMem_Free(column->views);
    column->views = NULL;
  }
  PyMem_Free(column->starts);
  column->starts = NULL;
  MlpChunkedInputRelease(&column->input);
}

int MlpColumnOpen(PyObject* obj, const char* func, const char* argname,
                  const enum ArrowType* accepted, const char* expected, MlpColumn* out) {
  memset(out, 0, sizeof(*out));
  if (MlpChunkedInputImport(obj, func, argname, &out->input) != 0) return -1;

  struct ArrowError error;
  error.message[0] = '\0';
  struct ArrowSchemaView schema_view;
  if (ArrowSchemaViewInit(&schema_view, &out->input.schema, &error) != NANOARROW_OK) {
    MlpRaise("%s() argument '%s': unsupported Arrow type with format '%s' (%s); expected %s",
             func, argname, out->input.format, error.message, expected);
    MlpColumnClose(out);
    return -1;
  }
  int ok = 0;
  for (const enum ArrowType* t = accepted; *t != NANOARROW_TYPE_UNINITIALIZED; t++) {
    if (*t == schema_view.type) ok = 1;
  }
  if (!ok) {
    /* A dictionary's type is NANOARROW_TYPE_DICTIONARY, which no kernel accepts. */
    MlpRaise("%s() argument '%s': unsupported Arrow type with format '%s'%s; expected %s", func,
             argname, out->input.format,
             schema_view.type == NANOARROW_TYPE_DICTIONARY ? " (dictionary-encoded)" : "", expected);
    MlpColumnClose(out);
    return -1;
  }
  out->type = schema_view.type;
  out->time_unit = schema_view.time_unit;

  int64_t n = out->input.n_chunks;
  out->views = PyMem_Calloc((size_t)(n > 0 ? n : 1), sizeof(struct ArrowArrayView));
  out->starts = PyMem_Calloc((size_t)n + 1, sizeof(int64_t));
  if (out->views == NULL || out->starts == NULL) {
    PyErr_NoMemory();
    MlpColumnClose(out);
    return -1;
  }
  int64_t row = 0;
  for (int64_t i = 0; i < n; i++) {
    /* Views are initialised one by one so that Close resets exactly the initialised ones. */
    int ok = ArrowArrayViewInitFromSchema(&out->views[i], &out->input.schema, &error) ==
             NANOARROW_OK;
    /* A view that failed to initialise has already been reset by nanoarrow. */
    if (ok) out->n_views = i + 1;
    if (!ok ||
        ArrowArrayViewSetArray(&out->views[i], &out->input.chunks[i], &error) != NANOARROW_OK) {
      MlpRaise("%s() argument '%s': invalid Arrow array with format '%s' in chunk %lld: %s",
               func, argname, out->input.format, (long long)i, error.message);
      MlpColumnClose(out);
      return -1;
    }
    out->starts[i] = row;
    row += out->input.chunks[i].length;
    out->null_count += ArrowArrayViewComputeNullCount(&out->views[i]);
  }
  out->starts[n] = row;
  out->length = row;
  return 0;
}

int64_t MlpColumnChunkOf(const MlpColumn* column, int64_t row) {
  int64_t lo = 0;
  int64_t hi = column->input.n_chunks - 1;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo + 1) / 2;
    if (column->starts[mid] <= row) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  /* lo is the last chunk starting at or before row: empty chunks before it are skipped already. */
  return lo;
}

/* ------------------------------------------------------------------------------------------ */
/* The result type                                                                            */

typedef struct {
  PyObject_HEAD
  struct ArrowSchema schema;
  struct ArrowArray array;
} MlpResultObject;

/* What an exported ArrowArray keeps alive: the result object (its buffers) and the exported
 * buffer pointer list. */
typedef struct {
  PyObject* owner;
  const void* buffers[4];
} MlpExportData;

static void MlpExportedArrayRelease(struct ArrowArray* array) {
  if (array->release == NULL) return;
  MlpExportData* data = (MlpExportData*)array->private_data;
  /* Consumers may release from any thread, with or without the GIL. */
  PyGILState_STATE gil = PyGILState_Ensure();
  Py_DECREF(data->owner);
  PyGILState_Release(gil);
  free(data);
  array->release = NULL;
}

static void MlpSchemaCapsuleDestructor(PyObject* capsule) {
  struct ArrowSchema* schema = PyCapsule_GetPointer(capsule, "arrow_schema");
  if (schema == NULL) {
    PyErr_Clear();
    return;
  }
  if (schema->release != NULL) schema->release(schema);
  free(schema);
}

static void MlpArrayCapsuleDestructor(PyObject* capsule) {
  struct ArrowArray* array = PyCapsule_GetPointer(capsule, "arrow_array");
  if (array == NULL) {
    PyErr_Clear();
    return;
  }
  if (array->release != NULL) array->release(array);
  free(array);
}

static PyObject* MlpResultSchemaCapsule(MlpResultObject* self) {
  struct ArrowSchema* schema = malloc(sizeof(struct ArrowSchema));
  if (schema == NULL) return PyErr_NoMemory();
  if (ArrowSchemaDeepCopy(&self->schema, schema) != NANOARROW_OK) {
    free(schema);
    return PyErr_NoMemory();
  }
  PyObject* capsule = PyCapsule_New(schema, "arrow_schema", MlpSchemaCapsuleDestructor);
  if (capsule == NULL) {
    schema->release(schema);
    free(schema);
  }
  return capsule;
}

static PyObject* MlpResultArrowCSchema(MlpResultObject* self, PyObject* Py_UNUSED(ignored)) {
  return MlpResultSchemaCapsule(self);
}

static PyObject* MlpResultArrowCArray(MlpResultObject* self, PyObject* args, PyObject* kwargs) {
  static char* keywords[] = {"requested_schema", NULL};
  PyObject* requested = Py_None;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O:__arrow_c_array__", keywords,
                                   &requested)) {
    return NULL;
  }
  /* A requested schema is a hint; returning the array as it is, is allowed by the protocol. */
  PyObject* schema_capsule = MlpResultSchemaCapsule(self);
  if (schema_capsule == NULL) return NULL;

  struct ArrowArray* exported = malloc(sizeof(struct ArrowArray));
  MlpExportData* data = malloc(sizeof(MlpExportData));
  if (exported == NULL || data == NULL) {
    free(exported);
    free(data);
    Py_DECREF(schema_capsule);
    return PyErr_NoMemory();
  }
  const struct ArrowArray* source = &self->array;
  /* Result arrays are flat (no children, no dictionary), so a shallow export that shares the
   * buffers and keeps the owner alive is complete. */
  memset(data->buffers, 0, sizeof(data->buffers));
  for (int64_t i = 0; i < source->n_buffers && i < 4; i++) data->buffers[i] = source->buffers[i];
  data->owner = (PyObject*)self;
  Py_INCREF(self);
  exported->length = source->length;
  exported->null_count = source->null_count;
  exported->offset = source->offset;
  exported->n_buffers = source->n_buffers;
  exported->n_children = 0;
  exported->buffers = data->buffers;
  exported->children = NULL;
  exported->dictionary = NULL;
  exported->release = MlpExportedArrayRelease;
  exported->private_data = data;

  PyObject* array_capsule = PyCapsule_New(exported, "arrow_array", MlpArrayCapsuleDestructor);
  if (array_capsule == NULL) {
    exported->release(exported);
    free(exported);
    Py_DECREF(schema_capsule);
    return NULL;
  }
  return Py_BuildValue("(NN)", schema_capsule, array_capsule);
}

static Py_ssize_t MlpResultLength(MlpResultObject* self) { return (Py_ssize_t)self->array.length; }

static PyObject* MlpResultGetFormat(MlpResultObject* self, void* Py_UNUSED(closure)) {
  return PyUnicode_FromString(self->schema.format);
}

static PyObject* MlpResultGetNullCount(MlpResultObject* self, void* Py_UNUSED(closure)) {
  return PyLong_FromLongLong((long long)self->array.null_count);
}

static PyObject* MlpResultRepr(MlpResultObject* self) {
  return PyUnicode_FromFormat("<ArrowResult format='%s' length=%lld null_count=%lld>",
                              self->schema.format, (long long)self->array.length,
                              (long long)self->array.null_count);
}

static void MlpResultDealloc(MlpResultObject* self) {
  if (self->array.release != NULL) self->array.release(&self->array);
  if (self->schema.release != NULL) self->schema.release(&self->schema);
  Py_TYPE(self)->tp_free((PyObject*)self);
}

static PyMethodDef MlpResultMethods[] = {
    {"__arrow_c_array__", (PyCFunction)(void (*)(void))MlpResultArrowCArray,
     METH_VARARGS | METH_KEYWORDS,
     "__arrow_c_array__(requested_schema=None) -> (schema capsule, array capsule), sharing "
     "this result's buffers."},
    {"__arrow_c_schema__", (PyCFunction)MlpResultArrowCSchema, METH_NOARGS,
     "__arrow_c_schema__() -> schema capsule."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef MlpResultGetSet[] = {
    {"format", (getter)MlpResultGetFormat, NULL, "The Arrow format string of the result.", NULL},
    {"null_count", (getter)MlpResultGetNullCount, NULL, "The number of null values.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods MlpResultSequence = {
    .sq_length = (lenfunc)MlpResultLength,
};

PyTypeObject MlpResultType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "airflow_provider_mlp.kernels._native.ArrowResult",
    .tp_basicsize = sizeof(MlpResultObject),
    .tp_dealloc = (destructor)MlpResultDealloc,
    .tp_repr = (reprfunc)MlpResultRepr,
    .tp_as_sequence = &MlpResultSequence,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A kernel's output: an Arrow array owned in C, exported zero-copy through "
              "__arrow_c_array__ (pyarrow.array(result), polars.Series(result)).",
    .tp_methods = MlpResultMethods,
    .tp_getset = MlpResultGetSet,
};

int MlpResultTypeReady(PyObject* module) {
  if (PyType_Ready(&MlpResultType) < 0) return -1;
  Py_INCREF(&MlpResultType);
  if (PyModule_AddObject(module, "ArrowResult", (PyObject*)&MlpResultType) < 0) {
    Py_DECREF(&MlpResultType);
    return -1;
  }
  return 0;
}

PyObject* MlpResultNew(struct ArrowSchema* schema, struct ArrowArray* array) {
  MlpResultObject* self = PyObject_New(MlpResultObject, &MlpResultType);
  if (self == NULL) {
    array->release(array);
    schema->release(schema);
    return NULL;
  }
  ArrowSchemaMove(schema, &self->schema);
  ArrowArrayMove(array, &self->array);
  return (PyObject*)self;
}

/* ------------------------------------------------------------------------------------------ */
/* Outputs                                                                                    */

void MlpOutputRelease(MlpOutput* out) {
  if (out->array.release != NULL) out->array.release(&out->array);
  if (out->schema.release != NULL) out->schema.release(&out->schema);
}

int MlpOutputInit(MlpOutput* out, enum ArrowType type, int64_t length) {
  memset(out, 0, sizeof(*out));
  out->length = length;
  if (ArrowSchemaInitFromType(&out->schema, type) != NANOARROW_OK ||
      ArrowArrayInitFromType(&out->array, type) != NANOARROW_OK) {
    MlpOutputRelease(out);
    PyErr_NoMemory();
    return -1;
  }
  struct ArrowBuffer* values = ArrowArrayBuffer(&out->array, 1);
  int64_t element_size = 0;
  switch (type) {
    case NANOARROW_TYPE_DOUBLE:
    case NANOARROW_TYPE_INT64:
      element_size = 8;
      break;
    case NANOARROW_TYPE_INT32:
      element_size = 4;
      break;
    default:
      MlpOutputRelease(out);
      PyErr_SetString(PyExc_SystemError, "MlpOutputInit: unsupported output type");
      return -1;
  }
  struct ArrowBitmap* validity = ArrowArrayValidityBitmap(&out->array);
  int64_t rows = length > 0 ? length : 1;
  if (ArrowBufferReserve(values, rows * element_size) != NANOARROW_OK ||
      ArrowBitmapReserve(validity, rows) != NANOARROW_OK) {
    MlpOutputRelease(out);
    PyErr_NoMemory();
    return -1;
  }
  values->size_bytes = length * element_size;
  memset(validity->buffer.data, 0, (size_t)((rows + 7) / 8));
  validity->buffer.size_bytes = (length + 7) / 8;
  validity->size_bits = length;
  out->values = values->data;
  out->validity = validity->buffer.data;
  return 0;
}

PyObject* MlpOutputFinish(MlpOutput* out, int64_t null_count) {
  if (null_count == 0) {
    /* No nulls: drop the bitmap, as Arrow producers usually do. */
    ArrowBitmapReset(ArrowArrayValidityBitmap(&out->array));
  }
  out->array.length = out->length;
  out->array.null_count = null_count;
  struct ArrowError error;
  error.message[0] = '\0';
  if (ArrowArrayFinishBuildingDefault(&out->array, &error) != NANOARROW_OK) {
    MlpOutputRelease(out);
    return MlpRaise("internal error building the result array: %s", error.message);
  }
  return MlpResultNew(&out->schema, &out->array);
}

/* ------------------------------------------------------------------------------------------ */
/* Threads                                                                                    */

typedef struct {
  MlpRangeFn fn;
  void* ctx;
  int index;
  int64_t begin;
  int64_t end;
} MlpRangeTask;

static void* MlpRangeThreadMain(void* arg) {
  MlpRangeTask* task = (MlpRangeTask*)arg;
  task->fn(task->ctx, task->index, task->begin, task->end);
  return NULL;
}

int MlpParallelFor(int threads, int64_t n, int64_t align, MlpRangeFn fn, void* ctx) {
  if (align < 1) align = 1;
  int64_t blocks = (n + align - 1) / align;
  if (threads > blocks) threads = (int)(blocks > 0 ? blocks : 1);
  if (threads <= 1) {
    fn(ctx, 0, 0, n);
    return 0;
  }
  MlpRangeTask tasks[256];
  pthread_t ids[256];
  int started[256];
  for (int t = 0; t < threads; t++) {
    int64_t begin = (blocks * t / threads) * align;
    int64_t end = (blocks * (t + 1) / threads) * align;
    if (end > n) end = n;
    tasks[t].fn = fn;
    tasks[t].ctx = ctx;
    tasks[t].index = t;
    tasks[t].begin = begin;
    tasks[t].end = end;
  }
  int rc = 0;
  /* Task 0 runs on the calling thread. */
  for (int t = 1; t < threads; t++) {
    started[t] = pthread_create(&ids[t], NULL, MlpRangeThreadMain, &tasks[t]) == 0;
    if (!started[t]) rc = -1;
  }
  MlpRangeThreadMain(&tasks[0]);
  for (int t = 1; t < threads; t++) {
    if (started[t]) {
      pthread_join(ids[t], NULL);
    } else {
      MlpRangeThreadMain(&tasks[t]);
    }
  }
  return rc;
}

int MlpParseThreads(PyObject* obj, const char* func, int* out) {
  if (obj == NULL || obj == Py_None) {
    *out = 1;
    return 0;
  }
  if (!PyLong_Check(obj) || PyBool_Check(obj)) {
    MlpRaise("%s() argument 'threads': expected an int >= 1 or None, got %s", func,
             Py_TYPE(obj)->tp_name);
    return -1;
  }
  long long value = PyLong_AsLongLong(obj);
  if (value == -1 && PyErr_Occurred()) {
    PyErr_Clear();
    value = 1LL << 40;
  }
  if (value < 1) {
    MlpRaise("%s() argument 'threads': expected an int >= 1 or None, got %lld", func, value);
    return -1;
  }
  *out = value > 256 ? 256 : (int)value;
  return 0;
}

const char* MlpReprText(PyObject* repr) {
  const char* text = repr != NULL ? PyUnicode_AsUTF8(repr) : NULL;
  if (text == NULL) {
    PyErr_Clear();
    return "?";
  }
  return text;
}
