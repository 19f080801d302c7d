/* decode_parquet_column: one Parquet column chunk of a flat column (not nested, not repeated)
 * straight into the Arrow array a read projects: large_string / large_binary for BYTE_ARRAY,
 * int32, int64, float32, float64 or date32 for INT32, INT64, FLOAT and DOUBLE.
 *
 * Why: the projected schema of an Iceberg read has large strings (pyiceberg's schema), and the
 * fastest general decoder here (polars') decodes into string views, which then cost a second
 * pass and a second allocation to become large strings. Decoding each page into the output's
 * layout while the page is still in cache does the work once; the fixed-width columns beside
 * them are a copy (or a gather through the dictionary) per page, and decoding them here too
 * spares a file read by this kernel a second decoder's setup.
 *
 * What is decoded: data pages v1 and v2, PLAIN and dictionary (PLAIN_DICTIONARY/RLE_DICTIONARY)
 * values, a dictionary page, definition levels of an optional column (max level 1, RLE hybrid).
 * Anything else (DELTA_* and BYTE_STREAM_SPLIT encodings, repeated columns, BIT_PACKED levels)
 * raises ArrowKernelError and the caller decodes the chunk another way. Decompression is the
 * caller's: `decompress` is called per page with the GIL, so any codec the caller has works; it
 * is expected to release the GIL itself while it works (pyarrow's Codec.decompress does).
 * Output buffers come from `allocate(size)` when given (a memory pool that reuses freed memory),
 * else from malloc.
 *
 * Every length, offset and index read from the file is checked against the bytes present: a
 * corrupt chunk gives an error naming the page, never a read outside the buffers. String values
 * are checked to be UTF-8, as Arrow's string type requires. */
#define _POSIX_C_SOURCE 200809L

#include <string.h>

#include "mlp_columns.h"
#include "mlp_kernels.h"

#define MLP_FUNC "decode_parquet_column"
/* Bytes of slack after the dictionary and the output data, so that short values are copied as
 * one fixed 16-byte move rather than a variable-length memcpy. */
