#include "mlp_arrow.h"

#include <stdarg.h>
#include <string.h>

PyObject* MlpArrowKernelError = NULL;

PyObject* MlpRaise(const char* fmt, ...) {
  char message[1024];
  va_list args;
  va_start(args, fmt);
  vsnprintf(message, sizeof(message), fmt, args);
  va_end(args);
  PyErr_SetString(MlpArrowKernelError, message);
  return NULL;
}

void MlpSchemaDescribe(const struct ArrowSchema* schema, char* out, size_t n) {
  if (schema == NULL || schema->release == NULL || schema->format == NULL) {
    snprintf(out, n, "<released schema>");
    return;
  }
  snprintf(out, n, "%s", schema->format);
}

void MlpChunkedInputRelease(MlpChunkedInput* input) {
  if (input->chunks != NULL) {
    for (int64_t i = 0; i < input->n_chunks; i++) {
      if (input->chunks[i].release != NULL) {
        input->chunks[i].release(&input->chunks[i]);
      }
    }
    PyMem_Free(input->chunks);
    input->chunks = NULL;
  }
  if (input->schema.release != NULL) {
    input->schema.release(&input->schema);
  }
  input->n_chunks = 0;
  input->length = 0;
}

static int AppendChunk(MlpChunkedInput* input, struct ArrowArray* array, int64_t* capacity) {
  if (input->n_chunks == *capacity) {
    int64_t new_capacity = *capacity == 0 ? 4 : *capacity * 2;
    struct ArrowArray* grown =
        PyMem_Realloc(input->chunks, (size_t)new_capacity * sizeof(struct ArrowArray));
    if (grown == NULL) {
      PyErr_NoMemory();
      return -1;
    }
    input->chunks = grown;
    *capacity = new_capacity;
  }
  ArrowArrayMove(array, &input->chunks[input->n_chunks]);
  input->length += input->chunks[input->n_chunks].length;
  input->n_chunks++;
  return 0;
}

/* Move the struct out of a capsule; the producer's capsule destructor then sees a released
 * struct and does nothing, as the PyCapsule protocol intends. */
static void* CapsulePointer(PyObject* capsule, const char* name, const char* func,
                            const char* argname) {
  if (!PyCapsule_IsValid(capsule, name)) {
    MlpRaise("%s() argument '%s': expected a PyCapsule named '%s' from the Arrow PyCapsule "
             "protocol",
             func, argname, name);
    return NULL;
  }
  return PyCapsule_GetPointer(capsule, name);
}

static int ImportArray(PyObject* obj, const char* func, const char* argname,
                       MlpChunkedInput* out) {
  PyObject* pair = PyObject_CallMethod(obj, "__arrow_c_array__", NULL);
  if (pair == NULL) return -1;
  if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
    Py_DECREF(pair);
    MlpRaise("%s() argument '%s': __arrow_c_array__() must return a (schema, array) tuple",
             func, argname);
    return -1;
  }
  struct ArrowSchema* schema =
      CapsulePointer(PyTuple_GET_ITEM(pair, 0), "arrow_schema", func, argname);
  struct ArrowArray* array =
      schema == NULL ? NULL
                     : CapsulePointer(PyTuple_GET_ITEM(pair, 1), "arrow_array", func, argname);
  if (array == NULL) {
    Py_DECREF(pair);
    return -1;
  }
  ArrowSchemaMove(schema, &out->schema);
  int64_t capacity = 0;
  int rc = AppendChunk(out, array, &capacity);
  Py_DECREF(pair);
  return rc;
}

static int ImportStream(PyObject* obj, const char* func, const char* argname,
                        MlpChunkedInput* out) {
  PyObject* capsule = PyObject_CallMethod(obj, "__arrow_c_stream__", NULL);
  if (capsule == NULL) return -1;
  struct ArrowArrayStream* source =
      CapsulePointer(capsule, "arrow_array_stream", func, argname);
  if (source == NULL) {
    Py_DECREF(capsule);
    return -1;
  }
  struct ArrowArrayStream stream;
  ArrowArrayStreamMove(source, &stream);
  Py_DECREF(capsule);

  int rc = 0;
  int code;
  /* The producer may call back into Python (polars, pyarrow readers), so the GIL stays held. */
  code = stream.get_schema(&stream, &out->schema);
  if (code != 0) {
    const char* detail = stream.get_last_error(&stream);
    MlpRaise("%s() argument '%s': reading the stream's schema failed: %s", func, argname,
             detail ? detail : strerror(code));
    rc = -1;
  }
  int64_t capacity = 0;
  while (rc == 0) {
    struct ArrowArray chunk;
    chunk.release = NULL;
    code = stream.get_next(&stream, &chunk);
    if (code != 0) {
      const char* detail = stream.get_last_error(&stream);
      MlpRaise("%s() argument '%s': reading the stream failed: %s", func, argname,
               detail ? detail : strerror(code));
      rc = -1;
      break;
    }
    if (chunk.release == NULL) break; /* end of stream */
    if (AppendChunk(out, &chunk, &capacity) != 0) {
      chunk.release(&chunk);
      rc = -1;
    }
  }
  stream.release(&stream);
  return rc;
}

int MlpChunkedInputImport(PyObject* obj, const char* func, const char* argname,
                          MlpChunkedInput* out) {
  memset(out, 0, sizeof(*out));
  int rc;
  if (PyObject_HasAttrString(obj, "__arrow_c_array__")) {
    rc = ImportArray(obj, func, argname, out);
  } else if (PyObject_HasAttrString(obj, "__arrow_c_stream__")) {
    rc = ImportStream(obj, func, argname, out);
  } else {
    MlpRaise("%s() argument '%s': expected an Arrow array or stream (an object with "
             "__arrow_c_array__ or __arrow_c_stream__, such as a pyarrow Array or ChunkedArray, "
             "a polars Series or a nanoarrow array), got %s",
             func, argname, Py_TYPE(obj)->tp_name);
    return -1;
  }
  if (rc != 0) {
    MlpChunkedInputRelease(out);
    return -1;
  }
  MlpSchemaDescribe(&out->schema, out->format, sizeof(out->format));
  return 0;
}
