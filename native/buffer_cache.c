/* A cache of the kernels' large output buffers.
 *
 * A read decodes gigabytes into fresh memory, and every fresh 4 KiB page costs a page fault
 * (about 0.4 s per GiB here). Allocators hand large freed blocks back to the system, so the
 * next read pays those faults again: pyarrow's jemalloc pool does so for blocks of 7 MiB and
 * more, and with many blocks outstanding for smaller ones too (a projection of the benchmark
 * table faulted 45-70 thousand pages on every read after the first). This cache keeps the
 * blocks Arrow releases, and hands them out again to the next buffers of about their size.
 *
 * Bounds: it retains at most `limit` bytes (set_buffer_cache_limit; a block freed beyond it is
 * unmapped at once), and trim_buffer_cache(older_than) unmaps the blocks freed longer ago than
 * that (the reader calls it on a timer, so that memory a process no longer reads into goes
 * back to the system within seconds, as jemalloc's decay does). Blocks are mmap'ed directly:
 * malloc would keep freed memory in its heap, where trimming cannot give it back.
 *
 * Arrow releases buffers on any thread, with or without the GIL: the free lists are under a
 * pthread mutex, held across fork() (pthread_atfork) so that a child never inherits it
 * locked. */
#include "mlp_kernels.h" /* Python.h first: it sets the feature macros (MAP_ANONYMOUS) */

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#ifndef MAP_ANONYMOUS
#define MAP_ANONYMOUS MAP_ANON
#endif

/* Under AddressSanitizer, a block's bytes past the buffer handed out, and a whole block while it
 * is cached, are poisoned: an overrun of a buffer, or a use after Arrow freed it, is reported as
 * it would be for malloc'ed memory. */
#if defined(__SANITIZE_ADDRESS__) /* GCC's */
#define MLP_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) /* clang's */
#define MLP_ASAN 1
#endif
#endif
#if defined(MLP_ASAN)
#include <sanitizer/asan_interface.h>
#define MLP_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (size_t)(n))
#define MLP_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (size_t)(n))
#else
#define MLP_POISON(p, n) ((void)(p), (void)(n))
#define MLP_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* Sizes are kept in multiples of this; smaller buffers come from malloc, which reuses small
 * blocks itself. */
#define MLP_CACHE_GRAIN ((int64_t)64 << 10)
/* Blocks up to this size are cached (the decoder's buffers are at most about 8 MiB); larger
 * ones are mapped and unmapped each time. */
#define MLP_CACHE_CLASSES 256 /* 16 MiB / MLP_CACHE_GRAIN */

typedef struct MlpBlock {
  uint8_t* base;
  int64_t size; /* a multiple of MLP_CACHE_GRAIN */
  double freed_at;
  struct MlpBlock* next;
} MlpBlock;

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static MlpBlock* free_blocks[MLP_CACHE_CLASSES + 1]; /* by size / MLP_CACHE_GRAIN, newest first */
static int64_t retained_bytes;
static int64_t retained_blocks;
static int64_t outstanding_bytes;
static int64_t cache_limit = -1; /* -1: not yet set (DefaultLimit) */
static int64_t hits;
static int64_t misses;

static double Now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* The memory limit of this process's control group (a container's, a Kubernetes pod's), or -1:
 * the machine's memory is not what a pod may use. */
static int64_t CgroupLimit(void) {
  static const char* const files[] = {"/sys/fs/cgroup/memory.max", /* v2 */
                                      "/sys/fs/cgroup/memory/memory.limit_in_bytes"};
  for (int k = 0; k < 2; k++) {
    FILE* file = fopen(files[k], "r");
    if (file == NULL) continue;
    long long bytes = -1;
    int read = fscanf(file, "%lld", &bytes); /* v2's "max" (no limit) reads nothing */
    fclose(file);
    if (read == 1 && bytes > 0) return (int64_t)bytes;
  }
  return -1;
}

/* An eighth of the memory this process may use (the machine's, or its control group's if less),
 * at most 4 GiB: what a previous read may hold on to. */
