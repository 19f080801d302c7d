/* String similarity over two aligned string columns, and the fused multi-field matcher.
 *
 * Metrics work on Unicode code points: pairs of pure-ASCII strings are compared in place as
 * bytes, any other pair is first decoded from UTF-8. Text is a string, or a list of strings whose
 * non-null items are joined by one space. The metrics:
 * - Jaro-Winkler, defined as rapidfuzz defines it (greedy matching within the window
 *   max(len)/2 - 1, prefix of at most 4 code points, boost only above boost_threshold), computed
 *   bit-parallel when both (window-trimmed) strings have at most 64 code points;
 * - normalized Levenshtein similarity 1 - distance / max(len), computed with Hyyro's
 *   bit-parallel form of Myers' algorithm: in one machine word when the shorter string has at
 *   most 64 code points, in blocks of 64 otherwise;
 * - token-sort variants: case-fold, split on separators, sort the tokens, join with one space,
 *   then compare (see reference.py for the exact normalization).
 * A null on either side gives a null score. Work is split into row ranges over pthreads; every
 * row's score is computed the same way whatever the split, so results never depend on threads. */
#define _POSIX_C_SOURCE 200809L

#include <stdlib.h>
#include <string.h>

#include "mlp_columns.h"
#include "mlp_kernels.h"

/* Rows per block: thread ranges start on multiples of it, so no two threads ever write the same
 * byte of a validity bitmap. */
#define MLP_BLOCK_ROWS 4096

/* ------------------------------------------------------------------------------------------ */
/* Pattern-match bit vectors: for each code point, the positions where it occurs.             */

typedef struct {
  uint64_t ascii[256];
  uint32_t keys[128];
  uint64_t values[128];
  int has_map;
} MlpPatternMatch;

static inline uint32_t PmProbe(const MlpPatternMatch* pm, uint32_t c) {
  uint32_t i = c & 127u;
  uint32_t perturb = c;
  while (pm->values[i] != 0 && pm->keys[i] != c) {
    perturb >>= 5;
    i = (i * 5u + perturb + 1u) & 127u;
  }
  return i;
}

static inline uint64_t PmGetWide(const MlpPatternMatch* pm, uint32_t c) {
  if (c < 256) return pm->ascii[c];
  if (!pm->has_map) return 0;
  return pm->values[PmProbe(pm, c)];
}

/* Only for patterns of at most 64 code points, so the map (128 slots) never fills. */
static inline void PmBuildWide(MlpPatternMatch* pm, const uint32_t* s, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    uint32_t c = s[i];
    uint64_t bit = (uint64_t)1 << i;
    if (c < 256) {
      pm->ascii[c] |= bit;
    } else {
      uint32_t slot = PmProbe(pm, c);
      pm->keys[slot] = c;
      pm->values[slot] |= bit;
      pm->has_map = 1;
    }
  }
}

static inline void PmClearWide(MlpPatternMatch* pm, const uint32_t* s, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    if (s[i] < 256) pm->ascii[s[i]] = 0;
  }
  if (pm->has_map) {
    memset(pm->values, 0, sizeof(pm->values));
    pm->has_map = 0;
  }
}

static inline int Ctz64(uint64_t x) { return __builtin_ctzll(x); }

/* ------------------------------------------------------------------------------------------ */
/* Per-thread scratch space                                                                   */

typedef struct {
  uint32_t* start;
  int64_t length;
} MlpToken;

typedef struct {
  uint32_t* cp[2]; /* decoded code points of each side (3 * bytes, room for token sort) */
  int64_t cp_capacity[2];
  MlpToken* tokens;
  int64_t tokens_capacity;
  int64_t* row; /* the long Levenshtein's vertical delta words */
  int64_t row_capacity;
  MlpPatternMatch* blocks; /* the long Levenshtein's per-word pattern tables, kept zeroed */
  int64_t blocks_capacity;
  uint8_t* flags; /* Jaro fallback flags */
  int64_t flags_capacity;
  uint8_t* joined[2]; /* list items of each side joined by spaces */
  int64_t joined_capacity[2];
  MlpPatternMatch pm;
  int out_of_memory;
} MlpScratch;

static void ScratchInit(MlpScratch* scratch) { memset(scratch, 0, sizeof(*scratch)); }

static void ScratchFree(MlpScratch* scratch) {
  free(scratch->cp[0]);
  free(scratch->cp[1]);
  free(scratch->tokens);
  free(scratch->row);
  free(scratch->flags);
  free(scratch->blocks);
  free(scratch->joined[0]);
  free(scratch->joined[1]);
}

