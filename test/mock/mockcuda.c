// A stand-in for libcuda.so.1 with the driver entry points src/backend/cuda/ffi.ts binds, for CI machines
// without a GPU. It lets the TypeScript side be exercised for real through koffi: argument marshalling
// (out-pointers, 64-bit device pointers, opaque handles, the kernel parameter table), error codes and
// their cuGetErrorName/cuGetErrorString text, module loading and parameter-info checks, and stream
// capture into graphs that replay.
//
// "Device" memory is host memory from malloc, so a device pointer is a host address (x86-64 user space
// is 47 bits: it stays a safe JS integer). Copies are memcpy and run at once; a stream is always idle.
// A "cubin" is a text image:
//     MOCKCUBIN
//     <kernel name> <param size>,<param size>,...
// Parameters are laid out as nvcc does for these sizes: each at the next multiple of min(size, 8).
// Launches are recorded (mockcuda_last_launch reads the latest back) and one kernel really runs:
// mock_axpy(int64 n, float a, float* x, float* y): y[i] += a · x[i]. During stream capture launches are
// appended to the graph (with a copy of their argument bytes, as CUDA does) instead of running.
//
// Knobs (read at each call): MOCKCUDA_INIT_ERROR=<code> makes cuInit fail with that code;
// MOCKCUDA_MEM_LIMIT=<bytes> makes cuMemAlloc fail with CUDA_ERROR_OUT_OF_MEMORY beyond that many live bytes.
//
// Build: gcc -shared -fPIC -O1 -o libmockcuda.so test/mock/mockcuda.c
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

typedef int CUresult;
#define OK 0
#define E_INVALID_VALUE 1
#define E_OUT_OF_MEMORY 2
#define E_NOT_INITIALIZED 3
#define E_NO_DEVICE 100
#define E_INVALID_DEVICE 101
#define E_INVALID_IMAGE 200
#define E_INVALID_HANDLE 400
#define E_NOT_FOUND 500
#define E_NOT_READY 600
#define E_ILLEGAL_ADDRESS 700
#define E_LAUNCH_FAILED 719
#define E_CAPTURE_INVALIDATED 901
#define E_GRAPH_UPDATE_FAILURE 910

