/* Iceberg's bucket[N] partition transform, as the Iceberg table spec defines it:
 * (murmur3_x86_32(bytes, seed 0) & Integer.MAX_VALUE) % N, where the bytes are
 * - int and long values (and date days, time and timestamp microseconds): the value as an 8-byte
 *   little-endian long;
 * - strings: their UTF-8 bytes; binary and fixed: the bytes themselves.
 * Timestamps and times in other units are converted to microseconds first (nanoseconds by floor
 * division, as Iceberg's timestamp_ns does); date64 milliseconds to days by floor division. */
#define _POSIX_C_SOURCE 200809L

#include <string.h>

#include "mlp_columns.h"
#include "mlp_kernels.h"

#define MLP_BUCKET_BLOCK_ROWS 4096

static inline uint32_t Rotl32(uint32_t x, int r) { return (x << r) | (x >> (32 - r)); }

static inline uint32_t Fmix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

static inline uint32_t MixK1(uint32_t k1) {
  k1 *= 0xcc9e2d51u;
  k1 = Rotl32(k1, 15);
  k1 *= 0x1b873593u;
  return k1;
}

static inline uint32_t MixH1(uint32_t h1, uint32_t k1) {
  h1 ^= k1;
  h1 = Rotl32(h1, 13);
  return h1 * 5u + 0xe6546b64u;
}