static int GrowBlocks(MlpScratch* scratch, int64_t needed) {
  if (needed <= scratch->blocks_capacity) return 0;
  MlpPatternMatch* grown = realloc(scratch->blocks, (size_t)needed * sizeof(MlpPatternMatch));
  if (grown == NULL) return -1;
  /* Tables are zero between uses; only the new ones need clearing. */
  memset(grown + scratch->blocks_capacity, 0,
         (size_t)(needed - scratch->blocks_capacity) * sizeof(MlpPatternMatch));
  scratch->blocks = grown;
  scratch->blocks_capacity = needed;
  return 0;
}

static int Grow(void** buffer, int64_t* capacity, int64_t needed, size_t element) {
  if (needed <= *capacity) return 0;
  int64_t new_capacity = *capacity < 64 ? 64 : *capacity;
  while (new_capacity < needed) new_capacity *= 2;
  void* grown = realloc(*buffer, (size_t)new_capacity * element);
  if (grown == NULL) return -1;
  *buffer = grown;
  *capacity = new_capacity;
  return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* UTF-8 to code points                                                                       */

/* Decoding never reads past `n`; malformed sequences (not valid Arrow strings) become U+FFFD. */
static int64_t DecodeUtf8(const uint8_t* s, int64_t n, uint32_t* out) {
  int64_t i = 0;
  int64_t k = 0;
  while (i < n) {
    uint32_t c = s[i];
    if (c < 0x80) {
      out[k++] = c;
      i += 1;
    } else if (c >= 0xC0 && c < 0xE0 && i + 1 < n) {
      out[k++] = ((c & 0x1F) << 6) | (s[i + 1] & 0x3F);
      i += 2;
    } else if (c >= 0xE0 && c < 0xF0 && i + 2 < n) {
      out[k++] = ((c & 0x0F) << 12) | ((uint32_t)(s[i + 1] & 0x3F) << 6) | (s[i + 2] & 0x3F);
      i += 3;
    } else if (c >= 0xF0 && c < 0xF8 && i + 3 < n) {
      out[k++] = ((c & 0x07) << 18) | ((uint32_t)(s[i + 1] & 0x3F) << 12) |
                 ((uint32_t)(s[i + 2] & 0x3F) << 6) | (s[i + 3] & 0x3F);
      i += 4;
    } else {
      out[k++] = 0xFFFD;
      i += 1;
    }
  }
  return k;
}

static inline int64_t ToCodePoints(const uint8_t* s, int64_t n, uint32_t* out) {
  int64_t i = 0;
  /* ASCII fast path: widen until the first non-ASCII byte. */
  for (; i < n; i++) {
    if (s[i] >= 0x80) break;
    out[i] = s[i];
  }
  if (i == n) return n;
  return i + DecodeUtf8(s + i, n - i, out + i);
}

/* ------------------------------------------------------------------------------------------ */
/* Token sort                                                                                 */

static inline int IsSeparator(uint32_t c) {
  if (c < 128) {
    return !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'));
  }
  /* The non-ASCII code points Python's str.isspace() accepts. */
  return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
         c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

static inline uint32_t FoldCase(uint32_t c) {
  /* ASCII and Latin-1 upper case letters (not the multiplication sign U+00D7). */
  if ((c >= 'A' && c <= 'Z') || (c >= 0xC0 && c <= 0xDE && c != 0xD7)) return c + 32;
  return c;
}

#define MLP_INSERTION_SORT_TOKENS 32

static int CompareTokens(const void* left, const void* right) {
  const MlpToken* a = (const MlpToken*)left;
  const MlpToken* b = (const MlpToken*)right;
  int64_t n = a->length < b->length ? a->length : b->length;
  for (int64_t i = 0; i < n; i++) {
    if (a->start[i] != b->start[i]) return a->start[i] < b->start[i] ? -1 : 1;
  }
  return (a->length > b->length) - (a->length < b->length);
}

/* cp[0, n) holds the code points; cp[n, 3n) is free. Writes the token-sorted string at cp[2n]
 * and returns its length; *out points at it. */
static int64_t TokenSort(uint32_t* cp, int64_t n, MlpToken* tokens, uint32_t** out) {
  uint32_t* folded = cp + n;
  uint32_t* joined = cp + 2 * n;
  int64_t n_tokens = 0;
  int64_t i = 0;
  while (i < n) {
    while (i < n && IsSeparator(cp[i])) i++;
    if (i == n) break;
    int64_t start = i;
    while (i < n && !IsSeparator(cp[i])) {
      folded[i] = FoldCase(cp[i]);
      i++;
    }
    tokens[n_tokens].start = folded + start;
    tokens[n_tokens].length = i - start;
    n_tokens++;
  }
  if (n_tokens > 1 && n_tokens <= MLP_INSERTION_SORT_TOKENS) {
    /* Titles and cast lists have a handful of tokens: an insertion sort with the comparison
     * inlined beats qsort's merge sort and its call per comparison (measured: the sort was
     * twice the cost of the metric itself). Equal tokens are equal strings, so the joined
     * result is the same whichever order they end in. */
    for (int64_t t = 1; t < n_tokens; t++) {
      MlpToken key = tokens[t];
      int64_t j = t - 1;
      while (j >= 0 && CompareTokens(&tokens[j], &key) > 0) {
        tokens[j + 1] = tokens[j];
        j--;
      }
      tokens[j + 1] = key;
    }
  } else if (n_tokens > 1) {
    qsort(tokens, (size_t)n_tokens, sizeof(MlpToken), CompareTokens);
  }
  int64_t k = 0;
  for (int64_t t = 0; t < n_tokens; t++) {
    if (t > 0) joined[k++] = ' ';
    memcpy(joined + k, tokens[t].start, (size_t)tokens[t].length * sizeof(uint32_t));
    k += tokens[t].length;
  }
  *out = joined;
  return k;
}

/* ------------------------------------------------------------------------------------------ */
/* The metrics, once for ASCII bytes and once for code points                                 */

static inline double JaroFormula(int64_t len1, int64_t len2, int64_t common, int64_t trans) {
  trans /= 2;
  double sim = 0.0;
  sim += (double)common / (double)len1;
  sim += (double)common / (double)len2;
  sim += (double)(common - trans) / (double)common;
  return sim / 3.0;
}

#define MLP_CHAR uint8_t
#define MLP_ASCII 1
#define MLP_SUFFIX Ascii
#include "similarity_metrics.h"
#undef MLP_CHAR
#undef MLP_ASCII
#undef MLP_SUFFIX

#define MLP_CHAR uint32_t
#define MLP_ASCII 0
#define MLP_SUFFIX CodePoints
#include "similarity_metrics.h"
#undef MLP_CHAR
#undef MLP_ASCII
#undef MLP_SUFFIX


/* ------------------------------------------------------------------------------------------ */
/* One pair                                                                                   */

typedef enum { MLP_METRIC_JARO_WINKLER = 0, MLP_METRIC_LEVENSHTEIN = 1 } MlpMetricKind;

typedef struct {
  MlpMetricKind kind;
  int token_sort;
  double prefix_weight;
  double boost_threshold;
} MlpMetric;

static inline int IsAscii(const uint8_t* s, int64_t n) {
  uint64_t bits = 0;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t word;
    memcpy(&word, s + i, 8);
    bits |= word;
  }
  for (; i < n; i++) bits |= s[i];
  return (bits & 0x8080808080808080ULL) == 0;
}

static double PairScore(const MlpMetric* metric, const uint8_t* a, int64_t na, const uint8_t* b,
                        int64_t nb, MlpScratch* scratch) {
  int is_jaro_winkler = metric->kind == MLP_METRIC_JARO_WINKLER;
  if (!metric->token_sort && IsAscii(a, na) && IsAscii(b, nb)) {
    /* ASCII fast path: bytes are code points, compared in place. */
    return ScoreAscii(is_jaro_winkler, a, na, b, nb, metric->prefix_weight,
                      metric->boost_threshold, scratch);
  }
  int64_t factor = metric->token_sort ? 3 : 1;
  if (Grow((void**)&scratch->cp[0], &scratch->cp_capacity[0], na * factor + 1,
           sizeof(uint32_t)) != 0 ||
      Grow((void**)&scratch->cp[1], &scratch->cp_capacity[1], nb * factor + 1,
           sizeof(uint32_t)) != 0) {
    scratch->out_of_memory = 1;
    return 0.0;
  }
  uint32_t* s1 = scratch->cp[0];
  uint32_t* s2 = scratch->cp[1];
  int64_t len1 = ToCodePoints(a, na, s1);
  int64_t len2 = ToCodePoints(b, nb, s2);
  if (metric->token_sort) {
    int64_t most = (len1 > len2 ? len1 : len2) + 1;
    if (Grow((void**)&scratch->tokens, &scratch->tokens_capacity, most, sizeof(MlpToken)) != 0) {
      scratch->out_of_memory = 1;
      return 0.0;
    }
    /* The code points fill [0, len) of a buffer sized for 3 * bytes >= 3 * len. */
    len1 = TokenSort(s1, len1, scratch->tokens, &s1);
    len2 = TokenSort(s2, len2, scratch->tokens, &s2);
  }
  return ScoreCodePoints(is_jaro_winkler, s1, len1, s2, len2, metric->prefix_weight,
                         metric->boost_threshold, scratch);
}

static inline int IsListType(enum ArrowType type) {
  return type == NANOARROW_TYPE_LIST || type == NANOARROW_TYPE_LARGE_LIST;
}

/* The text of row i of a list-of-strings view: its non-null items joined by one space, in the
 * side's scratch buffer. */
static struct ArrowBufferView JoinListItems(const struct ArrowArrayView* view, int64_t i,
                                            MlpScratch* scratch, int side) {
  const struct ArrowArrayView* items = view->children[0];
  int64_t first;
  int64_t stop;
  if (view->storage_type == NANOARROW_TYPE_LIST) {
    first = view->buffer_views[1].data.as_int32[view->offset + i];
    stop = view->buffer_views[1].data.as_int32[view->offset + i + 1];
  } else {
    first = view->buffer_views[1].data.as_int64[view->offset + i];
    stop = view->buffer_views[1].data.as_int64[view->offset + i + 1];
  }
  struct ArrowBufferView joined;
  joined.data.as_uint8 = NULL;
  joined.size_bytes = 0;
  int64_t size = 0;
  int64_t joined_items = 0;
  for (int64_t k = first; k < stop; k++) {
    if (ArrowArrayViewIsNull(items, k)) continue;
    struct ArrowBufferView item = ArrowArrayViewGetBytesUnsafe(items, k);
    /* A space between every two non-null items, empty ones included (as str.join does). */
    int separator = joined_items++ > 0;
    int64_t needed = size + separator + item.size_bytes;
    if (Grow((void**)&scratch->joined[side], &scratch->joined_capacity[side], needed + 1, 1) !=
        0) {
      scratch->out_of_memory = 1;
      return joined;
    }
    if (separator) scratch->joined[side][size++] = ' ';
    if (item.size_bytes > 0) {
      memcpy(scratch->joined[side] + size, item.data.as_uint8, (size_t)item.size_bytes);
    }
    size += item.size_bytes;
  }
  joined.data.as_uint8 = scratch->joined[side];
  joined.size_bytes = size;
  return joined;
}

/* Scores of rows [begin, end) into scores[row - begin], validity (0/1) into valid[row - begin].
 * The two columns may be chunked differently: the walk advances through both chunk lists. */
static void PairRange(const MlpColumn* left, const MlpColumn* right, const MlpMetric* metric,
                      int64_t begin, int64_t end, double* scores, uint8_t* valid,
                      MlpScratch* scratch) {
  if (begin >= end) return;
  int64_t lc = MlpColumnChunkOf(left, begin);
  int64_t rc = MlpColumnChunkOf(right, begin);
  int64_t row = begin;
  while (row < end) {
    while (left->starts[lc + 1] <= row) lc++;
    while (right->starts[rc + 1] <= row) rc++;
    int64_t stop = end;
    if (left->starts[lc + 1] < stop) stop = left->starts[lc + 1];
    if (right->starts[rc + 1] < stop) stop = right->starts[rc + 1];
    const struct ArrowArrayView* lv = &left->views[lc];
    const struct ArrowArrayView* rv = &right->views[rc];
    int64_t lo = row - left->starts[lc];
    int64_t ro = row - right->starts[rc];
    int l_nullable = lv->buffer_views[0].data.data != NULL;
    int r_nullable = rv->buffer_views[0].data.data != NULL;
    int l_list = IsListType(lv->storage_type);
    int r_list = IsListType(rv->storage_type);
    for (int64_t r = row; r < stop; r++) {
      int64_t li = lo + (r - row);
      int64_t ri = ro + (r - row);
      int64_t k = r - begin;
      if ((l_nullable && ArrowArrayViewIsNull(lv, li)) ||
          (r_nullable && ArrowArrayViewIsNull(rv, ri))) {
        scores[k] = 0.0;
        valid[k] = 0;
        continue;
      }
      struct ArrowBufferView a =
          l_list ? JoinListItems(lv, li, scratch, 0) : ArrowArrayViewGetBytesUnsafe(lv, li);
      struct ArrowBufferView b =
          r_list ? JoinListItems(rv, ri, scratch, 1) : ArrowArrayViewGetBytesUnsafe(rv, ri);
      scores[k] = PairScore(metric, a.data.as_uint8, a.size_bytes, b.data.as_uint8,
                            b.size_bytes, scratch);
      valid[k] = 1;
    }
    row = stop;
  }
}

/* ------------------------------------------------------------------------------------------ */
/* Argument parsing                                                                           */

static int ParseUnitFloat(PyObject* obj, const char* func, const char* argname, double low,
                          double high, double* out) {
  double value = PyFloat_AsDouble(obj);
  if (value == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();
    MlpRaise("%s() argument '%s': expected a float in [%g, %g], got %s", func, argname, low,
             high, Py_TYPE(obj)->tp_name);
    return -1;
  }
  if (!(value >= low && value <= high)) {
    MlpRaise("%s() argument '%s': expected a float in [%g, %g], got %g", func, argname, low,
             high, value);
    return -1;
  }
  *out = value;
  return 0;
}

static int ParseMetricName(PyObject* obj, const char* func, const char* argname,
                           MlpMetric* metric) {
  const char* name = PyUnicode_Check(obj) ? PyUnicode_AsUTF8(obj) : NULL;
  if (name == NULL) PyErr_Clear();
  metric->prefix_weight = 0.1;
  metric->boost_threshold = 0.7;
  if (name != NULL && strcmp(name, "jaro_winkler") == 0) {
    metric->kind = MLP_METRIC_JARO_WINKLER;
    metric->token_sort = 0;
  } else if (name != NULL && strcmp(name, "levenshtein") == 0) {
    metric->kind = MLP_METRIC_LEVENSHTEIN;
    metric->token_sort = 0;
  } else if (name != NULL && strcmp(name, "token_sort_jaro_winkler") == 0) {
    metric->kind = MLP_METRIC_JARO_WINKLER;
    metric->token_sort = 1;
  } else if (name != NULL && strcmp(name, "token_sort_levenshtein") == 0) {
    metric->kind = MLP_METRIC_LEVENSHTEIN;
    metric->token_sort = 1;
  } else {
    PyObject* repr = PyObject_Repr(obj);
    MlpRaise("%s() argument '%s': expected one of 'jaro_winkler', 'levenshtein', "
             "'token_sort_jaro_winkler', 'token_sort_levenshtein', got %s",
             func, argname, MlpReprText(repr));
    Py_XDECREF(repr);
    return -1;
  }
  return 0;
}

/* Open a text column: strings, or lists whose items are strings. */
static int OpenText(PyObject* obj, const char* func, const char* argname, MlpColumn* column) {
  if (MlpColumnOpen(obj, func, argname, MlpTextTypes, MLP_TEXT_EXPECTED, column) != 0) return -1;
  if (!IsListType(column->type)) return 0;
  struct ArrowSchemaView items;
  struct ArrowError error;
  error.message[0] = '\0';
  const struct ArrowSchema* child =
      column->input.schema.n_children == 1 ? column->input.schema.children[0] : NULL;
  int ok = child != NULL && ArrowSchemaViewInit(&items, child, &error) == NANOARROW_OK &&
           child->dictionary == NULL;
  if (ok) {
    ok = 0;
    for (const enum ArrowType* t = MlpStringTypes; *t != NANOARROW_TYPE_UNINITIALIZED; t++) {
      if (*t == items.type) ok = 1;
    }
  }
  if (!ok) {
    MlpRaise("%s() argument '%s': unsupported Arrow type with format '%s' (items of format "
             "'%s'); expected %s",
             func, argname, column->input.format,
             child != NULL && child->format != NULL ? child->format : "?", MLP_TEXT_EXPECTED);
    MlpColumnClose(column);
    return -1;
  }
  return 0;
}

/* Open the left/right string columns named `left_name`/`right_name` and check their lengths. */
static int OpenPair(PyObject* left_obj, PyObject* right_obj, const char* func,
                    const char* left_name, const char* right_name, MlpColumn* left,
                    MlpColumn* right) {
  if (OpenText(left_obj, func, left_name, left) != 0) return -1;
  if (OpenText(right_obj, func, right_name, right) != 0) {
    MlpColumnClose(left);
    return -1;
  }
  if (left->length != right->length) {
    MlpRaise("%s() argument '%s': length %lld (format '%s') does not match argument '%s' of "
             "length %lld (format '%s'); expected two aligned columns of equal length",
             func, right_name, (long long)right->length, right->input.format, left_name,
             (long long)left->length, left->input.format);
    MlpColumnClose(left);
    MlpColumnClose(right);
    return -1;
  }
  return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Similarity kernels                                                                         */

static PyObject* RunSimilarity(const char* func, PyObject* left_obj, PyObject* right_obj,
                               const MlpMetric* metric, int threads);

PyObject* MlpJaroWinklerSimilarity(PyObject* self, PyObject* args, PyObject* kwargs) {
  static char* keywords[] = {"left",      "right",   "prefix_weight", "boost_threshold",
                             "token_sort", "threads", NULL};
  const char* func = "jaro_winkler_similarity";
  PyObject* left;
  PyObject* right;
  PyObject* prefix_weight = NULL;
  PyObject* boost_threshold = NULL;
  int token_sort = 0;
  PyObject* threads_obj = Py_None;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|$OOpO:jaro_winkler_similarity", keywords,
                                   &left, &right, &prefix_weight, &boost_threshold, &token_sort,
                                   &threads_obj)) {
    return NULL;
  }
  MlpMetric metric = {MLP_METRIC_JARO_WINKLER, token_sort, 0.1, 0.7};
  if (prefix_weight != NULL &&
      ParseUnitFloat(prefix_weight, func, "prefix_weight", 0.0, 0.25, &metric.prefix_weight) !=
          0) {
    return NULL;
  }
  if (boost_threshold != NULL && ParseUnitFloat(boost_threshold, func, "boost_threshold", 0.0,
                                                1.0, &metric.boost_threshold) != 0) {
    return NULL;
  }
  int threads;
  if (MlpParseThreads(threads_obj, func, &threads) != 0) return NULL;
  return RunSimilarity(func, left, right, &metric, threads);
}