static const struct {
  int code;
  const char *name, *text;
} ERRORS[] = {
    {OK, "CUDA_SUCCESS", "no error"},
    {E_INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {E_OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {E_NOT_INITIALIZED, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {E_NO_DEVICE, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {E_INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
    {E_INVALID_IMAGE, "CUDA_ERROR_INVALID_IMAGE", "device kernel image is invalid"},
    {E_INVALID_HANDLE, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
    {E_NOT_FOUND, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
    {E_NOT_READY, "CUDA_ERROR_NOT_READY", "device not ready"},
    {E_ILLEGAL_ADDRESS, "CUDA_ERROR_ILLEGAL_ADDRESS", "an illegal memory access was encountered"},
    {E_LAUNCH_FAILED, "CUDA_ERROR_LAUNCH_FAILED", "unspecified launch failure"},
    {E_CAPTURE_INVALIDATED, "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED", "operation failed due to a previous error during capture"},
    {E_GRAPH_UPDATE_FAILURE, "CUDA_ERROR_GRAPH_EXEC_UPDATE_FAILURE", "the graph update was not performed because it included changes which violated constraints specific to instantiated graph update"},
};

static int initialized = 0;
static size_t live_bytes = 0;
static size_t live_allocs = 0;

static long env_long(const char* name, long dflt) {
  const char* v = getenv(name);
  return v && *v ? strtol(v, NULL, 10) : dflt;
}

// ---- errors, init, device -----------------------------------------------------------------------------
CUresult cuGetErrorName(CUresult e, const char** s) {
  for (size_t i = 0; i < sizeof ERRORS / sizeof ERRORS[0]; i++)
    if (ERRORS[i].code == e) { *s = ERRORS[i].name; return OK; }
  *s = NULL;
  return E_INVALID_VALUE;
}
CUresult cuGetErrorString(CUresult e, const char** s) {
  for (size_t i = 0; i < sizeof ERRORS / sizeof ERRORS[0]; i++)
    if (ERRORS[i].code == e) { *s = ERRORS[i].text; return OK; }
  *s = NULL;
  return E_INVALID_VALUE;
}
CUresult cuInit(unsigned int flags) {
  const long fail = env_long("MOCKCUDA_INIT_ERROR", 0);
  if (fail) return (CUresult)fail;
  if (flags != 0) return E_INVALID_VALUE;
  initialized = 1;
  return OK;
}
#define NEED_INIT() do { if (!initialized) return E_NOT_INITIALIZED; } while (0)
CUresult cuDriverGetVersion(int* v) { *v = 13000; return OK; }
CUresult cuDeviceGetCount(int* n) { NEED_INIT(); *n = 1; return OK; }
CUresult cuDeviceGet(int* dev, int ordinal) {
  NEED_INIT();
  if (ordinal != 0) return E_INVALID_DEVICE;
  *dev = 0;
  return OK;
}
CUresult cuDeviceGetName(char* name, int len, int dev) {
  if (dev != 0) return E_INVALID_DEVICE;
  if (!name || len <= 0) return E_INVALID_VALUE;
  snprintf(name, (size_t)len, "%s", "Mock CUDA device (dsv32 test/mock)");
  return OK;
}
CUresult cuDeviceGetAttribute(int* v, int attrib, int dev) {
  if (dev != 0) return E_INVALID_DEVICE;
  switch (attrib) {
    case 1: *v = 1024; return OK;        // MAX_THREADS_PER_BLOCK
    case 16: *v = 4; return OK;          // MULTIPROCESSOR_COUNT
    case 38: *v = 1 << 20; return OK;    // L2_CACHE_SIZE
    case 75: *v = 9; return OK;          // COMPUTE_CAPABILITY_MAJOR
    case 76: *v = 0; return OK;          // COMPUTE_CAPABILITY_MINOR
    case 97: *v = 232448; return OK;     // MAX_SHARED_MEMORY_PER_BLOCK_OPTIN
    default: return E_INVALID_VALUE;
  }
}
CUresult cuDeviceTotalMem_v2(size_t* bytes, int dev) {
  if (dev != 0) return E_INVALID_DEVICE;
  *bytes = (size_t)1 << 34;
  return OK;
}

// ---- contexts ---------------------------------------------------------------------------------------------
static int the_context;
CUresult cuDevicePrimaryCtxRetain(void** ctx, int dev) {
  NEED_INIT();
  if (dev != 0) return E_INVALID_DEVICE;
  *ctx = &the_context;
  return OK;
}
CUresult cuDevicePrimaryCtxRelease_v2(int dev) { return dev == 0 ? OK : E_INVALID_DEVICE; }
CUresult cuCtxSetCurrent(void* ctx) { return ctx == &the_context || ctx == NULL ? OK : E_INVALID_HANDLE; }
CUresult cuCtxSynchronize(void) { return OK; }

// ---- memory -----------------------------------------------------------------------------------------------
// Blocks come from mmap, so device pointers are high addresses (0x7f...) whose upper 32 bits matter, as
// on a GPU; each carries its size in a header for cuMemFree and the live-byte count.
CUresult cuMemAlloc_v2(uint64_t* dptr, size_t bytes) {
  NEED_INIT();
  if (bytes == 0) return E_INVALID_VALUE;
  const long limit = env_long("MOCKCUDA_MEM_LIMIT", 0);
  if (limit > 0 && live_bytes + bytes > (size_t)limit) return E_OUT_OF_MEMORY;
  void* m = mmap(NULL, bytes + 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return E_OUT_OF_MEMORY;
  size_t* p = (size_t*)m;
  p[0] = bytes;
  live_bytes += bytes;
  live_allocs++;
  *dptr = (uint64_t)(uintptr_t)(p + 2);
  return OK;
}
CUresult cuMemFree_v2(uint64_t dptr) {
  if (!dptr) return E_INVALID_VALUE;
  size_t* p = (size_t*)(uintptr_t)dptr - 2;
  live_bytes -= p[0];
  live_allocs--;
  munmap(p, p[0] + 16);
  return OK;
}
CUresult cuMemGetInfo_v2(size_t* freeb, size_t* total) {
  *total = (size_t)1 << 34;
  *freeb = *total - live_bytes;
  return OK;
}
CUresult cuMemHostAlloc(void** p, size_t bytes, unsigned int flags) {
  (void)flags;
  *p = malloc(bytes ? bytes : 1);
  return *p ? OK : E_OUT_OF_MEMORY;
}
CUresult cuMemFreeHost(void* p) { free(p); return OK; }
CUresult cuMemcpyHtoDAsync_v2(uint64_t dst, const void* src, size_t n, void* s) {
  (void)s;
  if (!dst || !src) return E_INVALID_VALUE;
  memcpy((void*)(uintptr_t)dst, src, n);
  return OK;
}
CUresult cuMemcpyDtoHAsync_v2(void* dst, uint64_t src, size_t n, void* s) {
  (void)s;
  if (!dst || !src) return E_INVALID_VALUE;
  memcpy(dst, (const void*)(uintptr_t)src, n);
  return OK;
}
CUresult cuMemcpyDtoDAsync_v2(uint64_t dst, uint64_t src, size_t n, void* s) {
  (void)s;
  if (!dst || !src) return E_INVALID_VALUE;
  memmove((void*)(uintptr_t)dst, (const void*)(uintptr_t)src, n);
  return OK;
}
CUresult cuMemsetD8Async(uint64_t dst, uint8_t v, size_t n, void* s) {
  (void)s;
  if (!dst) return E_INVALID_VALUE;
  memset((void*)(uintptr_t)dst, v, n);
  return OK;
}

// ---- modules and functions -------------------------------------------------------------------------------
#define MAXF 32
#define MAXP 32
typedef struct {
  char name[64];
  int nparams;
  size_t offset[MAXP], size[MAXP];
  int regs;
} Func;
typedef struct {
  int nfuncs;
  Func funcs[MAXF];
} Module;

CUresult cuModuleLoadData(void** m, const void* image) {
  NEED_INIT();
  const char* t = (const char*)image;
  if (!t || strncmp(t, "MOCKCUBIN\n", 10) != 0) return E_INVALID_IMAGE;
  Module* mod = (Module*)calloc(1, sizeof(Module));
  const char* p = t + 10;
  while (*p && mod->nfuncs < MAXF) {
    Func* f = &mod->funcs[mod->nfuncs];
    int n = 0;
    while (*p && *p != ' ' && *p != '\n' && n < 63) f->name[n++] = *p++;
    f->name[n] = 0;
    if (*p == ' ') p++;
    size_t off = 0;
    while (*p && *p != '\n' && f->nparams < MAXP) {
      char* end;
      const size_t sz = strtoul(p, &end, 10);
      if (end == p || sz == 0) { free(mod); return E_INVALID_IMAGE; }
      const size_t al = sz < 8 ? sz : 8;
      off = (off + al - 1) / al * al;
      f->offset[f->nparams] = off;
      f->size[f->nparams] = sz;
      f->nparams++;
      off += sz;
      p = end;
      if (*p == ',') p++;
    }
    f->regs = 32;
    if (n) mod->nfuncs++;
    if (*p == '\n') p++;
  }
  *m = mod;
  return OK;
}
CUresult cuModuleUnload(void* m) { free(m); return OK; }
CUresult cuModuleGetFunction(void** fn, void* m, const char* name) {
  Module* mod = (Module*)m;
  if (!mod) return E_INVALID_HANDLE;
  for (int i = 0; i < mod->nfuncs; i++)
    if (strcmp(mod->funcs[i].name, name) == 0) { *fn = &mod->funcs[i]; return OK; }
  return E_NOT_FOUND;
}
CUresult cuFuncGetParamInfo(void* fn, size_t index, size_t* offset, size_t* size) {
  Func* f = (Func*)fn;
  if (!f) return E_INVALID_HANDLE;
  if (index >= (size_t)f->nparams) return E_INVALID_VALUE;
  *offset = f->offset[index];
  *size = f->size[index];
  return OK;
}
CUresult cuFuncSetAttribute(void* fn, int attrib, int value) {
  (void)attrib; (void)value;
  return fn ? OK : E_INVALID_HANDLE;
}
CUresult cuFuncGetAttribute(int* v, int attrib, void* fn) {
  Func* f = (Func*)fn;
  if (!f) return E_INVALID_HANDLE;
  *v = attrib == 4 ? f->regs : 0;  // NUM_REGS; everything else (local bytes, ...) is 0
  return OK;
}

// ---- launches, streams, graphs ---------------------------------------------------------------------------
typedef struct {
  Func* f;
  unsigned int dims[7];  // grid x y z, block x y z, shared bytes
  size_t nbytes;
  uint8_t bytes[4096];
} Launch;
typedef struct {
  int n, cap;
  Launch* nodes;
} Graph;
typedef struct {
  Graph* capturing;
} Stream;

static Launch last;
static uint64_t last_stream;

static CUresult run(const Launch* l) {
  if (strcmp(l->f->name, "mock_axpy") == 0) {
    if (l->f->nparams != 4) return E_LAUNCH_FAILED;
    int64_t n;
    float a;
    uint64_t x, y;
    memcpy(&n, l->bytes + l->f->offset[0], 8);
    memcpy(&a, l->bytes + l->f->offset[1], 4);
    memcpy(&x, l->bytes + l->f->offset[2], 8);
    memcpy(&y, l->bytes + l->f->offset[3], 8);
    if (!x || !y) return E_ILLEGAL_ADDRESS;
    float* xp = (float*)(uintptr_t)x;
    float* yp = (float*)(uintptr_t)y;
    for (int64_t i = 0; i < n; i++) yp[i] += a * xp[i];
  }
  return OK;
}

CUresult cuLaunchKernel(void* fn, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx, unsigned int by, unsigned int bz,
                        unsigned int smem, void* stream, void** params, void** extra) {
  Func* f = (Func*)fn;
  if (!f) return E_INVALID_HANDLE;
  if (extra) return E_INVALID_VALUE;
  if (!gx || !gy || !gz || !bx || !by || !bz || (size_t)bx * by * bz > 1024) return E_INVALID_VALUE;
  if (f->nparams && !params) return E_INVALID_VALUE;
  Launch l;
  l.f = f;
  const unsigned int d[7] = {gx, gy, gz, bx, by, bz, smem};
  memcpy(l.dims, d, sizeof d);
  // the argument block as the kernel would see it: parameter i copied from the pointer params[i]
  l.nbytes = f->nparams ? f->offset[f->nparams - 1] + f->size[f->nparams - 1] : 0;
  if (l.nbytes > sizeof l.bytes) return E_INVALID_VALUE;
  memset(l.bytes, 0, l.nbytes);
  for (int i = 0; i < f->nparams; i++) {
    if (!params[i]) return E_INVALID_VALUE;
    memcpy(l.bytes + f->offset[i], params[i], f->size[i]);
  }
  last = l;
  last_stream = (uint64_t)(uintptr_t)stream;
  Stream* s = (Stream*)stream;
  if (s && s->capturing) {
    Graph* g = s->capturing;
    if (g->n == g->cap) {
      g->cap = g->cap ? g->cap * 2 : 8;
      g->nodes = (Launch*)realloc(g->nodes, (size_t)g->cap * sizeof(Launch));
    }
    g->nodes[g->n++] = l;
    return OK;
  }
  return run(&l);
}

CUresult cuStreamCreate(void** s, unsigned int flags) {
  NEED_INIT();
  (void)flags;
  *s = calloc(1, sizeof(Stream));
  return OK;
}
CUresult cuStreamDestroy_v2(void* s) { free(s); return OK; }
CUresult cuStreamSynchronize(void* s) { (void)s; return OK; }
CUresult cuStreamQuery(void* s) { (void)s; return OK; }
CUresult cuStreamBeginCapture_v2(void* stream, int mode) {
  Stream* s = (Stream*)stream;
  if (!s) return E_INVALID_VALUE;  // the legacy stream cannot be captured
  if (mode < 0 || mode > 2) return E_INVALID_VALUE;
  if (s->capturing) return E_INVALID_VALUE;
  s->capturing = (Graph*)calloc(1, sizeof(Graph));
  return OK;
}
CUresult cuStreamEndCapture(void* stream, void** g) {
  Stream* s = (Stream*)stream;
  if (!s || !s->capturing) return E_INVALID_VALUE;
  *g = s->capturing;
  s->capturing = NULL;
  return OK;
}
CUresult cuStreamIsCapturing(void* stream, int* status) {
  Stream* s = (Stream*)stream;
  *status = s && s->capturing ? 1 : 0;
  return OK;
}
static Graph* graph_copy(const Graph* g) {
  Graph* e = (Graph*)calloc(1, sizeof(Graph));
  e->n = e->cap = g->n;
  e->nodes = (Launch*)malloc((size_t)(g->n ? g->n : 1) * sizeof(Launch));
  memcpy(e->nodes, g->nodes, (size_t)g->n * sizeof(Launch));
  return e;
}
CUresult cuGraphInstantiateWithFlags(void** exec, void* graph, unsigned long long flags) {
  (void)flags;
  if (!graph) return E_INVALID_VALUE;
  *exec = graph_copy((Graph*)graph);
  return OK;
}
CUresult cuGraphLaunch(void* exec, void* stream) {
  (void)stream;
  Graph* e = (Graph*)exec;
  if (!e) return E_INVALID_HANDLE;
  for (int i = 0; i < e->n; i++) {
    const CUresult rc = run(&e->nodes[i]);
    if (rc) return rc;
  }
  return OK;
}
// In place only when the topology matches: same kernels in the same order (arguments may change).
CUresult cuGraphExecUpdate_v2(void* exec, void* graph, void* info) {
  Graph* e = (Graph*)exec;
  Graph* g = (Graph*)graph;
  int same = e && g && e->n == g->n;
  for (int i = 0; same && i < g->n; i++) same = e->nodes[i].f == g->nodes[i].f;
  if (info) memset(info, 0, 4);
  if (!same) {
    if (info) *(int*)info = 1;  // CU_GRAPH_EXEC_UPDATE_ERROR
    return E_GRAPH_UPDATE_FAILURE;
  }
  memcpy(e->nodes, g->nodes, (size_t)g->n * sizeof(Launch));
  return OK;
}
static void graph_free(Graph* g) {
  if (!g) return;
  free(g->nodes);
  free(g);
}
CUresult cuGraphDestroy(void* g) { graph_free((Graph*)g); return OK; }
CUresult cuGraphExecDestroy(void* e) { graph_free((Graph*)e); return OK; }
CUresult cuGraphGetNodes(void* graph, void* nodes, size_t* n) {
  Graph* g = (Graph*)graph;
  if (!g || !n) return E_INVALID_VALUE;
  (void)nodes;
  *n = (size_t)g->n;
  return OK;
}

// ---- events (host clock) --------------------------------------------------------------------------------
typedef struct {
  double ms;
  int recorded;
} Event;
CUresult cuEventCreate(void** e, unsigned int flags) {
  (void)flags;
  *e = calloc(1, sizeof(Event));
  return OK;
}
CUresult cuEventRecord(void* e, void* s) {
  (void)s;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  ((Event*)e)->ms = ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
  ((Event*)e)->recorded = 1;
  return OK;
}
CUresult cuEventSynchronize(void* e) { return ((Event*)e)->recorded ? OK : E_INVALID_HANDLE; }
CUresult cuEventQuery(void* e) { return ((Event*)e)->recorded ? OK : E_NOT_READY; }
CUresult cuEventElapsedTime_v2(float* ms, void* a, void* b) {
  if (!((Event*)a)->recorded || !((Event*)b)->recorded) return E_INVALID_HANDLE;
  *ms = (float)(((Event*)b)->ms - ((Event*)a)->ms);
  return OK;
}
CUresult cuEventDestroy_v2(void* e) { free(e); return OK; }

// ---- test hooks -----------------------------------------------------------------------------------------
// The latest launch: kernel name, dims (grid xyz, block xyz, shared bytes), stream, argument bytes.
int mockcuda_last_launch(char* name, int name_len, unsigned int* dims, uint64_t* stream, uint8_t* bytes, size_t cap, size_t* len) {
  if (!last.f) return -1;
  snprintf(name, (size_t)name_len, "%s", last.f->name);
  memcpy(dims, last.dims, sizeof last.dims);
  *stream = last_stream;
  *len = last.nbytes;
  memcpy(bytes, last.bytes, last.nbytes < cap ? last.nbytes : cap);
  return 0;
}
uint64_t mockcuda_live_bytes(void) { return live_bytes; }
uint64_t mockcuda_live_allocs(void) { return live_allocs; }