static inline uint32_t Load32(const uint8_t* p) {
  /* Little-endian regardless of the host. */
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint32_t Murmur3Bytes(const uint8_t* data, int64_t n) {
  uint32_t h1 = 0;
  int64_t blocks = n / 4;
  for (int64_t i = 0; i < blocks; i++) h1 = MixH1(h1, MixK1(Load32(data + 4 * i)));
  const uint8_t* tail = data + blocks * 4;
  uint32_t k1 = 0;
  switch (n & 3) {
    case 3:
      k1 ^= (uint32_t)tail[2] << 16;
      /* fall through */
    case 2:
      k1 ^= (uint32_t)tail[1] << 8;
      /* fall through */
    case 1:
      k1 ^= tail[0];
      h1 ^= MixK1(k1);
      break;
    default:
      break;
  }
  h1 ^= (uint32_t)n;
  return Fmix32(h1);
}

static inline uint32_t Murmur3Long(int64_t value) {
  uint64_t bits = (uint64_t)value;
  uint32_t h1 = MixH1(0, MixK1((uint32_t)bits));
  h1 = MixH1(h1, MixK1((uint32_t)(bits >> 32)));
  h1 ^= 8u;
  return Fmix32(h1);
}

/* n_mask is n - 1 when n is a power of two (the usual bucket counts), else 0: a mask then
 * gives the same result as the modulo without a division per value. */
static inline int32_t BucketOf(uint32_t hash, uint32_t n, uint32_t n_mask) {
  uint32_t positive = hash & 0x7fffffffu;
  return (int32_t)(n_mask != 0 ? positive & n_mask : positive % n);
}

static inline int64_t FloorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

typedef enum {
  MLP_BUCKET_LONG,  /* integer storage, hashed as a long after scaling */
  MLP_BUCKET_BYTES, /* string / binary storage */
} MlpBucketKind;

typedef struct {
  const MlpColumn* column;
  MlpBucketKind kind;
  int64_t multiply; /* long value = floor(value * multiply / divide) */
  int64_t divide;
  uint32_t num_buckets;
  uint32_t num_buckets_mask;
  int32_t* out;
  uint8_t* validity;
  int has_nulls;
} MlpBucketTask;

static void BucketRange(void* ctx, int index, int64_t begin, int64_t end) {
  MlpBucketTask* task = (MlpBucketTask*)ctx;
  const MlpColumn* column = task->column;
  const uint32_t n_buckets = task->num_buckets;
  const uint32_t n_mask = task->num_buckets_mask;
  if (begin >= end) return;
  int64_t chunk = MlpColumnChunkOf(column, begin);
  int64_t row = begin;
  while (row < end) {
    while (column->starts[chunk + 1] <= row) chunk++;
    int64_t stop = column->starts[chunk + 1] < end ? column->starts[chunk + 1] : end;
    const struct ArrowArrayView* view = &column->views[chunk];
    int64_t local = row - column->starts[chunk];
    int nullable = view->buffer_views[0].data.data != NULL;
    int64_t n = stop - row;
    int32_t* out = task->out + row;
    if (task->kind == MLP_BUCKET_LONG) {
      for (int64_t i = 0; i < n; i++) {
        int64_t value = ArrowArrayViewGetIntUnsafe(view, local + i);
        /* Wrapping multiply, as Java's long arithmetic does; never undefined behaviour. */
        if (task->multiply != 1) value = (int64_t)((uint64_t)value * (uint64_t)task->multiply);
        if (task->divide != 1) value = FloorDiv(value, task->divide);
        out[i] = BucketOf(Murmur3Long(value), n_buckets, n_mask);
      }
    } else {
      for (int64_t i = 0; i < n; i++) {
        if (nullable && ArrowArrayViewIsNull(view, local + i)) continue;
        struct ArrowBufferView bytes = ArrowArrayViewGetBytesUnsafe(view, local + i);
        out[i] = BucketOf(Murmur3Bytes(bytes.data.as_uint8, bytes.size_bytes), n_buckets,
                          n_mask);
      }
    }
    /* Output nulls are the input's; without any, MlpOutputFinish drops the bitmap. */
    if (task->has_nulls && !nullable) {
      ArrowBitsSetTo(task->validity, row, n, 1);
    } else if (task->has_nulls) {
      for (int64_t i = 0; i < n; i++) {
        if (ArrowArrayViewIsNull(view, local + i)) {
          out[i] = 0;
        } else {
          ArrowBitSet(task->validity, row + i);
        }
      }
    }
    row = stop;
  }
}

static const enum ArrowType MlpBucketTypes[] = {
    NANOARROW_TYPE_INT8,          NANOARROW_TYPE_INT16,        NANOARROW_TYPE_INT32,
    NANOARROW_TYPE_INT64,         NANOARROW_TYPE_UINT8,        NANOARROW_TYPE_UINT16,
    NANOARROW_TYPE_UINT32,        NANOARROW_TYPE_DATE32,       NANOARROW_TYPE_DATE64,
    NANOARROW_TYPE_TIME32,        NANOARROW_TYPE_TIME64,       NANOARROW_TYPE_TIMESTAMP,
    NANOARROW_TYPE_STRING,        NANOARROW_TYPE_LARGE_STRING, NANOARROW_TYPE_STRING_VIEW,
    NANOARROW_TYPE_BINARY,        NANOARROW_TYPE_LARGE_BINARY, NANOARROW_TYPE_BINARY_VIEW,
    NANOARROW_TYPE_FIXED_SIZE_BINARY, NANOARROW_TYPE_UNINITIALIZED};

#define MLP_BUCKET_EXPECTED                                                                \
  "an int8/16/32/64, uint8/16/32, date32/date64, time32/time64, timestamp, string, "     \
  "large_string, string_view, binary, large_binary, binary_view or fixed_size_binary column"

PyObject* MlpIcebergBucket(PyObject* self, PyObject* args, PyObject* kwargs) {
  static char* keywords[] = {"values", "num_buckets", "threads", NULL};
  const char* func = "iceberg_bucket";
  PyObject* values;
  PyObject* num_buckets_obj;
  PyObject* threads_obj = Py_None;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|$O:iceberg_bucket", keywords, &values,
                                   &num_buckets_obj, &threads_obj)) {
    return NULL;
  }
  if (!PyLong_Check(num_buckets_obj) || PyBool_Check(num_buckets_obj)) {
    return MlpRaise("%s() argument 'num_buckets': expected an int in [1, 2147483647], got %s",
                    func, Py_TYPE(num_buckets_obj)->tp_name);
  }
  long long num_buckets = PyLong_AsLongLong(num_buckets_obj);
  if (num_buckets == -1 && PyErr_Occurred()) {
    PyErr_Clear();
    num_buckets = -2;
  }
  if (num_buckets < 1 || num_buckets > 2147483647LL) {
    PyObject* repr = PyObject_Repr(num_buckets_obj);
    MlpRaise("%s() argument 'num_buckets': expected an int in [1, 2147483647], got %s", func,
             MlpReprText(repr));
    Py_XDECREF(repr);
    return NULL;
  }
  int threads;
  if (MlpParseThreads(threads_obj, func, &threads) != 0) return NULL;

  MlpColumn column;
  if (MlpColumnOpen(values, func, "values", MlpBucketTypes, MLP_BUCKET_EXPECTED, &column) != 0) {
    return NULL;
  }
  MlpBucketTask* task = PyMem_Calloc(1, sizeof(MlpBucketTask));
  if (task == NULL) {
    MlpColumnClose(&column);
    return PyErr_NoMemory();
  }
  task->column = &column;
  task->num_buckets = (uint32_t)num_buckets;
  task->num_buckets_mask =
      (num_buckets & (num_buckets - 1)) == 0 ? (uint32_t)(num_buckets - 1) : 0;
  task->multiply = 1;
  task->divide = 1;
  task->kind = MLP_BUCKET_LONG;
  switch (column.type) {
    case NANOARROW_TYPE_STRING:
    case NANOARROW_TYPE_LARGE_STRING:
    case NANOARROW_TYPE_STRING_VIEW:
    case NANOARROW_TYPE_BINARY:
    case NANOARROW_TYPE_LARGE_BINARY:
    case NANOARROW_TYPE_BINARY_VIEW:
    case NANOARROW_TYPE_FIXED_SIZE_BINARY:
      task->kind = MLP_BUCKET_BYTES;
      break;
    case NANOARROW_TYPE_DATE64:
      task->divide = 86400000; /* milliseconds to days */
      break;
    case NANOARROW_TYPE_TIME32:
    case NANOARROW_TYPE_TIME64:
    case NANOARROW_TYPE_TIMESTAMP:
      if (column.time_unit == NANOARROW_TIME_UNIT_SECOND) task->multiply = 1000000;
      if (column.time_unit == NANOARROW_TIME_UNIT_MILLI) task->multiply = 1000;
      if (column.time_unit == NANOARROW_TIME_UNIT_NANO) task->divide = 1000;
      break;
    default:
      break;
  }
  MlpOutput out;
  if (MlpOutputInit(&out, NANOARROW_TYPE_INT32, column.length) != 0) {
    PyMem_Free(task);
    MlpColumnClose(&column);
    return NULL;
  }
  task->out = (int32_t*)out.values;
  task->validity = out.validity;
  task->has_nulls = column.null_count > 0;
  int64_t nulls = column.null_count;
  Py_BEGIN_ALLOW_THREADS;
  MlpParallelFor(threads, column.length, MLP_BUCKET_BLOCK_ROWS, BucketRange, task);
  Py_END_ALLOW_THREADS;
  PyMem_Free(task);
  MlpColumnClose(&column);
  return MlpOutputFinish(&out, nulls);
}