PyObject* MlpLevenshteinSimilarity(PyObject* self, PyObject* args, PyObject* kwargs) {
  static char* keywords[] = {"left", "right", "token_sort", "threads", NULL};
  const char* func = "levenshtein_similarity";
  PyObject* left;
  PyObject* right;
  int token_sort = 0;
  PyObject* threads_obj = Py_None;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|$pO:levenshtein_similarity", keywords,
                                   &left, &right, &token_sort, &threads_obj)) {
    return NULL;
  }
  MlpMetric metric = {MLP_METRIC_LEVENSHTEIN, token_sort, 0.0, 0.0};
  int threads;
  if (MlpParseThreads(threads_obj, func, &threads) != 0) return NULL;
  return RunSimilarity(func, left, right, &metric, threads);
}

/* ------------------------------------------------------------------------------------------ */
/* Fused matcher                                                                              */

typedef struct {
  MlpColumn left;
  MlpColumn right;
  MlpMetric metric;
  double weight;
  int open;
} MlpField;

typedef struct {
  MlpField* fields;
  int64_t n_fields;
  double* scores;
  uint8_t* validity;
  int with_threshold;
  double threshold;
  int64_t null_counts[256];
  int failed[256];
  int64_t* matches[256]; /* per thread, in row order */
  int64_t match_counts[256];
  int64_t match_capacity[256];
} MlpMatchTask;

