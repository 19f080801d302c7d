/* decode_parquet_byte_array: one Parquet column chunk of a flat BYTE_ARRAY column (a string or
 * binary column that is not nested) straight into Arrow's large_string / large_binary.
 *
 * Why: the projected schema of an Iceberg read has large strings (pyiceberg's schema), and the
 * fastest general decoder here (polars') decodes into string views, which then cost a second
 * pass and a second allocation to become large strings. Decoding each page into the large
 * layout while the page is still in cache does the work once.
 *
 * What is decoded: data pages v1 and v2, PLAIN and dictionary (PLAIN_DICTIONARY/RLE_DICTIONARY)
 * values, a dictionary page, definition levels of an optional column (max level 1, RLE hybrid).
 * Anything else (DELTA_* encodings, repeated columns, BIT_PACKED levels) raises ArrowKernelError
 * and the caller decodes the chunk another way. Decompression is the caller's: `decompress` (or
 * `decompress_into`, which writes into memory the kernel gives it: the output array itself for
 * PLAIN fixed-width pages without nulls) is called per page with the GIL, so any codec the
 * caller has works; it is expected to release the GIL itself while it works (pyarrow's Codec and
 * zstandard do). Except zstd pages with zstd=True: libzstd (zstd_library.c) decompresses them
 * where decompress_into's would land, without the GIL and without a call into Python.
 *
 * Every length, offset and index read from the file is checked against the bytes present: a
 * corrupt chunk gives an error naming the page, never a read outside the buffers. String values
 * are checked to be UTF-8, as Arrow's string type requires.
 *
 * With a selection (a bitmap of the chunk's rows), only the selected rows are output: a filtered
 * read then copies only the rows its filter keeps, and skips the pages where it keeps none. */
#define _POSIX_C_SOURCE 200809L

#include <string.h>

#include "mlp_columns.h"
#include "mlp_kernels.h"

#define MLP_FUNC "decode_parquet_column"
/* Bytes of slack after the dictionary and the output data, so that short values are copied as
 * one fixed 16-byte move rather than a variable-length memcpy. */
#define MLP_COPY_SLACK 16
#define MLP_THRIFT_MAX_DEPTH 32
/* A page whose codec gave another size than its header states. */
#define MLP_SHORT_PAGE "page %lld decompressed to %lld bytes, its header says %lld"

enum { PAGE_DATA = 0, PAGE_INDEX = 1, PAGE_DICTIONARY = 2, PAGE_DATA_V2 = 3 };
enum { ENC_PLAIN = 0, ENC_PLAIN_DICTIONARY = 2, ENC_RLE = 3, ENC_RLE_DICTIONARY = 8 };

/* ---------------------------------------------------------------------------------------- */
/* Thrift compact protocol: just enough for PageHeader                                       */

typedef struct {
  const uint8_t* pos;
  const uint8_t* end;
  int failed;
} MlpReader;

static uint64_t ReadVarint(MlpReader* r) {
  uint64_t value = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (r->pos >= r->end) break;
    uint8_t byte = *r->pos++;
    value |= (uint64_t)(byte & 0x7f) << shift;
    if (!(byte & 0x80)) return value;
  }
  r->failed = 1;
  return 0;
}

static int64_t ReadZigzag(MlpReader* r) {
  uint64_t value = ReadVarint(r);
  return (int64_t)(value >> 1) ^ -(int64_t)(value & 1);
}

static void Skip(MlpReader* r, int type, int depth);

static void SkipBytes(MlpReader* r, uint64_t n) {
  if (n > (uint64_t)(r->end - r->pos)) {
    r->failed = 1;
    r->pos = r->end;
  } else {
    r->pos += n;
  }
}

/* Reads a field header: returns its type (0 at the struct's end) and updates *id. */
static int ReadFieldHeader(MlpReader* r, int16_t* id) {
  if (r->pos >= r->end) {
    r->failed = 1;
    return 0;
  }
  uint8_t header = *r->pos++;
  if (header == 0) return 0;
  int delta = header >> 4;
  *id = delta ? (int16_t)(*id + delta) : (int16_t)ReadZigzag(r);
  return header & 0x0f;
}

static void SkipStruct(MlpReader* r, int depth) {
  int16_t id = 0;
  int type;
  while (!r->failed && (type = ReadFieldHeader(r, &id)) != 0) Skip(r, type, depth + 1);
}

static void Skip(MlpReader* r, int type, int depth) {
  if (depth > MLP_THRIFT_MAX_DEPTH) {
    r->failed = 1;
    return;
  }
  switch (type) {
    case 1: /* boolean true, in the field header */
    case 2: /* boolean false */
      return;
    case 3: /* byte */
      SkipBytes(r, 1);
      return;
    case 4: /* i16 */
    case 5: /* i32 */
    case 6: /* i64 */
      ReadVarint(r);
      return;
    case 7: /* double */
      SkipBytes(r, 8);
      return;
    case 8: /* binary */
      SkipBytes(r, ReadVarint(r));
      return;
    case 9: /* list */
    case 10: { /* set */
      if (r->pos >= r->end) {
        r->failed = 1;
        return;
      }
      uint8_t header = *r->pos++;
      uint64_t n = header >> 4;
      int element = header & 0x0f;
      if (n == 15) n = ReadVarint(r);
      for (uint64_t i = 0; i < n && !r->failed; i++) {
        /* Booleans in a list are one byte each. */
        if (element == 1 || element == 2) SkipBytes(r, 1);
        else Skip(r, element, depth + 1);
      }
      return;
    }
    case 11: { /* map */
      uint64_t n = ReadVarint(r);
      if (n == 0 || r->failed) return;
      if (r->pos >= r->end) {
        r->failed = 1;
        return;
      }
      uint8_t types = *r->pos++;
      for (uint64_t i = 0; i < n && !r->failed; i++) {
        int key = types >> 4, value = types & 0x0f;
        if (key == 1 || key == 2) SkipBytes(r, 1);
        else Skip(r, key, depth + 1);
        if (value == 1 || value == 2) SkipBytes(r, 1);
        else Skip(r, value, depth + 1);
      }
      return;
    }
    case 12: /* struct */
      SkipStruct(r, depth);
      return;
    default:
      r->failed = 1;
  }
}

typedef struct {
  int32_t type;
  int32_t uncompressed_size;
  int32_t compressed_size;
  int32_t num_values;
  int32_t encoding;
  int32_t definition_level_encoding; /* v1 */
  int32_t definition_levels_bytes;   /* v2 */
  int32_t repetition_levels_bytes;   /* v2 */
  int is_compressed;                 /* v2; v1 pages are always compressed (by the codec) */
  const uint8_t* payload;
} MlpPage;

static int32_t ReadI32(MlpReader* r) { return (int32_t)ReadZigzag(r); }

/* DataPageHeader (5), DictionaryPageHeader (7) or DataPageHeaderV2 (8). */
static void ReadPageSubheader(MlpReader* r, MlpPage* page, int16_t which) {
  int16_t id = 0;
  int type;
  while (!r->failed && (type = ReadFieldHeader(r, &id)) != 0) {
    if (which == 8) {
      if (type == 5 && id >= 1 && id <= 6) {
        int32_t value = ReadI32(r);
        if (id == 1) page->num_values = value;
        else if (id == 4) page->encoding = value;
        else if (id == 5) page->definition_levels_bytes = value;
        else if (id == 6) page->repetition_levels_bytes = value;
        /* 2: num_nulls and 3: num_rows follow from the levels. */
      } else if (id == 7 && (type == 1 || type == 2)) {
        page->is_compressed = type == 1;
      } else {
        Skip(r, type, 1);
      }
    } else if (type == 5 && id == 1) {
      page->num_values = ReadI32(r);
    } else if (type == 5 && id == 2) {
      page->encoding = ReadI32(r);
    } else if (which == 5 && type == 5 && id == 3) {
      page->definition_level_encoding = ReadI32(r);
    } else {
      Skip(r, type, 1);
    }
  }
}

static int ReadPageHeader(MlpReader* r, MlpPage* page) {
  memset(page, 0, sizeof(*page));
  page->type = -1;
  page->is_compressed = 1;
  page->definition_level_encoding = ENC_RLE;
  int16_t id = 0;
  int type;
  while (!r->failed && (type = ReadFieldHeader(r, &id)) != 0) {
    if (type == 5 && id == 1) page->type = ReadI32(r);
    else if (type == 5 && id == 2) page->uncompressed_size = ReadI32(r);
    else if (type == 5 && id == 3) page->compressed_size = ReadI32(r);
    else if (type == 12 && (id == 5 || id == 7 || id == 8)) ReadPageSubheader(r, page, id);
    else Skip(r, type, 0);
  }
  if (r->failed || page->compressed_size < 0 || page->uncompressed_size < 0 ||
      page->num_values < 0 || page->compressed_size > r->end - r->pos ||
      page->definition_levels_bytes < 0 || page->repetition_levels_bytes < 0) {
    return -1;
  }
  page->payload = r->pos;
  r->pos += page->compressed_size;
  return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* RLE / bit-packed hybrid, read a block at a time                                          */

typedef struct {
  const uint8_t* pos; /* the next run's header */
  const uint8_t* end;
  int bit_width;
  uint32_t mask;
  uint64_t repeat_left; /* values left in the current RLE run */
  uint32_t repeat_value;
  uint64_t packed_left; /* values left in the current bit-packed run */
  uint64_t packed_bit;  /* where the next of them starts, in bits from packed */
  const uint8_t* packed;
  const uint8_t* packed_end; /* the run's data, cut at the end of the data */
  int failed;
} MlpHybrid;

static void HybridInit(MlpHybrid* h, const uint8_t* data, const uint8_t* end, int bit_width) {
  memset(h, 0, sizeof(*h));
  h->pos = data;
  h->end = end;
  h->bit_width = bit_width;
  h->mask = bit_width == 0 ? 0u : (bit_width >= 32 ? 0xffffffffu : ((1u << bit_width) - 1u));
}

/* Eight bit-packed values of a fixed width from in[0, width + 8): one unaligned load each, at
 * offsets and shifts the compiler knows (one function per width). */
#define MLP_UNPACK8(W)                                                               \
  static void Unpack8Width##W(const uint8_t* in, int32_t* out) {                     \
    for (int i = 0; i < 8; i++) {                                                    \
      uint64_t word;                                                                 \
      memcpy(&word, in + (i * (W)) / 8, 8);                                          \
      out[i] = (int32_t)((word >> ((i * (W)) % 8)) & (uint64_t)(((uint64_t)1 << (W)) - 1)); \
    }                                                                                \
  }