static int64_t DefaultLimit(void) {
  long pages = sysconf(_SC_PHYS_PAGES);
  long page_size = sysconf(_SC_PAGESIZE);
  int64_t memory = (pages > 0 && page_size > 0) ? (int64_t)pages * page_size : ((int64_t)2 << 30);
  int64_t group = CgroupLimit();
  if (group > 0 && group < memory) memory = group;
  int64_t limit = memory / 8;
  return limit < ((int64_t)4 << 30) ? limit : ((int64_t)4 << 30);
}

static void LockForFork(void) { pthread_mutex_lock(&cache_lock); }
static void UnlockAfterFork(void) { pthread_mutex_unlock(&cache_lock); }

static pthread_once_t fork_handlers_once = PTHREAD_ONCE_INIT;
static int fork_handlers_failed;
static void RegisterForkHandlers(void) {
  fork_handlers_failed = pthread_atfork(LockForFork, UnlockAfterFork, UnlockAfterFork) != 0;
}

int MlpBufferCacheInit(void) {
  /* Once per process, however often the module is initialised: twice would lock twice at fork. */
  pthread_once(&fork_handlers_once, RegisterForkHandlers);
  return fork_handlers_failed ? -1 : 0;
}

static void UnmapBlock(MlpBlock* block) {
  MLP_UNPOISON(block->base, block->size);
  munmap(block->base, (size_t)block->size);
  free(block);
}

static void CacheFree(struct ArrowBufferAllocator* allocator, uint8_t* ptr, int64_t size) {
  (void)ptr;
  (void)size;
  MlpBlock* block = (MlpBlock*)allocator->private_data;
  MLP_POISON(block->base, block->size);
  pthread_mutex_lock(&cache_lock);
  outstanding_bytes -= block->size;
  int64_t index = block->size / MLP_CACHE_GRAIN;
  if (cache_limit < 0) cache_limit = DefaultLimit();
  if (index <= MLP_CACHE_CLASSES && retained_bytes + block->size <= cache_limit) {
    block->freed_at = Now();
    block->next = free_blocks[index];
    free_blocks[index] = block;
    retained_bytes += block->size;
    retained_blocks++;
    block = NULL;
  }
  pthread_mutex_unlock(&cache_lock);
  if (block != NULL) UnmapBlock(block);
}

/* A cached block of at least `size` bytes and at most a quarter more, or NULL. */
static MlpBlock* TakeBlock(int64_t size) {
  int64_t first = size / MLP_CACHE_GRAIN;
  int64_t last = first + first / 4;
  if (last > MLP_CACHE_CLASSES) last = MLP_CACHE_CLASSES;
  for (int64_t index = first; index <= last; index++) {
    MlpBlock* block = free_blocks[index];
    if (block != NULL) {
      free_blocks[index] = block->next;
      retained_bytes -= block->size;
      retained_blocks--;
      return block;
    }
  }
  return NULL;
}

int MlpBufferCacheReserve(struct ArrowBuffer* buffer, int64_t size) {
  if (size < MLP_CACHE_GRAIN) {
    ArrowBufferReset(buffer);
    return ArrowBufferReserve(buffer, size > 0 ? size : 1) == NANOARROW_OK ? 0 : -1;
  }
  int64_t rounded = (size + MLP_CACHE_GRAIN - 1) / MLP_CACHE_GRAIN * MLP_CACHE_GRAIN;
  pthread_mutex_lock(&cache_lock);
  MlpBlock* block = rounded / MLP_CACHE_GRAIN <= MLP_CACHE_CLASSES ? TakeBlock(rounded) : NULL;
  if (block != NULL) {
    hits++;
  } else {
    misses++;
  }
  outstanding_bytes += block != NULL ? block->size : rounded;
  pthread_mutex_unlock(&cache_lock);
  if (block == NULL) {
    block = (MlpBlock*)malloc(sizeof(MlpBlock));
    void* base = block == NULL ? MAP_FAILED
                               : mmap(NULL, (size_t)rounded, PROT_READ | PROT_WRITE,
                                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) {
      free(block);
      pthread_mutex_lock(&cache_lock);
      outstanding_bytes -= rounded;
      pthread_mutex_unlock(&cache_lock);
      return -1;
    }
    block->base = (uint8_t*)base;
    block->size = rounded;
    block->next = NULL;
    MLP_POISON(block->base, block->size);
  }
  MLP_UNPOISON(block->base, size);
  ArrowBufferReset(buffer);
  ArrowBufferSetAllocator(buffer, ArrowBufferDeallocator(CacheFree, block));
  buffer->data = block->base;
  buffer->capacity_bytes = size;
  buffer->size_bytes = 0;
  return 0;
}