static void MatchRange(void* ctx, int index, int64_t begin, int64_t end) {
  MlpMatchTask* task = (MlpMatchTask*)ctx;
  MlpScratch scratch;
  ScratchInit(&scratch);
  double* field_scores = malloc(MLP_BLOCK_ROWS * sizeof(double));
  double* sums = malloc(MLP_BLOCK_ROWS * sizeof(double));
  double* weights = malloc(MLP_BLOCK_ROWS * sizeof(double));
  uint8_t* valid = malloc(MLP_BLOCK_ROWS);
  int64_t nulls = 0;
  int failed = field_scores == NULL || sums == NULL || weights == NULL || valid == NULL;
  for (int64_t block = begin; !failed && block < end; block += MLP_BLOCK_ROWS) {
    int64_t stop = block + MLP_BLOCK_ROWS < end ? block + MLP_BLOCK_ROWS : end;
    int64_t n = stop - block;
    memset(sums, 0, (size_t)n * sizeof(double));
    memset(weights, 0, (size_t)n * sizeof(double));
    for (int64_t f = 0; f < task->n_fields; f++) {
      const MlpField* field = &task->fields[f];
      PairRange(&field->left, &field->right, &field->metric, block, stop, field_scores, valid,
                &scratch);
      for (int64_t i = 0; i < n; i++) {
        /* Fields with a null on either side drop out of this row's weighted mean. */
        if (valid[i]) {
          sums[i] += field->weight * field_scores[i];
          weights[i] += field->weight;
        }
      }
    }
    uint8_t* bits = task->validity + block / 8;
    for (int64_t i = 0; i < n; i += 8) {
      uint8_t byte = 0;
      for (int64_t b = 0; b < 8 && i + b < n; b++) {
        int64_t k = i + b;
        int is_valid = weights[k] > 0.0;
        double score = is_valid ? sums[k] / weights[k] : 0.0;
        task->scores[block + k] = score;
        byte |= (uint8_t)(is_valid << b);
        nulls += !is_valid;
        if (task->with_threshold && is_valid && score >= task->threshold) {
          if (Grow((void**)&task->matches[index], &task->match_capacity[index],
                   task->match_counts[index] + 1, sizeof(int64_t)) != 0) {
            failed = 1;
            break;
          }
          task->matches[index][task->match_counts[index]++] = block + k;
        }
      }
      bits[i / 8] = byte;
    }
  }
  free(field_scores);
  free(sums);
  free(weights);
  free(valid);
  task->null_counts[index] = nulls;
  task->failed[index] = failed || scratch.out_of_memory;
  ScratchFree(&scratch);
}