MLP_UNPACK8(1) MLP_UNPACK8(2) MLP_UNPACK8(3) MLP_UNPACK8(4) MLP_UNPACK8(5) MLP_UNPACK8(6)
MLP_UNPACK8(7) MLP_UNPACK8(8) MLP_UNPACK8(9) MLP_UNPACK8(10) MLP_UNPACK8(11) MLP_UNPACK8(12)
MLP_UNPACK8(13) MLP_UNPACK8(14) MLP_UNPACK8(15) MLP_UNPACK8(16) MLP_UNPACK8(17) MLP_UNPACK8(18)
MLP_UNPACK8(19) MLP_UNPACK8(20) MLP_UNPACK8(21) MLP_UNPACK8(22) MLP_UNPACK8(23) MLP_UNPACK8(24)
MLP_UNPACK8(25) MLP_UNPACK8(26) MLP_UNPACK8(27) MLP_UNPACK8(28) MLP_UNPACK8(29) MLP_UNPACK8(30)
MLP_UNPACK8(31) MLP_UNPACK8(32)
#undef MLP_UNPACK8

typedef void (*MlpUnpack8)(const uint8_t* in, int32_t* out);
static const MlpUnpack8 MlpUnpack8ByWidth[33] = {
    NULL,           Unpack8Width1,  Unpack8Width2,  Unpack8Width3,  Unpack8Width4,
    Unpack8Width5,  Unpack8Width6,  Unpack8Width7,  Unpack8Width8,  Unpack8Width9,
    Unpack8Width10, Unpack8Width11, Unpack8Width12, Unpack8Width13, Unpack8Width14,
    Unpack8Width15, Unpack8Width16, Unpack8Width17, Unpack8Width18, Unpack8Width19,
    Unpack8Width20, Unpack8Width21, Unpack8Width22, Unpack8Width23, Unpack8Width24,
    Unpack8Width25, Unpack8Width26, Unpack8Width27, Unpack8Width28, Unpack8Width29,
    Unpack8Width30, Unpack8Width31, Unpack8Width32};

/* Fills out[0, n); returns how many values it could: fewer only when the data ends or is
 * corrupt (h->failed). The last bit-packed run may be cut short at the end of the data (writers
 * may leave off its last group's padding): only values actually read must be present. */
static int64_t HybridRead(MlpHybrid* h, int32_t* out, int64_t n) {
  int64_t filled = 0;
  int width = h->bit_width;
  while (filled < n && !h->failed) {
    if (h->repeat_left > 0) {
      uint64_t take = h->repeat_left < (uint64_t)(n - filled) ? h->repeat_left : (uint64_t)(n - filled);
      for (uint64_t i = 0; i < take; i++) out[filled++] = (int32_t)h->repeat_value;
      h->repeat_left -= take;
      continue;
    }
    if (h->packed_left > 0) {
      uint64_t take = h->packed_left < (uint64_t)(n - filled) ? h->packed_left : (uint64_t)(n - filled);
      uint64_t available = (uint64_t)(h->packed_end - h->packed);
      uint64_t bit = h->packed_bit;
      uint64_t i = 0;
      /* One value at a time up to the next group of 8 (a run starts at a group's first value),
       * then whole groups while 8 bytes more are there, then one at a time again. */
      uint64_t head = 0;
      if (width > 0 && width <= 32) head = (8 - (bit / (uint64_t)width) % 8) % 8;
      for (int phase = 0; phase < 3; phase++) {
        uint64_t stop = phase == 0 ? (head < take ? head : take) : take;
        if (phase == 1) {
          if (width > 0 && width <= 32) {
            MlpUnpack8 unpack = MlpUnpack8ByWidth[width];
            uint64_t group_bits = 8 * (uint64_t)width;
            while (take - i >= 8 && (bit >> 3) + (uint64_t)width + 8 <= available) {
              unpack(h->packed + (bit >> 3), out + filled);
              filled += 8;
              i += 8;
              bit += group_bits;
            }
          }
          continue;
        }
        for (; i < stop; i++, bit += (uint64_t)width) {
          uint64_t byte = bit >> 3;
          uint64_t word = 0;
          /* One unaligned 64-bit load while 8 bytes remain (a value of <= 32 bits spans at most 5
           * bytes); byte by byte near the end. */
          if (byte + 8 <= available) {
            memcpy(&word, h->packed + byte, 8);
          } else {
            if (((bit + (uint64_t)width + 7) >> 3) > available) {
              h->failed = 1;
              break;
            }
            for (uint64_t b = 0; byte + b < available && b < 8; b++) {
              word |= (uint64_t)h->packed[byte + b] << (8 * b);
            }
          }
          out[filled++] = (int32_t)((word >> (bit & 7)) & h->mask);
        }
        if (h->failed) break;
      }
      if (h->failed) break;
      h->packed_bit = bit;
      h->packed_left -= take;
      continue;
    }
    MlpReader r = {h->pos, h->end, 0};
    if (r.pos >= r.end) {
      h->failed = 1;
      break;
    }
    uint64_t header = ReadVarint(&r);
    if (r.failed) {
      h->failed = 1;
      break;
    }
    if (header & 1) {
      uint64_t groups = header >> 1;
      uint64_t remaining = (uint64_t)(r.end - r.pos);
      uint64_t bytes = groups > remaining ? remaining : groups * (uint64_t)width;
      if (bytes > remaining) bytes = remaining;
      h->packed = r.pos;
      h->packed_end = r.pos + bytes;
      h->packed_bit = 0;
      /* (Clamped: a count this large can only be corrupt, and fails on reading past the data.) */
      h->packed_left = groups > ((uint64_t)1 << 40) ? ((uint64_t)1 << 43) : groups * 8;
      h->pos = h->packed_end;
    } else {
      int value_bytes = (width + 7) / 8;
      if (value_bytes > r.end - r.pos) {
        h->failed = 1;
        break;
      }
      uint32_t value = 0;
      for (int b = 0; b < value_bytes; b++) value |= (uint32_t)r.pos[b] << (8 * b);
      if (value > h->mask) {
        h->failed = 1;
        break;
      }
      h->repeat_value = value;
      h->repeat_left = header >> 1;
      h->pos = r.pos + value_bytes;
    }
  }
  return filled;
}

/* Whether the levels are one RLE run of `value` covering at least n entries (the usual case of
 * a page with no null): then they need not be expanded. */
static int SingleRun(const uint8_t* data, const uint8_t* end, int64_t n, uint32_t value) {
  MlpReader r = {data, end, 0};
  uint64_t header = ReadVarint(&r);
  return !r.failed && !(header & 1) && (header >> 1) >= (uint64_t)n && r.pos < end &&
         *r.pos == value;
}

/* ---------------------------------------------------------------------------------------- */
/* UTF-8                                                                                     */