#define MLP_COPY_SLACK 16
#define MLP_THRIFT_MAX_DEPTH 32

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
      for (uint64_t i = 0; i < take; i++, bit += (uint64_t)width) {
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

typedef struct {
  int64_t num_values; /* the chunk's */
  int max_definition_level;
  int is_string;
  int width; /* bytes per value of a fixed-width column (INT32, INT64, FLOAT, DOUBLE); 0 for BYTE_ARRAY */
  /* The dictionary, unpacked: entry k is dictionary[offsets[k], offsets[k + 1]). */
  uint8_t* dictionary;
  int64_t* dictionary_offsets;
  int32_t dictionary_size;
  int64_t dictionary_longest;
  /* Output. */
  struct ArrowSchema schema;
  struct ArrowArray array;
  uint8_t* values;       /* fixed width: num_values * width */
  int64_t* offsets;      /* BYTE_ARRAY: num_values + 1 */
  uint8_t* data;         /* data_capacity bytes + MLP_COPY_SLACK */
  int64_t data_capacity;
  int64_t data_size;
  int fixed_data;        /* the data buffer came from allocate(): it cannot grow */
  uint8_t* validity;     /* NULL until the first null */
  int64_t null_count;
  int64_t rows;          /* values decoded so far */
  /* From the page headers: the value bytes are at most plain_bound (the uncompressed size of the
   * PLAIN pages) plus dictionary_values times the dictionary's longest entry. */
  int64_t plain_bound;
  int64_t dictionary_values;
  char message[256];
} MlpColumnDecoder;

static void DecoderRelease(MlpColumnDecoder* d) {
  free(d->dictionary);
  free(d->dictionary_offsets);
  if (d->array.release != NULL) d->array.release(&d->array);
  if (d->schema.release != NULL) d->schema.release(&d->schema);
}

static int Fail(MlpColumnDecoder* d, int64_t page, const char* what) {
  snprintf(d->message, sizeof(d->message), "page %lld: %s", (long long)page, what);
  return -1;
}

static int64_t DataBound(const MlpColumnDecoder* d) {
  return d->plain_bound + d->dictionary_values * d->dictionary_longest;
}

static int DecodeDictionary(MlpColumnDecoder* d, int64_t page_index, const MlpPage* page,
                            const uint8_t* body, int64_t size) {
  if (d->dictionary != NULL) return Fail(d, page_index, "a second dictionary page");
  if (d->rows > 0) return Fail(d, page_index, "a dictionary page after data pages");
  if (page->encoding != ENC_PLAIN && page->encoding != ENC_PLAIN_DICTIONARY) {
    return Fail(d, page_index, "dictionary page not PLAIN-encoded");
  }
  int64_t n = page->num_values;
  if (d->width > 0) {
    if (n > size / d->width) return Fail(d, page_index, "dictionary shorter than its entries");
    d->dictionary = malloc((size_t)(n * d->width) + MLP_COPY_SLACK);
    if (d->dictionary == NULL) return Fail(d, page_index, "out of memory for the dictionary");
    memcpy(d->dictionary, body, (size_t)(n * d->width));
    d->dictionary_size = (int32_t)n;
    return 0;
  }
  d->dictionary = malloc((size_t)size + MLP_COPY_SLACK);
  d->dictionary_offsets = malloc(sizeof(int64_t) * (size_t)(n + 1));
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

/* Room for `more` value bytes. */
static int EnsureData(MlpColumnDecoder* d, int64_t more) {
  if (d->data != NULL && more <= d->data_capacity - d->data_size) return 0;
  if (d->fixed_data) return -1; /* the headers' bound is exact: a page broke it */
  int64_t wanted = d->data_capacity * 2;
  if (wanted < d->data_size + more) wanted = d->data_size + more;
  struct ArrowBuffer* buffer = ArrowArrayBuffer(&d->array, 2);
  buffer->size_bytes = d->data_size;
  if (ArrowBufferReserve(buffer, wanted + MLP_COPY_SLACK - d->data_size) != NANOARROW_OK) {
    return -1;
  }
  d->data = buffer->data;
  d->data_capacity = buffer->capacity_bytes - MLP_COPY_SLACK;
  return 0;
}

static int StartValidity(MlpColumnDecoder* d) {
  struct ArrowBitmap* bitmap = ArrowArrayValidityBitmap(&d->array);
  if (ArrowBitmapReserve(bitmap, d->num_values > 0 ? d->num_values : 1) != NANOARROW_OK) return -1;
  d->validity = bitmap->buffer.data;
  memset(d->validity, 0, (size_t)((d->num_values + 7) / 8));
  /* Every row before this page was present. */
  for (int64_t row = 0; row < d->rows; row++) d->validity[row >> 3] |= (uint8_t)(1u << (row & 7));
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

/* Sets the validity bits of the present rows among m starting at `row`. */
static void MarkPresent(MlpColumnDecoder* d, int64_t row, int64_t m, int all_present,
                        const int32_t* level_block) {
  for (int64_t k = 0; k < m; k++) {
    if (all_present || level_block[k]) {
      d->validity[(row + k) >> 3] |= (uint8_t)(1u << ((row + k) & 7));
    }
  }
}

/* The values of a fixed-width page (levels already set up): a null's slot is zeroed. */
static int DecodeFixedValues(MlpColumnDecoder* d, int64_t page_index, int64_t n,
                             int all_present, MlpHybrid* levels, int dictionary_coded,
                             const uint8_t* values, const uint8_t* end) {
  int width = d->width;
  uint8_t* out = d->values + d->rows * width;
  if (!dictionary_coded && all_present) {
    /* The common case: the page's values are the output's bytes. */
    if (n > (end - values) / width) return Fail(d, page_index, "values past the page's end");
    memcpy(out, values, (size_t)(n * width));
    if (d->validity != NULL) MarkPresent(d, d->rows, n, 1, NULL);
    d->rows += n;
    return 0;
  }
  int32_t level_block[MLP_BLOCK_ROWS];
  int32_t index_block[MLP_BLOCK_ROWS];
  MlpHybrid indices;
  int indices_started = 0;
  const uint8_t* p = values;
  uint32_t dictionary_size = (uint32_t)d->dictionary_size;
  int64_t present_total = 0;
  for (int64_t done = 0; done < n; done += MLP_BLOCK_ROWS) {
    int64_t m = n - done < MLP_BLOCK_ROWS ? n - done : MLP_BLOCK_ROWS;
    int64_t present = m;
    if (!all_present) {
      if (HybridRead(levels, level_block, m) != m) {
        return Fail(d, page_index, "definition levels cut short or corrupt");
      }
      present = 0;
      for (int64_t k = 0; k < m; k++) present += level_block[k];
    }
    uint8_t* block_out = out + done * width;
    if (dictionary_coded) {
      if (present > 0) {
        if (!indices_started && StartIndices(d, page_index, p, end, &indices) != 0) return -1;
        indices_started = 1;
        if (HybridRead(&indices, index_block, present) != present) {
          return Fail(d, page_index, "indices cut short or corrupt");
        }
      }
      int64_t next = 0;
      for (int64_t k = 0; k < m; k++) {
        if (!all_present && !level_block[k]) {
          memset(block_out + k * width, 0, (size_t)width);
          continue;
        }
        uint32_t index = (uint32_t)index_block[next++];
        if (index >= dictionary_size) return Fail(d, page_index, "index past the dictionary's end");
        memcpy(block_out + k * width, d->dictionary + (int64_t)index * width, (size_t)width);
      }
    } else {
      if (present > (end - p) / width) return Fail(d, page_index, "values past the page's end");
      for (int64_t k = 0; k < m; k++) {
        if (!level_block[k]) {
          memset(block_out + k * width, 0, (size_t)width);
          continue;
        }
        memcpy(block_out + k * width, p, (size_t)width);
        p += width;
      }
    }
    if (d->validity != NULL) MarkPresent(d, d->rows + done, m, all_present, level_block);
    present_total += present;
  }
  d->null_count += n - present_total;
  d->rows += n;
  return 0;
}

static int DecodeDataPage(MlpColumnDecoder* d, int64_t page_index, const MlpPage* page,
                          const uint8_t* levels_start, int64_t levels_size, const uint8_t* body,
                          int64_t body_size) {
  int64_t n = page->num_values;
  if (n > d->num_values - d->rows) return Fail(d, page_index, "more values than the chunk has");
  const uint8_t* values = body;
  const uint8_t* end = body + body_size;

  /* Definition levels: 0 null, 1 present. A page without nulls is one RLE run of ones. */
  int all_present = 1;
  MlpHybrid levels;
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
      values = level_end;
    } else {
      level_data = levels_start;
      level_end = levels_start + levels_size;
    }
    if (!SingleRun(level_data, level_end, n, 1)) {
      all_present = 0;
      HybridInit(&levels, level_data, level_end, 1);
    }
  }
  if (!all_present && d->validity == NULL && StartValidity(d) != 0) {
    return Fail(d, page_index, "out of memory");
  }
  int dictionary_coded;
  if (page->encoding == ENC_PLAIN) {
    dictionary_coded = 0;
  } else if (page->encoding == ENC_RLE_DICTIONARY || page->encoding == ENC_PLAIN_DICTIONARY) {
    if (d->dictionary == NULL) return Fail(d, page_index, "dictionary-coded page without a dictionary");
    dictionary_coded = 1;
  } else {
    char what[64];
    snprintf(what, sizeof(what), "unsupported value encoding %d", (int)page->encoding);
    return Fail(d, page_index, what);
  }
  if (d->width > 0) {
    return DecodeFixedValues(d, page_index, n, all_present, &levels, dictionary_coded, values, end);
  }
  if (EnsureData(d, dictionary_coded ? n * d->dictionary_longest : end - values) != 0) {
    return Fail(d, page_index, "more value bytes than the page headers allow");
  }

  int32_t level_block[MLP_BLOCK_ROWS];
  int32_t index_block[MLP_BLOCK_ROWS];
  MlpHybrid indices;
  int indices_started = 0;
  int split_character = 0;
  const uint8_t* p = values;
  uint8_t* data = d->data;
  const uint8_t* dictionary = d->dictionary;
  const int64_t* entries = d->dictionary_offsets;
  uint32_t dictionary_size = (uint32_t)d->dictionary_size;
  int64_t* offsets = d->offsets + d->rows + 1;
  int64_t data_start = d->data_size;
  int64_t at = d->data_size;
  int64_t present_total = 0;
  for (int64_t done = 0; done < n; done += MLP_BLOCK_ROWS) {
    int64_t m = n - done < MLP_BLOCK_ROWS ? n - done : MLP_BLOCK_ROWS;
    int64_t present = m;
    if (!all_present) {
      if (HybridRead(&levels, level_block, m) != m) {
        return Fail(d, page_index, "definition levels cut short or corrupt");
      }
      present = 0;
      for (int64_t k = 0; k < m; k++) present += level_block[k];
    }
    int64_t* block_offsets = offsets + done;
    if (dictionary_coded) {
      if (present > 0) {
        if (!indices_started && StartIndices(d, page_index, p, end, &indices) != 0) return -1;
        indices_started = 1;
        if (HybridRead(&indices, index_block, present) != present) {
          return Fail(d, page_index, "indices cut short or corrupt");
        }
      }
      int64_t next = 0;
      for (int64_t k = 0; k < m; k++) {
        if (!all_present && !level_block[k]) {
          block_offsets[k] = at;
          continue;
        }
        uint32_t index = (uint32_t)index_block[next++];
        if (index >= dictionary_size) return Fail(d, page_index, "index past the dictionary's end");
        int64_t start = entries[index];
        int64_t length = entries[index + 1] - start;
        /* Both buffers have MLP_COPY_SLACK spare bytes, so a short value is one fixed move. */
        if (length <= MLP_COPY_SLACK) memcpy(data + at, dictionary + start, MLP_COPY_SLACK);
        else memcpy(data + at, dictionary + start, (size_t)length);
        at += length;
        block_offsets[k] = at;
      }
    } else {
      for (int64_t k = 0; k < m; k++) {
        if (!all_present && !level_block[k]) {
          block_offsets[k] = at;
          continue;
        }
        uint32_t length;
        if (end - p < 4) return Fail(d, page_index, "value past the page's end");
        memcpy(&length, p, 4);
        p += 4;
        if ((uint64_t)length > (uint64_t)(end - p)) {
          return Fail(d, page_index, "value past the page's end");
        }
        if (length > 0 && (p[0] & 0xc0) == 0x80) split_character = 1;
        memcpy(data + at, p, length);
        p += length;
        at += length;
        block_offsets[k] = at;
      }
    }
    if (d->validity != NULL) MarkPresent(d, d->rows + done, m, all_present, level_block);
    present_total += present;
  }
  d->data_size = at;
  /* PLAIN text is checked here: a value starting inside a character is invalid even though the
   * page's text as a whole may be valid. (Dictionary-coded values are dictionary entries, all
   * checked already.) */
  if (!dictionary_coded && d->is_string &&
      (split_character || !ValidUtf8(d->data + data_start, at - data_start))) {
    return Fail(d, page_index, "a string that is not valid UTF-8");
  }
  d->null_count += n - present_total;
  d->rows += n;
  return 0;
}

/* The page's bytes after decompression: `decompress(memoryview, uncompressed_size)` with the
 * GIL held, or the payload itself. Returns 0 with *held filled (see PageBodyRelease), or -1 with
 * a Python error set. */
static int PageBody(PyObject* decompress, const uint8_t* payload, int64_t size,
                    int64_t uncompressed_size, int compressed, Py_buffer* held,
                    PyObject** owner, int64_t page_index) {
  *owner = NULL;
  if (decompress == Py_None || !compressed) {
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
    MlpRaise(MLP_FUNC "(): page %lld decompressed to %lld bytes, its header says %lld",
             (long long)page_index, got, (long long)uncompressed_size);
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

/* With the GIL: the data buffer at the headers' bound (once the dictionary, if any, is known). */
static int AllocateData(MlpColumnDecoder* d, PyObject* allocate) {
  if (allocate == Py_None) {
    if (EnsureData(d, DataBound(d)) != 0) {
      PyErr_NoMemory();
      return -1;
    }
    return 0;
  }
  struct ArrowBuffer* buffer = ArrowArrayBuffer(&d->array, 2);
  if (PyAllocate(allocate, DataBound(d) + MLP_COPY_SLACK, buffer) != 0) return -1;
  d->data = buffer->data;
  d->data_capacity = buffer->capacity_bytes - MLP_COPY_SLACK;
  d->fixed_data = 1;
  return 0;
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
  static char* keywords[] = {"chunk",      "num_values", "arrow_type", "max_definition_level",
                             "decompress", "allocate",   NULL};
  Py_buffer chunk;
  long long num_values;
  const char* arrow_type;
  int max_definition_level = 1;
  PyObject* decompress = Py_None;
  PyObject* allocate = Py_None;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*Ls|$iOO:" MLP_FUNC, keywords, &chunk,
                                   &num_values, &arrow_type, &max_definition_level, &decompress,
                                   &allocate)) {
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
      (allocate != Py_None && !PyCallable_Check(allocate))) {
    PyBuffer_Release(&chunk);
    return MlpRaise(MLP_FUNC "(): num_values must be >= 0, max_definition_level 0 or 1, and "
                    "decompress and allocate None or callables; got %lld, %d, %s, %s",
                    num_values, max_definition_level, Py_TYPE(decompress)->tp_name,
                    Py_TYPE(allocate)->tp_name);
  }
  MlpColumnDecoder d;
  memset(&d, 0, sizeof(d));
  d.num_values = num_values;
  d.max_definition_level = max_definition_level;
  d.width = kind->width;
  d.is_string = kind->type == NANOARROW_TYPE_LARGE_STRING;
  if (ArrowSchemaInitFromType(&d.schema, kind->type) != NANOARROW_OK ||
      ArrowArrayInitFromType(&d.array, kind->type) != NANOARROW_OK) {
    DecoderRelease(&d);
    PyBuffer_Release(&chunk);
    return PyErr_NoMemory();
  }
  /* Offsets (BYTE_ARRAY) or values (fixed width): buffer 1 either way, of a size known now. */
  struct ArrowBuffer* first = ArrowArrayBuffer(&d.array, 1);
  int64_t first_size = d.width > 0 ? d.width * num_values : 8 * (num_values + 1);
  int first_failed = allocate == Py_None
                         ? ArrowBufferReserve(first, first_size > 0 ? first_size : 1) != NANOARROW_OK
                         : PyAllocate(allocate, first_size, first) != 0;
  if (first_failed) {
    DecoderRelease(&d);
    PyBuffer_Release(&chunk);
    return allocate == Py_None ? PyErr_NoMemory() : NULL;
  }
  if (d.width > 0) {
    d.values = first->data;
  } else {
    d.offsets = (int64_t*)first->data;
    d.offsets[0] = 0;
  }

  /* BYTE_ARRAY: one pass over the page headers first, for the data buffer's size: allocated
   * once, at the bound, it is never copied to grow (pages of it never written are never touched
   * either). */
  MlpReader scan = {(const uint8_t*)chunk.buf, (const uint8_t*)chunk.buf + chunk.len, 0};
  for (int64_t seen = 0; d.width == 0 && seen < num_values && scan.pos < scan.end;) {
    MlpPage page;
    if (ReadPageHeader(&scan, &page) != 0) break; /* reported by the decoding pass */
    if (page.type != PAGE_DATA && page.type != PAGE_DATA_V2) continue;
    seen += page.num_values;
    if (page.encoding == ENC_PLAIN) d.plain_bound += page.uncompressed_size;
    else d.dictionary_values += page.num_values;
  }

  MlpReader reader = {(const uint8_t*)chunk.buf, (const uint8_t*)chunk.buf + chunk.len, 0};
  int failed = 0;
  int64_t page_index = 0;
  while (d.rows < d.num_values && !failed) {
    MlpPage page;
    if (reader.pos >= reader.end) {
      snprintf(d.message, sizeof(d.message), "the chunk ends after %lld of its %lld values",
               (long long)d.rows, (long long)d.num_values);
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
    if (d.width == 0 && page.type != PAGE_DICTIONARY && d.data == NULL &&
        AllocateData(&d, allocate) != 0) {
      DecoderRelease(&d);
      PyBuffer_Release(&chunk);
      return NULL;
    }
    Py_buffer body;
    PyObject* owner;
    int compressed = page.type == PAGE_DATA_V2 ? page.is_compressed : 1;
    if (PageBody(decompress, page.payload + levels_size, page.compressed_size - levels_size,
                 page.uncompressed_size - levels_size, compressed, &body, &owner,
                 page_index) != 0) {
      DecoderRelease(&d);
      PyBuffer_Release(&chunk);
      return NULL;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS;
    if (page.type == PAGE_DICTIONARY) {
      rc = DecodeDictionary(&d, page_index, &page, body.buf, body.len);
    } else {
      rc = DecodeDataPage(&d, page_index, &page, page.payload, levels_size, body.buf, body.len);
    }
    Py_END_ALLOW_THREADS;
    PageBodyRelease(&body, owner);
    if (rc != 0) failed = 1;
    page_index++;
  }
  PyBuffer_Release(&chunk);
  if (failed) {
    PyObject* result = MlpRaise(MLP_FUNC "(): %s", d.message);
    DecoderRelease(&d);
    return result;
  }
  if (d.width == 0 && d.data == NULL && AllocateData(&d, allocate) != 0) {
    DecoderRelease(&d);
    return NULL;
  }
  first->size_bytes = first_size;
  if (d.width == 0) ArrowArrayBuffer(&d.array, 2)->size_bytes = d.data_size;
  if (d.validity == NULL || d.null_count == 0) {
    ArrowBitmapReset(ArrowArrayValidityBitmap(&d.array));
  } else {
    struct ArrowBitmap* bitmap = ArrowArrayValidityBitmap(&d.array);
    bitmap->buffer.size_bytes = (d.num_values + 7) / 8;
    bitmap->size_bits = d.num_values;
  }
  d.array.length = d.num_values;
  d.array.null_count = d.null_count;
  struct ArrowError error;
  error.message[0] = '\0';
  if (ArrowArrayFinishBuildingDefault(&d.array, &error) != NANOARROW_OK) {
    PyObject* result =
        MlpRaise(MLP_FUNC "(): internal error building the result: %s", error.message);
    DecoderRelease(&d);
    return result;
  }
  PyObject* result = MlpResultNew(&d.schema, &d.array);
  DecoderRelease(&d);
  return result;
}