static void CloseFields(MlpField* fields, int64_t n) {
  for (int64_t f = 0; f < n; f++) {
    if (fields[f].open) {
      MlpColumnClose(&fields[f].left);
      MlpColumnClose(&fields[f].right);
    }
  }
  PyMem_Free(fields);
}

static int OpenFields(PyObject* fields_obj, const char* func, MlpField** out, int64_t* n_out) {
  PyObject* sequence =
      PySequence_Check(fields_obj) && !PyUnicode_Check(fields_obj)
          ? PySequence_Fast(fields_obj, "fields")
          : NULL;
  if (sequence == NULL) {
    PyErr_Clear();
    MlpRaise("%s() argument 'fields': expected a sequence of (left, right, weight, metric) "
             "tuples, got %s",
             func, Py_TYPE(fields_obj)->tp_name);
    return -1;
  }
  Py_ssize_t n = PySequence_Fast_GET_SIZE(sequence);
  if (n == 0) {
    Py_DECREF(sequence);
    MlpRaise("%s() argument 'fields': expected at least one (left, right, weight, metric) "
             "tuple, got an empty sequence",
             func);
    return -1;
  }
  MlpField* fields = PyMem_Calloc((size_t)n, sizeof(MlpField));
  if (fields == NULL) {
    Py_DECREF(sequence);
    PyErr_NoMemory();
    return -1;
  }
  int64_t length = -1;
  for (Py_ssize_t f = 0; f < n; f++) {
    PyObject* item = PySequence_Fast_GET_ITEM(sequence, f);
    char name_left[64];
    char name_right[64];
    char name_weight[64];
    char name_metric[64];
    snprintf(name_left, sizeof(name_left), "fields[%zd].left", f);
    snprintf(name_right, sizeof(name_right), "fields[%zd].right", f);
    snprintf(name_weight, sizeof(name_weight), "fields[%zd].weight", f);
    snprintf(name_metric, sizeof(name_metric), "fields[%zd].metric", f);
    if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 4) {
      MlpRaise("%s() argument 'fields[%zd]': expected a (left, right, weight, metric) tuple, "
               "got %s",
               func, f, Py_TYPE(item)->tp_name);
      goto fail;
    }
    MlpField* field = &fields[f];
    double weight = PyFloat_AsDouble(PyTuple_GET_ITEM(item, 2));
    if (weight == -1.0 && PyErr_Occurred()) {
      PyErr_Clear();
      MlpRaise("%s() argument '%s': expected a float > 0, got %s", func, name_weight,
               Py_TYPE(PyTuple_GET_ITEM(item, 2))->tp_name);
      goto fail;
    }
    if (!(weight > 0.0 && weight < 1e300)) {
      MlpRaise("%s() argument '%s': expected a finite float > 0, got %g", func, name_weight,
               weight);
      goto fail;
    }
    field->weight = weight;
    if (ParseMetricName(PyTuple_GET_ITEM(item, 3), func, name_metric, &field->metric) != 0) {
      goto fail;
    }
    if (OpenPair(PyTuple_GET_ITEM(item, 0), PyTuple_GET_ITEM(item, 1), func, name_left,
                 name_right, &field->left, &field->right) != 0) {
      goto fail;
    }
    field->open = 1;
    if (length >= 0 && field->left.length != length) {
      MlpRaise("%s() argument '%s': length %lld (format '%s') does not match the %lld rows of "
               "fields[0]; expected every field to have the same number of rows",
               func, name_left, (long long)field->left.length, field->left.input.format,
               (long long)length);
      goto fail;
    }
    length = field->left.length;
  }
  Py_DECREF(sequence);
  *out = fields;
  *n_out = n;
  return 0;