static int ValidUtf8(const uint8_t* s, int64_t n) {
  int64_t i = 0;
  while (i < n) {
    /* ASCII 32 and then 8 bytes at a time: the common case. */
    if (i + 32 <= n) {
      uint64_t words[4];
      memcpy(words, s + i, 32);
      if (((words[0] | words[1] | words[2] | words[3]) & 0x8080808080808080ull) == 0) {
        i += 32;
        continue;
      }
    }
    if (i + 8 <= n) {
      uint64_t word;
      memcpy(&word, s + i, 8);
      if ((word & 0x8080808080808080ull) == 0) {
        i += 8;
        continue;
      }
    }
    uint8_t c = s[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    int len;
    uint32_t cp;
    if ((c & 0xe0) == 0xc0) {
      len = 2;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return 0;
    }
    if (i + len > n) return 0;
    for (int k = 1; k < len; k++) {
      if ((s[i + k] & 0xc0) != 0x80) return 0;
      cp = (cp << 6) | (s[i + k] & 0x3f);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
      return 0;
    }
    i += len;
  }
  return 1;
}

/* ---------------------------------------------------------------------------------------- */
/* Output memory from the caller                                                             */

/* A buffer allocated by the caller's `allocate(size)` (pyarrow's memory pool, say, which reuses
 * freed memory where malloc would map fresh pages for every large allocation), held until Arrow
 * releases the array. */
typedef struct {
  Py_buffer view;
  PyObject* owner;
} MlpPyMemory;

static void PyMemoryFree(struct ArrowBufferAllocator* allocator, uint8_t* ptr, int64_t size) {
  (void)ptr;
  (void)size;
  MlpPyMemory* memory = (MlpPyMemory*)allocator->private_data;
  /* Arrow may release the array on any thread, with or without the GIL. */
  PyGILState_STATE state = PyGILState_Ensure();
  PyBuffer_Release(&memory->view);
  Py_DECREF(memory->owner);
  PyGILState_Release(state);
  PyMem_RawFree(memory);
}

/* With the GIL: `size` bytes from allocate() as `buffer`'s memory. 0, or -1 with an error set. */
static int PyAllocate(PyObject* allocate, int64_t size, struct ArrowBuffer* buffer) {
  MlpPyMemory* memory = (MlpPyMemory*)PyMem_RawMalloc(sizeof(MlpPyMemory));
  if (memory == NULL) {
    PyErr_NoMemory();
    return -1;
  }
  PyObject* owner = PyObject_CallFunction(allocate, "L", (long long)size);
  if (owner == NULL) {
    PyMem_RawFree(memory);
    return -1;
  }
  if (PyObject_GetBuffer(owner, &memory->view, PyBUF_WRITABLE) != 0) {
    Py_DECREF(owner);
    PyMem_RawFree(memory);
    return -1;
  }
  if (memory->view.len < size) {
    long long got = (long long)memory->view.len;
    PyBuffer_Release(&memory->view);
    Py_DECREF(owner);
    PyMem_RawFree(memory);
    MlpRaise(MLP_FUNC "(): allocate(%lld) returned %lld bytes", (long long)size, got);
    return -1;
  }
  memory->owner = owner;
  ArrowBufferReset(buffer);
  ArrowBufferSetAllocator(buffer, ArrowBufferDeallocator(PyMemoryFree, memory));
  buffer->data = (uint8_t*)memory->view.buf;
  buffer->capacity_bytes = (int64_t)memory->view.len;
  buffer->size_bytes = 0;
  return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* The decoder                                                                               */

/* Levels and indices are expanded this many values at a time, on the stack. */
#define MLP_BLOCK_ROWS 1024
/* The output is a list of arrays, each buffer of which is at most about this large (the offsets
 * 8 bytes more; the data more when one block of values needs it): a size the buffer cache keeps
 * (up to 16 MiB, buffer_cache.c), and a whole row group's chunk of a million 8-byte values.
 * Arrays of 4 MiB read the benchmark table's projection 5-6 % slower (more arrays to hand over,
 * more mappings made while other threads fault pages in); 8 and 12 MiB measured alike. */
#define MLP_CHUNK_BYTES ((int64_t)8 << 20)

typedef struct {
  int64_t num_values; /* the chunk's */
  int max_definition_level;
  int is_string;
  int width; /* bytes per value of a fixed-width column; 0 for BYTE_ARRAY */
  enum ArrowType type;
  PyObject* allocate; /* Py_None: the buffer cache (buffer_cache.c) */
  PyObject* decompress_into; /* Py_None, or decompress_into(data, size, out) -> bytes written */
  /* Pages compressed with zstd, decompressed by libzstd (zstd_library.c) in this context, without
   * the GIL: NULL unless zstd=True. */
  const MlpZstd* zstd;
  void* zstd_context;
  /* NULL: every row of the chunk is output. Else bit r (Arrow's bit order) says whether row r is:
   * the others are read past, never copied, and a page none of whose rows is kept is not even
   * decompressed. */
  const uint8_t* selection;
  int64_t consumed;     /* rows of the chunk read so far (rows itself, without a selection) */
  int64_t output_rows;  /* rows the output will hold: the chunk's, or those selected */
  /* The working memory, from the buffer cache like the outputs (allocating it afresh for every
   * column chunk faulted in a page-sized dictionary and scratch page each time: a fifth of a
   * filtered read's page faults): the pages decompressed when not in place, and the dictionary. */
  struct ArrowBuffer scratch_memory, dictionary_memory, dictionary_offsets_memory;
  uint8_t* scratch;   /* decompress_into's or libzstd's pages, when not decompressed in place */
  int64_t scratch_capacity;
  /* The dictionary, unpacked: entry k is dictionary[offsets[k], offsets[k + 1]) (BYTE_ARRAY),
   * or the width bytes at k * width. */
  uint8_t* dictionary;
  int64_t* dictionary_offsets;
  int32_t dictionary_size;
  int64_t dictionary_longest;
  int64_t rows;         /* values output so far */
  PyObject* outputs;    /* the finished arrays (ArrowResult) */
  /* The output array being filled: rows [start, rows) of the column chunk. */
  int open;
  struct ArrowSchema schema;
  struct ArrowArray array;
  int64_t start;
  int64_t capacity;     /* rows */
  uint8_t* values;      /* fixed width: capacity * width */
  int64_t* offsets;     /* BYTE_ARRAY: capacity + 1 */
  uint8_t* data;        /* data_capacity bytes + MLP_COPY_SLACK */
  int64_t data_capacity;
  int64_t data_size;
  uint8_t* validity;    /* NULL until the first null */
  int64_t null_count;
  int python_error;     /* a Python error is set (allocate, decompress_into or libzstd failed) */
  char message[256];
} MlpColumnDecoder;

/* `size` bytes of working memory as `buffer`'s (its previous memory back to the cache first), or
 * NULL when out of memory; without the GIL too. */
static uint8_t* WorkingMemory(struct ArrowBuffer* buffer, int64_t size) {
  ArrowBufferReset(buffer);
  return MlpBufferCacheReserve(buffer, size) == 0 ? buffer->data : NULL;
}

static void DecoderRelease(MlpColumnDecoder* d) {
  ArrowBufferReset(&d->scratch_memory);
  ArrowBufferReset(&d->dictionary_memory);
  ArrowBufferReset(&d->dictionary_offsets_memory);
  if (d->zstd_context != NULL) d->zstd->release(d->zstd_context);
  if (d->array.release != NULL) d->array.release(&d->array);
  if (d->schema.release != NULL) d->schema.release(&d->schema);
  Py_CLEAR(d->outputs);
}

static int Fail(MlpColumnDecoder* d, int64_t page, const char* what) {
  snprintf(d->message, sizeof(d->message), "page %lld: %s", (long long)page, what);
  return -1;
}

/* How many rows of [start, start + n) the selection keeps: n without one. */
static int64_t SelectedIn(const MlpColumnDecoder* d, int64_t start, int64_t n) {
  if (d->selection == NULL) return n;
  const uint8_t* bits = d->selection;
  int64_t row = start;
  int64_t end = start + n;
  int64_t count = 0;
  while (row < end && (row & 7) != 0) {
    count += (bits[row >> 3] >> (row & 7)) & 1;
    row++;
  }
  for (; end - row >= 64; row += 64) {
    uint64_t word;
    memcpy(&word, bits + (row >> 3), 8);
    count += __builtin_popcountll(word);
  }
  for (; end - row >= 8; row += 8) count += __builtin_popcount(bits[row >> 3]);
  for (; row < end; row++) count += (bits[row >> 3] >> (row & 7)) & 1;
  return count;
}

/* Selection bytes [at, at + 8) as one word, bit r of the word the row at bit r (Arrow's order,
 * whatever the host's byte order); bytes past the selection's end read as 0. */
static inline uint64_t SelectionWord(const MlpColumnDecoder* d, int64_t at) {
  int64_t left = (d->num_values + 7) / 8 - at;
  uint64_t word = 0;
  if (left >= 8) {
    for (int i = 0; i < 8; i++) word |= (uint64_t)d->selection[at + i] << (8 * i);
  } else {
    for (int64_t i = 0; i < left; i++) word |= (uint64_t)d->selection[at + i] << (8 * i);
  }
  return word;
}

/* The selection of the m (at most MLP_BLOCK_ROWS) rows from the current one: bit k % 64 of
 * words[k / 64] and keep[k] (a byte a row) say whether row k is kept; returns how many. */
static int64_t BlockSelection(const MlpColumnDecoder* d, int64_t m, uint64_t* words, uint8_t* keep) {
  int64_t row = d->consumed;
  int shift = (int)(row & 7);
  int64_t at = row >> 3;
  int64_t kept = 0;
  for (int64_t w = 0; 64 * w < m; w++) {
    uint64_t word = SelectionWord(d, at + 8 * w) >> shift;
    if (shift != 0) word |= SelectionWord(d, at + 8 * w + 8) << (64 - shift);
    int64_t left = m - 64 * w;
    if (left < 64) word &= ((uint64_t)1 << left) - 1;
    words[w] = word;
    kept += __builtin_popcountll(word);
    /* Eight rows a step, without a load per row. */
    for (int b = 0; b < 8; b++) {
      uint32_t byte = (uint32_t)(word >> (8 * b)) & 0xffu;
      uint8_t* out = keep + 64 * w + 8 * b;
      for (int i = 0; i < 8; i++) out[i] = (uint8_t)((byte >> i) & 1u);
    }
  }
  return kept;
}

/* A fixed-width value: widths are 4 and 8 bytes, each copied as one move. */
static inline void CopyValue(uint8_t* out, const uint8_t* in, int width) {
  if (width == 8) memcpy(out, in, 8);
  else memcpy(out, in, 4);
}

/* With the GIL: `size` bytes of `buffer`, from allocate() or the buffer cache. */
static int Reserve(MlpColumnDecoder* d, struct ArrowBuffer* buffer, int64_t size) {
  if (d->allocate != Py_None) return PyAllocate(d->allocate, size, buffer);
  if (MlpBufferCacheReserve(buffer, size) != 0) {
    PyErr_NoMemory();
    return -1;
  }
  return 0;
}

/* With the GIL: a new output array for at most `rows` values (and `data_bytes` of them). */
static int OpenOutput(MlpColumnDecoder* d, int64_t rows, int64_t data_bytes) {
  if (ArrowSchemaInitFromType(&d->schema, d->type) != NANOARROW_OK ||
      ArrowArrayInitFromType(&d->array, d->type) != NANOARROW_OK) {
    PyErr_NoMemory();
    return -1;
  }
  d->open = 1;
  d->start = d->rows;
  d->capacity = rows;
  d->data_size = 0;
  d->validity = NULL;
  d->null_count = 0;
  struct ArrowBuffer* first = ArrowArrayBuffer(&d->array, 1);
  if (d->width > 0) {
    /* (One value's slack: selected values are written without a branch, each over the place
     * of the next, which may be just past the last.) */
    if (Reserve(d, first, rows * d->width + (d->selection != NULL ? 8 : 0)) != 0) return -1;
    d->values = first->data;
    return 0;
  }
  struct ArrowBuffer* data = ArrowArrayBuffer(&d->array, 2);
  if (Reserve(d, first, 8 * (rows + 1)) != 0 || Reserve(d, data, data_bytes + MLP_COPY_SLACK) != 0) {
    return -1;
  }
  d->offsets = (int64_t*)first->data;
  d->offsets[0] = 0;
  d->data = data->data;
  d->data_capacity = data->capacity_bytes - MLP_COPY_SLACK;
  return 0;
}

/* With the GIL: the open output array, finished, appended to the outputs. */
static int CloseOutput(MlpColumnDecoder* d) {
  int64_t length = d->rows - d->start;
  ArrowArrayBuffer(&d->array, 1)->size_bytes = d->width > 0 ? length * d->width : 8 * (length + 1);
  if (d->width == 0) ArrowArrayBuffer(&d->array, 2)->size_bytes = d->data_size;
  struct ArrowBitmap* bitmap = ArrowArrayValidityBitmap(&d->array);
  if (d->validity == NULL || d->null_count == 0) {
    ArrowBitmapReset(bitmap);
  } else {
    bitmap->buffer.size_bytes = (length + 7) / 8;
    bitmap->size_bits = length;
  }
  d->array.length = length;
  d->array.null_count = d->null_count;
  d->open = 0;
  struct ArrowError error;
  error.message[0] = '\0';
  if (ArrowArrayFinishBuildingDefault(&d->array, &error) != NANOARROW_OK) {
    MlpRaise(MLP_FUNC "(): internal error building the result: %s", error.message);
    return -1;
  }
  PyObject* result = MlpResultNew(&d->schema, &d->array);
  if (result == NULL) return -1;
  int rc = PyList_Append(d->outputs, result);
  Py_DECREF(result);
  return rc;
}

/* Room in the open output array for `rows` more values and `data_bytes` more value bytes, or a
 * new output array. Called without the GIL, which it takes only to change arrays. */
static int EnsureRoom(MlpColumnDecoder* d, int64_t rows, int64_t data_bytes) {
  if (d->open && d->rows - d->start + rows <= d->capacity &&
      (d->width > 0 || data_bytes <= d->data_capacity - d->data_size)) {
    return 0;
  }
  int64_t most = MLP_CHUNK_BYTES / (d->width > 0 ? d->width : 8);
  int64_t remaining = d->output_rows - d->rows;
  int64_t capacity = remaining < most ? remaining : most;
  if (capacity < rows) capacity = rows;
  /* The data buffer: room for the array's rows at this block's bytes per row and a quarter more
   * (a chunk's short last array holds no more than it needs), at most MLP_CHUNK_BYTES unless this
   * block needs more. Values longer than the estimate just start the next array sooner. */
  int64_t data_capacity = 0;
  if (d->width == 0) {
    double per_row = rows > 0 ? (double)data_bytes / (double)rows : 0.0;
    double wanted = per_row * 1.25 * (double)capacity + 64.0;
    data_capacity = wanted < (double)MLP_CHUNK_BYTES ? (int64_t)wanted : MLP_CHUNK_BYTES;
    if (data_capacity < data_bytes) data_capacity = data_bytes;
  }
  PyGILState_STATE state = PyGILState_Ensure();
  int rc = d->open ? CloseOutput(d) : 0;
  if (rc == 0) rc = OpenOutput(d, capacity, data_capacity);
  PyGILState_Release(state);
  if (rc != 0) d->python_error = 1;
  return rc;
}

static int StartValidity(MlpColumnDecoder* d) {
  struct ArrowBitmap* bitmap = ArrowArrayValidityBitmap(&d->array);
  if (ArrowBitmapReserve(bitmap, d->capacity > 0 ? d->capacity : 1) != NANOARROW_OK) return -1;
  d->validity = bitmap->buffer.data;
  memset(d->validity, 0, (size_t)((d->capacity + 7) / 8));
  /* Every row of this array before now was present. */
  for (int64_t row = 0; row < d->rows - d->start; row++) {
    d->validity[row >> 3] |= (uint8_t)(1u << (row & 7));
  }
  return 0;
}

/* Records the block of m rows of the chunk from the current one, `kept` of which were output
 * (those whose byte in keep is 1; all m when keep is NULL): validity bits, null count, rows. */
static int FinishBlock(MlpColumnDecoder* d, int64_t m, int64_t present, const int32_t* level_block,
                       const uint8_t* keep, int64_t kept) {
  d->consumed += m;
  if (keep == NULL) {
    if (present < m && d->validity == NULL && StartValidity(d) != 0) return -1;
    if (d->validity != NULL) {
      int64_t row = d->rows - d->start;
      for (int64_t k = 0; k < m; k++) {
        if (present == m || level_block[k]) {
          d->validity[(row + k) >> 3] |= (uint8_t)(1u << ((row + k) & 7));
        }
      }
    }
    d->null_count += m - present;
    d->rows += m;
    return 0;
  }
  int64_t kept_present = kept;
  if (present < m) {
    kept_present = 0;
    for (int64_t k = 0; k < m; k++) kept_present += keep[k] & (uint8_t)(level_block[k] != 0);
  }
  if (kept_present < kept && d->validity == NULL && StartValidity(d) != 0) return -1;
  if (d->validity != NULL) {
    int64_t row = d->rows - d->start;
    for (int64_t k = 0; k < m; k++) {
      if (!keep[k]) continue;
      if (present == m || level_block[k]) d->validity[row >> 3] |= (uint8_t)(1u << (row & 7));
      row++;
    }
  }
  d->null_count += kept - kept_present;
  d->rows += kept;
  return 0;
}

static int DecodeDictionary(MlpColumnDecoder* d, int64_t page_index, const MlpPage* page,
                            const uint8_t* body, int64_t size) {
  if (d->dictionary != NULL) return Fail(d, page_index, "a second dictionary page");
  if (d->consumed > 0) return Fail(d, page_index, "a dictionary page after data pages");
  if (page->encoding != ENC_PLAIN && page->encoding != ENC_PLAIN_DICTIONARY) {
    return Fail(d, page_index, "dictionary page not PLAIN-encoded");
  }
  int64_t n = page->num_values;
  if (d->width > 0) {
    if (n > size / d->width) return Fail(d, page_index, "dictionary shorter than its entries");
    d->dictionary = WorkingMemory(&d->dictionary_memory, n * d->width + MLP_COPY_SLACK);
    if (d->dictionary == NULL) return Fail(d, page_index, "out of memory for the dictionary");
    memcpy(d->dictionary, body, (size_t)(n * d->width));
    d->dictionary_size = (int32_t)n;
    return 0;
  }
  /* Every entry has its 4-byte length at least: checked before allocating for n of them. */
  if (n > size / 4) return Fail(d, page_index, "dictionary shorter than its entries");
  d->dictionary = WorkingMemory(&d->dictionary_memory, size + MLP_COPY_SLACK);
  d->dictionary_offsets = (int64_t*)WorkingMemory(&d->dictionary_offsets_memory, 8 * (n + 1));
  if (d->dictionary == NULL || d->dictionary_offsets == NULL) {
    return Fail(d, page_index, "out of memory for the dictionary");
  }
  const uint8_t* p = body;
  const uint8_t* end = body + size;
  int64_t at = 0;
  int split_character = 0;
  d->dictionary_offsets[0] = 0;
  for (int64_t k = 0; k < n; k++) {
    uint32_t length;
    if (end - p < 4) return Fail(d, page_index, "dictionary entry past the page's end");
    memcpy(&length, p, 4);
    p += 4;
    if ((uint64_t)length > (uint64_t)(end - p)) {
      return Fail(d, page_index, "dictionary entry past the page's end");
    }
    if (length > 0 && (p[0] & 0xc0) == 0x80) split_character = 1;
    memcpy(d->dictionary + at, p, length);
    p += length;
    at += length;
    d->dictionary_offsets[k + 1] = at;
    if ((int64_t)length > d->dictionary_longest) d->dictionary_longest = length;
  }
  /* An entry starting inside a character is invalid although all of them together may be
   * valid UTF-8: both are checked, so that every entry is. */
  if (d->is_string && (split_character || !ValidUtf8(d->dictionary, at))) {
    return Fail(d, page_index, "dictionary holds a string that is not valid UTF-8");
  }
  memset(d->dictionary + at, 0, MLP_COPY_SLACK);
  d->dictionary_size = (int32_t)n;
  return 0;
}

/* Starts the indices of a dictionary-coded page: its bit width byte, then the RLE hybrid. */
static int StartIndices(MlpColumnDecoder* d, int64_t page_index, const uint8_t* p,
                        const uint8_t* end, MlpHybrid* indices) {
  if (p >= end) return Fail(d, page_index, "indices past the page's end");
  if (*p > 32) return Fail(d, page_index, "index bit width over 32");
  HybridInit(indices, p + 1, end, *p);
  return 0;
}

/* What a data page's values are read from, set up by DecodeDataPage. */
typedef struct {
  int64_t page_index;
  int64_t n;             /* the page's values, nulls included */
  int all_present;
  MlpHybrid levels;      /* when not all_present */
  int dictionary_coded;
  MlpHybrid indices;     /* once indices_started */
  int indices_started;
  const uint8_t* p;      /* the next PLAIN value */
  const uint8_t* end;
} MlpPageValues;

/* The next m levels (0 null, 1 present) into level_block; returns how many are present, or -1. */
static int64_t ReadLevels(MlpColumnDecoder* d, MlpPageValues* v, int64_t m, int32_t* level_block) {
  if (v->all_present) return m;
  if (HybridRead(&v->levels, level_block, m) != m) {
    return Fail(d, v->page_index, "definition levels cut short or corrupt");
  }
  int64_t present = 0;
  for (int64_t k = 0; k < m; k++) present += level_block[k];
  return present;
}

static int ReadIndices(MlpColumnDecoder* d, MlpPageValues* v, int64_t present, int32_t* index_block) {
  if (present == 0) return 0;
  if (!v->indices_started && StartIndices(d, v->page_index, v->p, v->end, &v->indices) != 0) {
    return -1;
  }
  v->indices_started = 1;
  if (HybridRead(&v->indices, index_block, present) != present) {
    return Fail(d, v->page_index, "indices cut short or corrupt");
  }
  return 0;
}

static int DecodeFixedValues(MlpColumnDecoder* d, MlpPageValues* v) {
  int width = d->width;
  int32_t level_block[MLP_BLOCK_ROWS];
  int32_t index_block[MLP_BLOCK_ROWS];
  uint8_t keep_block[MLP_BLOCK_ROWS];
  uint64_t keep_words[MLP_BLOCK_ROWS / 64];
  uint32_t dictionary_size = (uint32_t)d->dictionary_size;
  for (int64_t done = 0; done < v->n;) {
    /* PLAIN values without nulls or a selection go over in one copy up to the output array's
     * end; the rest a block of levels and indices at a time. */
    int64_t m = v->n - done;
    if ((v->dictionary_coded || !v->all_present || d->selection != NULL) && m > MLP_BLOCK_ROWS) {
      m = MLP_BLOCK_ROWS;
    }
    const uint8_t* keep = NULL; /* NULL: every row of the block is output */
    int64_t kept = m;
    if (d->selection != NULL) {
      kept = BlockSelection(d, m, keep_words, keep_block);
      if (kept < m) keep = keep_block;
    }
    uint8_t* out = NULL;
    if (kept > 0) {
      if (EnsureRoom(d, keep == NULL ? 1 : kept, 0) != 0) return -1;
      if (keep == NULL) {
        int64_t room = d->capacity - (d->rows - d->start);
        if (m > room) m = room;
        kept = m;
      }
      out = d->values + (d->rows - d->start) * width;
    }
    int64_t present = ReadLevels(d, v, m, level_block);
    if (present < 0) return -1;
    if (v->dictionary_coded) {
      if (ReadIndices(d, v, present, index_block) != 0) return -1;
      int64_t next = 0;
      /* Every index is checked, kept or not (the copy below reads the dictionary there). */
      for (int64_t k = 0; k < m; k++) {
        if (present < m && !level_block[k]) {
          if (keep == NULL || keep[k]) {
            memset(out, 0, (size_t)width);
            out += width;
          }
          continue;
        }
        uint32_t index = (uint32_t)index_block[next++];
        if (index >= dictionary_size) {
          return Fail(d, v->page_index, "index past the dictionary's end");
        }
        if (keep == NULL) {
          CopyValue(out, d->dictionary + (int64_t)index * width, width);
          out += width;
        } else if (kept > 0) {
          /* Without a branch: written over the next value's place, kept only if selected. */
          CopyValue(out, d->dictionary + (int64_t)index * width, width);
          out += keep[k] * width;
        }
      }
    } else if (present == m) {
      if (m > (v->end - v->p) / width) return Fail(d, v->page_index, "values past the page's end");
      if (keep == NULL) {
        memcpy(out, v->p, (size_t)(m * width));
      } else if (kept > 0) {
        /* The kept rows only, found a word of the selection at a time. */
        const uint8_t* p = v->p;
        for (int64_t w = 0; 64 * w < m; w++) {
          for (uint64_t word = keep_words[w]; word != 0; word &= word - 1) {
            CopyValue(out, p + (64 * w + __builtin_ctzll(word)) * width, width);
            out += width;
          }
        }
      }
      v->p += m * width;
    } else {
      if (present > (v->end - v->p) / width) {
        return Fail(d, v->page_index, "values past the page's end");
      }
      for (int64_t k = 0; k < m; k++) {
        int selected = keep == NULL || keep[k];
        if (!level_block[k]) {
          if (selected) {
            memset(out, 0, (size_t)width);
            out += width;
          }
          continue;
        }
        if (selected) {
          CopyValue(out, v->p, width);
          out += width;
        }
        v->p += width;
      }
    }
    if (FinishBlock(d, m, present, level_block, keep, kept) != 0) {
      return Fail(d, v->page_index, "out of memory");
    }
    done += m;
  }
  return 0;
}

/* The next PLAIN BYTE_ARRAY value at *p: its 4-byte length read and checked against the page's end,
 * *p left at the value's first byte. 0, or -1 when the page ends first. */
static inline int NextPlainLength(const uint8_t** p, const uint8_t* end, uint32_t* length) {
  if (end - *p < 4) return -1;
  memcpy(length, *p, 4);
  *p += 4;
  return (uint64_t)*length > (uint64_t)(end - *p) ? -1 : 0;
}

/* Dictionary entry `index` (already checked) copied to data + at, whose buffer has MLP_COPY_SLACK
 * spare bytes as the dictionary has: a short entry is one fixed move. Returns the new end. */
static inline int64_t CopyEntry(const MlpColumnDecoder* d, uint8_t* data, int64_t at, uint32_t index) {
  int64_t start = d->dictionary_offsets[index];
  int64_t length = d->dictionary_offsets[index + 1] - start;
  if (length <= MLP_COPY_SLACK) memcpy(data + at, d->dictionary + start, MLP_COPY_SLACK);
  else memcpy(data + at, d->dictionary + start, (size_t)length);
  return at + length;
}

/* A block of m BYTE_ARRAY rows (levels and indices read) of which the selection keeps `kept`, those
 * whose byte in keep is 1: only they are copied. Every PLAIN length and every index is checked,
 * kept or not; only the kept strings are checked to be UTF-8. */
static int SelectByteArrays(MlpColumnDecoder* d, MlpPageValues* v, int64_t m, int64_t present,
                            const int32_t* level_block, const int32_t* index_block,
                            const uint64_t* keep_words, const uint8_t* keep, int64_t kept) {
  const int64_t* entries = d->dictionary_offsets;
  uint32_t dictionary_size = (uint32_t)d->dictionary_size;
  /* Room for the kept values' bytes: an upper bound (as in DecodeByteArrayValues) when the open
   * array has it, else the bytes counted exactly. A block none of whose rows is kept is walked
   * too: for its checks, and to find where a PLAIN page's next value begins. */
  int64_t bound = v->dictionary_coded ? kept * d->dictionary_longest : (v->end - v->p) - 4 * present;
  if (bound < 0) bound = 0;
  int fits = kept > 0 && d->open && d->rows - d->start + kept <= d->capacity &&
             bound <= d->data_capacity - d->data_size;
  int64_t bytes = bound;
  const uint8_t* p = v->p;
  if (!fits) {
    bytes = 0;
    int64_t next = 0;
    for (int64_t k = 0; k < m; k++) {
      if (present < m && !level_block[k]) continue;
      uint32_t length;
      if (v->dictionary_coded) {
        uint32_t index = (uint32_t)index_block[next++];
        if (index >= dictionary_size) return Fail(d, v->page_index, "index past the dictionary's end");
        length = (uint32_t)(entries[index + 1] - entries[index]);
      } else {
        if (NextPlainLength(&p, v->end, &length) != 0) {
          return Fail(d, v->page_index, "value past the page's end");
        }
        p += length;
      }
      if (keep[k]) bytes += length;
    }
  }
  if (kept > 0) {
    if (EnsureRoom(d, kept, bytes) != 0) return -1;
    int64_t* offsets = d->offsets + (d->rows - d->start) + 1;
    uint8_t* data = d->data;
    int64_t at = d->data_size;
    int64_t o = 0;
    int split_character = 0;
    p = v->p;
    int64_t next = 0;
    int64_t walked = m; /* the rows the loop below walks */
    if (v->dictionary_coded && present == m) {
      /* Every index checked at once (a loop without branches), then the kept rows only, found a
       * word of the selection at a time. */
      uint32_t largest = 0;
      for (int64_t k = 0; k < m; k++) {
        uint32_t index = (uint32_t)index_block[k];
        largest = index > largest ? index : largest;
      }
      if (m > 0 && largest >= dictionary_size) {
        return Fail(d, v->page_index, "index past the dictionary's end");
      }
      for (int64_t w = 0; 64 * w < m; w++) {
        for (uint64_t word = keep_words[w]; word != 0; word &= word - 1) {
          at = CopyEntry(d, data, at, (uint32_t)index_block[64 * w + __builtin_ctzll(word)]);
          offsets[o++] = at;
        }
      }
      walked = 0;
    }
    for (int64_t k = 0; k < walked; k++) {
      if (present < m && !level_block[k]) {
        if (keep[k]) offsets[o++] = at;
        continue;
      }
      if (v->dictionary_coded) {
        uint32_t index = (uint32_t)index_block[next++];
        if (index >= dictionary_size) return Fail(d, v->page_index, "index past the dictionary's end");
        if (!keep[k]) continue;
        at = CopyEntry(d, data, at, index);
        offsets[o++] = at;
        continue;
      }
      uint32_t length;
      if (NextPlainLength(&p, v->end, &length) != 0) {
        return Fail(d, v->page_index, "value past the page's end");
      }
      if (keep[k]) {
        if (length > 0 && (p[0] & 0xc0) == 0x80) split_character = 1;
        memcpy(data + at, p, length);
        at += length;
        offsets[o++] = at;
      }
      p += length;
    }
    /* (Dictionary entries were all checked for UTF-8 already.) */
    if (d->is_string && !v->dictionary_coded &&
        (split_character || !ValidUtf8(data + d->data_size, at - d->data_size))) {
      return Fail(d, v->page_index, "a string that is not valid UTF-8");
    }
    d->data_size = at;
  }
  if (!v->dictionary_coded) v->p = p;
  if (FinishBlock(d, m, present, level_block, keep, kept) != 0) {
    return Fail(d, v->page_index, "out of memory");
  }
  return 0;
}

static int DecodeByteArrayValues(MlpColumnDecoder* d, MlpPageValues* v) {
  int32_t level_block[MLP_BLOCK_ROWS];
  int32_t index_block[MLP_BLOCK_ROWS];
  uint8_t keep_block[MLP_BLOCK_ROWS];
  uint64_t keep_words[MLP_BLOCK_ROWS / 64];
  const int64_t* entries = d->dictionary_offsets;
  uint32_t dictionary_size = (uint32_t)d->dictionary_size;
  for (int64_t done = 0; done < v->n;) {
    int64_t m = v->n - done < MLP_BLOCK_ROWS ? v->n - done : MLP_BLOCK_ROWS;
    int64_t present = ReadLevels(d, v, m, level_block);
    if (present < 0) return -1;
    if (d->selection != NULL) {
      int64_t kept = BlockSelection(d, m, keep_words, keep_block);
      if (kept < m) {
        if ((v->dictionary_coded && ReadIndices(d, v, present, index_block) != 0) ||
            SelectByteArrays(d, v, m, present, level_block, index_block, keep_words, keep_block,
                             kept) != 0) {
          return -1;
        }
        done += m;
        continue;
      }
    }
    /* Room for the block's value bytes before any is copied: the open output array has it, or a
     * new one is started. An upper bound (the rest of a PLAIN page, or the longest dictionary
     * entry for each value) usually fits; only when it does not are the bytes counted exactly. */
    int64_t bytes = 0;
    if (v->dictionary_coded && ReadIndices(d, v, present, index_block) != 0) return -1;
    /* (Each present PLAIN value has a 4-byte length before it.) */
    int64_t bound = v->dictionary_coded ? present * d->dictionary_longest : (v->end - v->p) - 4 * present;
    if (bound < 0) bound = 0;
    int fits = d->open && d->rows - d->start + m <= d->capacity &&
               bound <= d->data_capacity - d->data_size;
    if (fits) {
      bytes = bound;
    } else if (v->dictionary_coded) {
      for (int64_t k = 0; k < present; k++) {
        uint32_t index = (uint32_t)index_block[k];
        if (index >= dictionary_size) {
          return Fail(d, v->page_index, "index past the dictionary's end");
        }
        bytes += entries[index + 1] - entries[index];
      }
    } else {
      const uint8_t* p = v->p;
      for (int64_t k = 0; k < present; k++) {
        uint32_t length;
        if (NextPlainLength(&p, v->end, &length) != 0) {
          return Fail(d, v->page_index, "value past the page's end");
        }
        p += length;
        bytes += length;
      }
    }
    if (EnsureRoom(d, m, bytes) != 0) return -1;
    int64_t* offsets = d->offsets + (d->rows - d->start) + 1;
    uint8_t* data = d->data;
    int64_t at = d->data_size;
    if (v->dictionary_coded) {
      int64_t next = 0;
      for (int64_t k = 0; k < m; k++) {
        if (present < m && !level_block[k]) {
          offsets[k] = at;
          continue;
        }
        uint32_t index = (uint32_t)index_block[next++];
        if (index >= dictionary_size) {
          return Fail(d, v->page_index, "index past the dictionary's end");
        }
        at = CopyEntry(d, data, at, index);
        offsets[k] = at;
      }
      /* (Dictionary-coded values are dictionary entries, all checked for UTF-8 already.) */
    } else {
      const uint8_t* p = v->p;
      const uint8_t* end = v->end;
      int split_character = 0;
      for (int64_t k = 0; k < m; k++) {
        if (present < m && !level_block[k]) {
          offsets[k] = at;
          continue;
        }
        uint32_t length;
        if (NextPlainLength(&p, end, &length) != 0) {
          return Fail(d, v->page_index, "value past the page's end");
        }
        /* A value starting inside a character is invalid even though the block's text as a
         * whole may be valid UTF-8 (checked below). */
        if (length > 0 && (p[0] & 0xc0) == 0x80) split_character = 1;
        memcpy(data + at, p, length);
        p += length;
        at += length;
        offsets[k] = at;
      }
      v->p = p;
      if (d->is_string &&
          (split_character || !ValidUtf8(data + d->data_size, at - d->data_size))) {
        return Fail(d, v->page_index, "a string that is not valid UTF-8");
      }
    }
    d->data_size = at;
    if (FinishBlock(d, m, present, level_block, NULL, m) != 0) {
      return Fail(d, v->page_index, "out of memory");
    }
    done += m;
  }
  return 0;
}

/* Without the GIL: one data page (v1 or v2), decompressed, into the output arrays. */
static int DecodeDataPage(MlpColumnDecoder* d, int64_t page_index, const MlpPage* page,
                          const uint8_t* levels_start, int64_t levels_size, const uint8_t* body,
                          int64_t body_size) {
  MlpPageValues v;
  memset(&v, 0, sizeof(v));
  v.page_index = page_index;
  v.n = page->num_values;
  v.p = body;
  v.end = body + body_size;
  v.all_present = 1;
  if (v.n > d->num_values - d->consumed) return Fail(d, page_index, "more values than the chunk has");
  /* Definition levels: 0 null, 1 present. A page without nulls is one RLE run of ones. */
  if (d->max_definition_level > 0) {
    const uint8_t* level_data;
    const uint8_t* level_end;
    if (page->type == PAGE_DATA) {
      if (page->definition_level_encoding != ENC_RLE) {
        return Fail(d, page_index, "definition levels not RLE-encoded");
      }
      uint32_t length;
      if (body_size < 4) return Fail(d, page_index, "definition levels past the page's end");
      memcpy(&length, body, 4);
      if ((uint64_t)length > (uint64_t)(body_size - 4)) {
        return Fail(d, page_index, "definition levels past the page's end");
      }
      level_data = body + 4;
      level_end = level_data + length;
      v.p = level_end;
    } else {
      level_data = levels_start;
      level_end = levels_start + levels_size;
    }
    if (!SingleRun(level_data, level_end, v.n, 1)) {
      v.all_present = 0;
      HybridInit(&v.levels, level_data, level_end, 1);
    }
  }
  if (page->encoding == ENC_RLE_DICTIONARY || page->encoding == ENC_PLAIN_DICTIONARY) {
    if (d->dictionary == NULL) return Fail(d, page_index, "dictionary-coded page without a dictionary");
    v.dictionary_coded = 1;
  } else if (page->encoding != ENC_PLAIN) {
    char what[64];
    snprintf(what, sizeof(what), "unsupported value encoding %d", (int)page->encoding);
    return Fail(d, page_index, what);
  }
  return d->width > 0 ? DecodeFixedValues(d, &v) : DecodeByteArrayValues(d, &v);
}
/* With the GIL: decompress_into(data, size, out) filling out = [destination, + size). 0, or -1
 * with a Python error set. Both views are released after the call; a view still exported then
 * (the callable kept a buffer of it) makes the call fail with BufferError and sets *exported:
 * the caller must then never free or reuse that memory, which the kept buffer may still write. */
static int DecompressInto(PyObject* decompress_into, const uint8_t* payload, int64_t size,
                          uint8_t* destination, int64_t uncompressed_size, int64_t page_index,
                          int* exported) {
  *exported = 0;
  PyObject* in = PyMemoryView_FromMemory((char*)payload, (Py_ssize_t)size, PyBUF_READ);
  PyObject* out = in == NULL ? NULL
                             : PyMemoryView_FromMemory((char*)destination,
                                                       (Py_ssize_t)uncompressed_size, PyBUF_WRITE);
  PyObject* result = out == NULL ? NULL
                                 : PyObject_CallFunction(decompress_into, "OLO", in,
                                                         (long long)uncompressed_size, out);
  int rc = result == NULL ? -1 : 0;
  long long written = -1;
  if (rc == 0) {
    written = PyLong_AsLongLong(result);
    if (written == -1 && PyErr_Occurred()) rc = -1;
  }
  Py_XDECREF(result);
  /* (Released even after an error, which is kept: release() raises only while exported.) */
  PyObject* type, *value, *traceback;
  PyErr_Fetch(&type, &value, &traceback);
  for (int k = 0; k < 2; k++) {
    PyObject* view = k == 0 ? in : out;
    if (view == NULL) continue;
    PyObject* released = PyObject_CallMethod(view, "release", NULL);
    if (released == NULL) {
      if (k == 1) *exported = 1;
      if (type == NULL) {
        PyErr_Fetch(&type, &value, &traceback);
      } else {
        PyErr_Clear();
      }
      rc = -1;
    }
    Py_XDECREF(released);
    Py_DECREF(view);
  }
  PyErr_Restore(type, value, traceback);
  if (rc == 0 && written != uncompressed_size) {
    MlpRaise(MLP_FUNC "(): " MLP_SHORT_PAGE, (long long)page_index, written,
             (long long)uncompressed_size);
    return -1;
  }
  return rc;
}

/* Without the GIL: a page's (decompressed) body decoded, as the dictionary or as data values
 * after its levels (`levels_size` bytes at the payload's start on V2 pages). 0 or -1. */
static int DecodePageBody(MlpColumnDecoder* d, int64_t page_index, const MlpPage* page,
                          int64_t levels_size, const uint8_t* body, int64_t size) {
  if (page->type == PAGE_DICTIONARY) return DecodeDictionary(d, page_index, page, body, size);
  return DecodeDataPage(d, page_index, page, page->payload, levels_size, body, size);
}

/* Without the GIL: a zstd page decompressed by libzstd into [destination, + uncompressed_size).
 * 0, or -1 with d->message set. */
static int ZstdInto(MlpColumnDecoder* d, int64_t page_index, const uint8_t* payload, int64_t size,
                    uint8_t* destination, int64_t uncompressed_size) {
  size_t written = d->zstd->decompress(d->zstd_context, destination, (size_t)uncompressed_size,
                                       payload, (size_t)size);
  char what[200];
  if (d->zstd->is_error(written)) {
    snprintf(what, sizeof(what), "zstd: %s", d->zstd->error_name(written));
    return Fail(d, page_index, what);
  }
  if ((int64_t)written != uncompressed_size) { /* worded as DecompressInto's: both ways alike */
    snprintf(d->message, sizeof(d->message), MLP_SHORT_PAGE, (long long)page_index,
             (long long)written, (long long)uncompressed_size);
    return -1;
  }
  return 0;
}

/* With the GIL: a page decompressed into [destination, + uncompressed_size), by libzstd (the GIL
 * released meanwhile) or by decompress_into. 0, or -1 with a Python error set. */
static int DecompressPage(MlpColumnDecoder* d, const uint8_t* payload, int64_t size,
                          uint8_t* destination, int64_t uncompressed_size, int64_t page_index,
                          int* exported) {
  if (d->zstd == NULL) {
    return DecompressInto(d->decompress_into, payload, size, destination, uncompressed_size,
                          page_index, exported);
  }
  *exported = 0;
  int rc;
  Py_BEGIN_ALLOW_THREADS;
  rc = ZstdInto(d, page_index, payload, size, destination, uncompressed_size);
  Py_END_ALLOW_THREADS;
  if (rc != 0) MlpRaise(MLP_FUNC "(): %s", d->message);
  return rc;
}

/* With the GIL: the decoder's scratch buffer, at least `size` bytes. 0, or -1 with an error set. */
static int ScratchRoom(MlpColumnDecoder* d, int64_t size) {
  if (size <= d->scratch_capacity) return 0;
  /* (Its bytes need not be kept; grown by half again, for pages of slowly growing sizes.) */
  int64_t capacity = d->scratch_capacity + d->scratch_capacity / 2;
  if (capacity < size) capacity = size;
  d->scratch_capacity = 0;
  d->scratch = WorkingMemory(&d->scratch_memory, capacity > 0 ? capacity : 1);
  if (d->scratch == NULL) {
    PyErr_NoMemory();
    return -1;
  }
  d->scratch_capacity = capacity;
  return 0;
}

/* The deallocator of memory a decompress_into callable kept a buffer of: never freed. */
static void KeptByCallable(struct ArrowBufferAllocator* allocator, uint8_t* ptr, int64_t size) {
  (void)allocator;
  (void)ptr;
  (void)size;
}

/* The page's bytes after decompression, with the GIL held: decompress_into's (or libzstd's) into
 * the scratch buffer, or `decompress(memoryview, uncompressed_size)`'s, or the payload itself.
 * Returns 0 with *held filled (see PageBodyRelease), or -1 with a Python error set. */
static int PageBody(MlpColumnDecoder* d, PyObject* decompress, const uint8_t* payload,
                    int64_t size, int64_t uncompressed_size, int compressed, Py_buffer* held,
                    PyObject** owner, int64_t page_index) {
  *owner = NULL;
  int into = d->decompress_into != Py_None || d->zstd != NULL;
  int decompressing = compressed && (decompress != Py_None || into);
  /* Nothing to decompress (a v2 page's empty values, all nulls): codecs refuse empty input. */
  if (uncompressed_size == 0 && decompressing) {
    held->buf = (void*)payload;
    held->len = 0;
    return 0;
  }
  if (decompressing && into) {
    int exported = 0;
    if (ScratchRoom(d, uncompressed_size) != 0 ||
        DecompressPage(d, payload, size, d->scratch, uncompressed_size, page_index,
                       &exported) != 0) {
      if (exported) { /* left to the buffer the callable kept: never freed, nor reused */
        ArrowBufferInit(&d->scratch_memory);
        d->scratch = NULL;
        d->scratch_capacity = 0;
      }
      return -1;
    }
    held->buf = d->scratch;
    held->len = (Py_ssize_t)uncompressed_size;
    return 0;
  }
  if (!decompressing) {
    if (size != uncompressed_size) {
      MlpRaise(MLP_FUNC "(): page %lld: %lld bytes stored but %lld expected uncompressed",
               (long long)page_index, (long long)size, (long long)uncompressed_size);
      return -1;
    }
    held->buf = (void*)payload;
    held->len = (Py_ssize_t)size;
    return 0;
  }
  PyObject* view = PyMemoryView_FromMemory((char*)payload, (Py_ssize_t)size, PyBUF_READ);
  if (view == NULL) return -1;
  PyObject* result = PyObject_CallFunction(decompress, "OL", view, (long long)uncompressed_size);
  Py_DECREF(view);
  if (result == NULL) return -1;
  if (PyObject_GetBuffer(result, held, PyBUF_SIMPLE) != 0) {
    Py_DECREF(result);
    return -1;
  }
  if (held->len != uncompressed_size) {
    long long got = (long long)held->len;
    PyBuffer_Release(held);
    Py_DECREF(result);
    MlpRaise(MLP_FUNC "(): " MLP_SHORT_PAGE, (long long)page_index, got,
             (long long)uncompressed_size);
    return -1;
  }
  *owner = result;
  return 0;
}

static void PageBodyRelease(Py_buffer* held, PyObject* owner) {
  if (owner != NULL) {
    PyBuffer_Release(held);
    Py_DECREF(owner);
  }
}

static int VarintLength(uint64_t value) {
  int n = 1;
  while (value >= 0x80) {
    value >>= 7;
    n++;
  }
  return n;
}

/* With the GIL: a compressed PLAIN page of a fixed-width column without nulls, decompressed by
 * decompress_into (or libzstd) straight into the output array, which then holds its values with no copy.
 * Returns 1 when the page is decoded, 0 when it is not such a page (the caller decodes it the
 * usual way; no value was decoded, though the open array may have been closed early to make
 * room), or -1 on error (a Python error set, or d->message).
 *
 * A v1 page's values follow its definition levels, which for a page without nulls are one RLE
 * run: 4 bytes of length, the run's header, one byte of value. The page is decompressed to that
 * many bytes before its first value's place, over the end of the values before it (kept aside and
 * put back); if the levels turn out not to be that run, the page is copied out and decoded from
 * there. A v2 page's levels are not compressed, and its values land in place. */
static int DecodeInPlace(MlpColumnDecoder* d, int64_t page_index, const MlpPage* page,
                         const uint8_t* levels_start, int64_t levels_size, const uint8_t* body,
                         int64_t body_size, int64_t uncompressed_size) {
  int64_t n = page->num_values;
  if (d->width == 0 || page->encoding != ENC_PLAIN || n <= 0 || n > d->num_values - d->consumed ||
      SelectedIn(d, d->consumed, n) != n) {
    return 0;
  }
  int64_t prefix = 0;
  if (d->max_definition_level > 0) {
    if (page->type == PAGE_DATA) {
      if (page->definition_level_encoding != ENC_RLE) return 0;
      prefix = 4 + VarintLength((uint64_t)n << 1) + 1;
    } else if (!SingleRun(levels_start, levels_start + levels_size, n, 1)) {
      return 0;
    }
  }
  if (uncompressed_size != prefix + n * d->width) return 0;
  if (EnsureRoom(d, n, 0) != 0) return -1;
  int64_t at = (d->rows - d->start) * d->width;
  if (at < prefix) return 0; /* an array's first page: nothing before it to write over */
  uint8_t* destination = d->values + at - prefix;
  uint8_t kept[16];
  memcpy(kept, destination, (size_t)prefix);
  int exported = 0;
  if (DecompressPage(d, body, body_size, destination, uncompressed_size, page_index,
                     &exported) != 0) {
    memcpy(destination, kept, (size_t)prefix);
    if (exported) { /* the open array's values stay where the kept buffer may write */
      ArrowArrayBuffer(&d->array, 1)->allocator = ArrowBufferDeallocator(KeptByCallable, NULL);
    }
    d->python_error = 1;
    return -1;
  }
  int levels_are_one_run = 1;
  if (prefix > 0) {
    uint32_t length;
    memcpy(&length, destination, 4);
    levels_are_one_run = length == (uint32_t)(prefix - 4) &&
                         SingleRun(destination + 4, destination + prefix, n, 1);
  }
  if (!levels_are_one_run) {
    /* Levels of another shape (nulls, or runs split otherwise): decode a copy the usual way. */
    if (ScratchRoom(d, uncompressed_size) != 0) {
      memcpy(destination, kept, (size_t)prefix);
      d->python_error = 1;
      return -1;
    }
    memcpy(d->scratch, destination, (size_t)uncompressed_size);
    memcpy(destination, kept, (size_t)prefix);
    int rc;
    Py_BEGIN_ALLOW_THREADS;
    rc = DecodeDataPage(d, page_index, page, levels_start, levels_size, d->scratch,
                        uncompressed_size);
    Py_END_ALLOW_THREADS;
    return rc == 0 ? 1 : -1;
  }
  memcpy(destination, kept, (size_t)prefix);
  if (FinishBlock(d, n, n, NULL, NULL, n) != 0) return Fail(d, page_index, "out of memory");
  return 1;
}

/* The output types, by the name callers give: Arrow type, bytes per value (0: BYTE_ARRAY). */
typedef struct {
  const char* name;
  enum ArrowType type;
  int width;
} MlpColumnKind;

static const MlpColumnKind MlpColumnKinds[] = {
    {"large_string", NANOARROW_TYPE_LARGE_STRING, 0},
    {"large_binary", NANOARROW_TYPE_LARGE_BINARY, 0},
    {"int32", NANOARROW_TYPE_INT32, 4},
    {"int64", NANOARROW_TYPE_INT64, 8},
    {"float32", NANOARROW_TYPE_FLOAT, 4},
    {"float64", NANOARROW_TYPE_DOUBLE, 8},
    {"date32", NANOARROW_TYPE_DATE32, 4},
    {NULL, NANOARROW_TYPE_UNINITIALIZED, 0},
};

PyObject* MlpDecodeParquetColumn(PyObject* self, PyObject* args, PyObject* kwargs) {
  static char* keywords[] = {"chunk",      "num_values", "arrow_type",      "max_definition_level",
                             "decompress", "allocate",   "decompress_into", "selection",
                             "zstd",       NULL};
  Py_buffer chunk;
  long long num_values;
  const char* arrow_type;
  int max_definition_level = 1;
  PyObject* decompress = Py_None;
  PyObject* allocate = Py_None;
  PyObject* decompress_into = Py_None;
  PyObject* selection = Py_None;
  int zstd = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*Ls|$iOOOOp:" MLP_FUNC, keywords, &chunk,
                                   &num_values, &arrow_type, &max_definition_level, &decompress,
                                   &allocate, &decompress_into, &selection, &zstd)) {
    return NULL;
  }
  const MlpColumnKind* kind = MlpColumnKinds;
  while (kind->name != NULL && strcmp(kind->name, arrow_type) != 0) kind++;
  if (kind->name == NULL) {
    PyBuffer_Release(&chunk);
    return MlpRaise(MLP_FUNC "(): arrow_type must be one of large_string, large_binary, int32, "
                    "int64, float32, float64, date32; got '%s'",
                    arrow_type);
  }
  if (num_values < 0 || (max_definition_level != 0 && max_definition_level != 1) ||
      (decompress != Py_None && !PyCallable_Check(decompress)) ||
      (allocate != Py_None && !PyCallable_Check(allocate)) ||
      (decompress_into != Py_None && !PyCallable_Check(decompress_into))) {
    PyBuffer_Release(&chunk);
    return MlpRaise(MLP_FUNC "(): num_values must be >= 0, max_definition_level 0 or 1, and "
                    "decompress, allocate and decompress_into None or callables; got %lld, %d, "
                    "%s, %s, %s",
                    num_values, max_definition_level, Py_TYPE(decompress)->tp_name,
                    Py_TYPE(allocate)->tp_name, Py_TYPE(decompress_into)->tp_name);
  }
  /* Held (so that its memory stays) until the end: read without the GIL. */
  Py_buffer selected;
  selected.obj = NULL;
  if (selection != Py_None) {
    if (PyObject_GetBuffer(selection, &selected, PyBUF_SIMPLE) != 0) {
      PyBuffer_Release(&chunk);
      return NULL;
    }
    if (num_values >= 0 && (long long)selected.len < (num_values + 7) / 8) {
      long long got = (long long)selected.len;
      PyBuffer_Release(&selected);
      PyBuffer_Release(&chunk);
      return MlpRaise(MLP_FUNC "(): selection must hold a bit for each of the %lld values (%lld "
                      "bytes); got %lld bytes",
                      num_values, (num_values + 7) / 8, got);
    }
  }
  /* (Loaded only for a call that is otherwise valid.) */
  const MlpZstd* library = zstd ? MlpZstdLibrary() : NULL;
  if (zstd && (library == NULL || decompress != Py_None || decompress_into != Py_None)) {
    if (selected.obj != NULL) PyBuffer_Release(&selected);
    PyBuffer_Release(&chunk);
    return MlpRaise(library == NULL
                        ? MLP_FUNC "(): zstd=True needs libzstd, and none could be loaded "
                                   "(zstd_library_version() is None): pass decompress_into instead"
                        : MLP_FUNC "(): zstd=True decompresses the pages itself: decompress and "
                                   "decompress_into must be None");
  }
  MlpColumnDecoder d;
  memset(&d, 0, sizeof(d));
  ArrowBufferInit(&d.scratch_memory);
  ArrowBufferInit(&d.dictionary_memory);
  ArrowBufferInit(&d.dictionary_offsets_memory);
  d.num_values = num_values;
  d.max_definition_level = max_definition_level;
  d.width = kind->width;
  d.type = kind->type;
  d.is_string = kind->type == NANOARROW_TYPE_LARGE_STRING;
  d.allocate = allocate;
  d.decompress_into = decompress_into;
  d.zstd = library;
  d.selection = selected.obj != NULL ? (const uint8_t*)selected.buf : NULL;
  d.output_rows = SelectedIn(&d, 0, num_values);
  d.outputs = PyList_New(0);
  if (d.outputs != NULL && library != NULL) {
    d.zstd_context = library->create();
    if (d.zstd_context == NULL) {
      Py_CLEAR(d.outputs);
      PyErr_NoMemory();
    }
  }
  if (d.outputs == NULL) {
    if (selected.obj != NULL) PyBuffer_Release(&selected);
    PyBuffer_Release(&chunk);
    return NULL;
  }

  MlpReader reader = {(const uint8_t*)chunk.buf, (const uint8_t*)chunk.buf + chunk.len, 0};
  int failed = 0;
  int64_t page_index = 0;
  while (d.consumed < d.num_values && !failed) {
    MlpPage page;
    if (reader.pos >= reader.end) {
      snprintf(d.message, sizeof(d.message), "the chunk ends after %lld of its %lld values",
               (long long)d.consumed, (long long)d.num_values);
      failed = 1;
      break;
    }
    if (ReadPageHeader(&reader, &page) != 0) {
      failed = Fail(&d, page_index, "unreadable page header") != 0;
      break;
    }
    int64_t levels_size = 0;
    if (page.type == PAGE_DATA_V2) {
      levels_size = (int64_t)page.definition_levels_bytes + page.repetition_levels_bytes;
      if (page.repetition_levels_bytes != 0) {
        failed = Fail(&d, page_index, "repetition levels (a repeated column)") != 0;
        break;
      }
      if (levels_size > page.compressed_size || levels_size > page.uncompressed_size) {
        failed = Fail(&d, page_index, "levels larger than the page") != 0;
        break;
      }
    }
    if (page.type != PAGE_DATA && page.type != PAGE_DATA_V2 && page.type != PAGE_DICTIONARY) {
      page_index++;
      continue; /* index pages and page types of later format versions carry no values */
    }
    if (page.type != PAGE_DICTIONARY && d.selection != NULL &&
        page.num_values <= d.num_values - d.consumed &&
        SelectedIn(&d, d.consumed, page.num_values) == 0) {
      d.consumed += page.num_values; /* none of its rows kept: not even decompressed */
      page_index++;
      continue;
    }
    Py_buffer body;
    PyObject* owner;
    int compressed = page.type == PAGE_DATA_V2 ? page.is_compressed : 1;
    if (page.type != PAGE_DICTIONARY && compressed &&
        (decompress_into != Py_None || d.zstd != NULL)) {
      int placed = DecodeInPlace(&d, page_index, &page, page.payload, levels_size,
                                 page.payload + levels_size, page.compressed_size - levels_size,
                                 page.uncompressed_size - levels_size);
      if (placed != 0) {
        if (placed < 0) {
          failed = 1;
          break;
        }
        page_index++;
        continue;
      }
    }
    int64_t uncompressed_size = page.uncompressed_size - levels_size;
    if (d.zstd != NULL && compressed && uncompressed_size > 0) {
      /* Decompressed and decoded in one stretch without the GIL: taken back once a page, not
       * three times, so that the decoding threads do not queue for it. */
      if (ScratchRoom(&d, uncompressed_size) != 0) {
        d.python_error = 1;
        failed = 1;
        break;
      }
      int rc;
      Py_BEGIN_ALLOW_THREADS;
      rc = ZstdInto(&d, page_index, page.payload + levels_size,
                    page.compressed_size - levels_size, d.scratch, uncompressed_size);
      if (rc == 0) {
        rc = DecodePageBody(&d, page_index, &page, levels_size, d.scratch, uncompressed_size);
      }
      Py_END_ALLOW_THREADS;
      if (rc != 0) failed = 1;
      page_index++;
      continue;
    }
    if (PageBody(&d, decompress, page.payload + levels_size, page.compressed_size - levels_size,
                 page.uncompressed_size - levels_size, compressed, &body, &owner,
                 page_index) != 0) {
      d.python_error = 1;
      failed = 1;
      break;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS;
    rc = DecodePageBody(&d, page_index, &page, levels_size, body.buf, body.len);
    Py_END_ALLOW_THREADS;
    PageBodyRelease(&body, owner);
    if (rc != 0) failed = 1;
    page_index++;
  }
  if (selected.obj != NULL) PyBuffer_Release(&selected);
  PyBuffer_Release(&chunk);
  if (failed) {
    PyObject* result = d.python_error ? NULL : MlpRaise(MLP_FUNC "(): %s", d.message);
    DecoderRelease(&d);
    return result;
  }
  /* The last array; an empty one for an empty chunk. */
  if ((!d.open && PyList_GET_SIZE(d.outputs) == 0 && OpenOutput(&d, 0, 0) != 0) ||
      (d.open && CloseOutput(&d) != 0)) {
    DecoderRelease(&d);
    return NULL;
  }
  PyObject* outputs = d.outputs;
  d.outputs = NULL;
  DecoderRelease(&d);
  return outputs;
}