/* Unmaps the cached blocks freed at least `older_than` seconds ago (all of them at 0) and, with
 * a limit given, first lowers the limit to it; returns the bytes unmapped. */
static int64_t Trim(double older_than, int64_t new_limit) {
  MlpBlock* released = NULL;
  int64_t bytes = 0;
  pthread_mutex_lock(&cache_lock);
  if (new_limit >= 0) cache_limit = new_limit;
  if (cache_limit < 0) cache_limit = DefaultLimit();
  double cutoff = Now() - older_than;
  for (int index = 0; index <= MLP_CACHE_CLASSES; index++) {
    MlpBlock** link = &free_blocks[index];
    while (*link != NULL) {
      MlpBlock* block = *link;
      if (block->freed_at <= cutoff || retained_bytes > cache_limit) {
        *link = block->next;
        retained_bytes -= block->size;
        retained_blocks--;
        bytes += block->size;
        block->next = released;
        released = block;
      } else {
        link = &block->next;
      }
    }
  }
  pthread_mutex_unlock(&cache_lock);
  while (released != NULL) {
    MlpBlock* next = released->next;
    UnmapBlock(released);
    released = next;
  }
  return bytes;
}

PyObject* MlpTrimBufferCache(PyObject* self, PyObject* args, PyObject* kwargs) {
  static char* keywords[] = {"older_than", NULL};
  double older_than = 0.0;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|d:trim_buffer_cache", keywords, &older_than)) {
    return NULL;
  }
  if (!(older_than >= 0.0)) {
    return MlpRaise("trim_buffer_cache(): older_than must be seconds >= 0; got %f", older_than);
  }
  int64_t bytes;
  Py_BEGIN_ALLOW_THREADS;
  bytes = Trim(older_than, -1);
  Py_END_ALLOW_THREADS;
  return PyLong_FromLongLong((long long)bytes);
}

PyObject* MlpSetBufferCacheLimit(PyObject* self, PyObject* args, PyObject* kwargs) {
  static char* keywords[] = {"limit_bytes", NULL};
  long long limit;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "L:set_buffer_cache_limit", keywords, &limit)) {
    return NULL;
  }
  if (limit < 0) {
    return MlpRaise("set_buffer_cache_limit(): limit_bytes must be >= 0; got %lld", limit);
  }
  Py_BEGIN_ALLOW_THREADS;
  /* Blocks beyond the new limit go now; the others stay. */
  Trim(1e300, (int64_t)limit);
  Py_END_ALLOW_THREADS;
  Py_RETURN_NONE;
}

PyObject* MlpBufferCacheInfo(PyObject* self, PyObject* Py_UNUSED(ignored)) {
  pthread_mutex_lock(&cache_lock);
  if (cache_limit < 0) cache_limit = DefaultLimit();
  long long retained = (long long)retained_bytes, blocks = (long long)retained_blocks;
  long long outstanding = (long long)outstanding_bytes, limit = (long long)cache_limit;
  long long hit = (long long)hits, miss = (long long)misses;
  pthread_mutex_unlock(&cache_lock);
  return Py_BuildValue("{sLsLsLsLsLsL}", "retained_bytes", retained, "retained_blocks", blocks,
                       "outstanding_bytes", outstanding, "limit_bytes", limit, "hits", hit,
                       "misses", miss);
}