fail:
  Py_DECREF(sequence);
  CloseFields(fields, n);
  return -1;
}

static PyObject* RunFields(MlpField* fields, int64_t n_fields, int with_threshold,
                           double threshold, int threads);

static PyObject* RunSimilarity(const char* func, PyObject* left_obj, PyObject* right_obj,
                               const MlpMetric* metric, int threads) {
  MlpField* field = PyMem_Calloc(1, sizeof(MlpField));
  if (field == NULL) return PyErr_NoMemory();
  if (OpenPair(left_obj, right_obj, func, "left", "right", &field->left, &field->right) != 0) {
    PyMem_Free(field);
    return NULL;
  }
  field->open = 1;
  field->metric = *metric;
  field->weight = 1.0;
  return RunFields(field, 1, 0, 0.0, threads);
}

PyObject* MlpMatchPairs(PyObject* self, PyObject* args, PyObject* kwargs) {
  static char* keywords[] = {"fields", "threshold", "threads", NULL};
  const char* func = "match_pairs";
  PyObject* fields_obj;
  PyObject* threshold_obj = Py_None;
  PyObject* threads_obj = Py_None;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|$OO:match_pairs", keywords, &fields_obj,
                                   &threshold_obj, &threads_obj)) {
    return NULL;
  }
  int threads;
  if (MlpParseThreads(threads_obj, func, &threads) != 0) return NULL;
  double threshold = 0.0;
  int with_threshold = threshold_obj != Py_None;
  if (with_threshold &&
      ParseUnitFloat(threshold_obj, func, "threshold", 0.0, 1.0, &threshold) != 0) {
    return NULL;
  }
  MlpField* fields;
  int64_t n_fields;
  if (OpenFields(fields_obj, func, &fields, &n_fields) != 0) return NULL;
  return RunFields(fields, n_fields, with_threshold, threshold, threads);
}

/* Score `fields` (closed and freed here) into a weighted mean, with matching rows on request. */
static PyObject* RunFields(MlpField* fields, int64_t n_fields, int with_threshold,
                           double threshold, int threads) {
  int64_t length = fields[0].left.length;
  MlpOutput out;
  if (MlpOutputInit(&out, NANOARROW_TYPE_DOUBLE, length) != 0) {
    CloseFields(fields, n_fields);
    return NULL;
  }
  MlpMatchTask* task = PyMem_Calloc(1, sizeof(MlpMatchTask));
  if (task == NULL) {
    MlpOutputRelease(&out);
    CloseFields(fields, n_fields);
    return PyErr_NoMemory();
  }
  task->fields = fields;
  task->n_fields = n_fields;
  task->scores = (double*)out.values;
  task->validity = out.validity;
  task->with_threshold = with_threshold;
  task->threshold = threshold;
  Py_BEGIN_ALLOW_THREADS;
  MlpParallelFor(threads, length, MLP_BLOCK_ROWS, MatchRange, task);
  Py_END_ALLOW_THREADS;
  CloseFields(fields, n_fields);

  int64_t nulls = 0;
  int64_t n_matches = 0;
  int failed = 0;
  for (int t = 0; t < 256; t++) {
    nulls += task->null_counts[t];
    n_matches += task->match_counts[t];
    failed |= task->failed[t];
  }
  PyObject* result = NULL;
  PyObject* scores = NULL;
  if (failed) {
    MlpOutputRelease(&out);
    PyErr_NoMemory();
    goto done;
  }
  scores = MlpOutputFinish(&out, nulls);
  if (scores == NULL || !with_threshold) {
    result = scores;
    goto done;
  }
  MlpOutput indices;
  if (MlpOutputInit(&indices, NANOARROW_TYPE_INT64, n_matches) != 0) {
    Py_DECREF(scores);
    goto done;
  }
  int64_t k = 0;
  for (int t = 0; t < 256; t++) {
    if (task->match_counts[t] > 0) {
      memcpy((int64_t*)indices.values + k, task->matches[t],
             (size_t)task->match_counts[t] * sizeof(int64_t));
      k += task->match_counts[t];
    }
  }
  PyObject* indices_result = MlpOutputFinish(&indices, 0);
  if (indices_result == NULL) {
    Py_DECREF(scores);
    goto done;
  }
  result = Py_BuildValue("(NN)", scores, indices_result);
done:
  for (int t = 0; t < 256; t++) free(task->matches[t]);
  PyMem_Free(task);
  return result;
}
