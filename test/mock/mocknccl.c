// A stand-in for libnccl.so.2 with the entry points src/dist/nccl-ffi.ts binds, for CI machines without
// GPUs, so the TypeScript side is exercised for real through koffi: the 128-byte unique id passed by value,
// the communicator handle, 64-bit device pointers, counts, datatypes, reduction ops, grouped send/recv
// and the error strings.
//
// Device pointers are host addresses (the mock libcuda hands out malloc'd memory; see mockcuda.c), so
// every operation is a memcpy or a host loop that runs at once; the stream is recorded and ignored.
//
// Peers are simulated as mirrors: a communicator of n ranks behaves as if every other rank held exactly
// this rank's buffers and made the same calls. So all-reduce sum gives n·x, avg and max give x, all-gather
// gives n copies, reduce-scatter gives n·(this rank's rows), and a receive from peer p gets what this rank
// sends to p in the same group. That keeps counts, offsets and ranks checkable with n > 1 in one process.
//
// The enum values below are nccl.h's (NCCL 2.24+), written out with their names so the test can compare
// them with src/dist/nccl-ffi.ts through mocknccl_enum().
//
// Hooks for the test: mocknccl_log() returns one line per call made since the last read;
// mocknccl_comm_id() copies back the unique id a communicator was created with.
// Build: gcc -shared -fPIC -O1 -o libmocknccl.so test/mock/mocknccl.c
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int ncclResult_t;
enum { ncclSuccess = 0, ncclUnhandledCudaError = 1, ncclSystemError = 2, ncclInternalError = 3,
       ncclInvalidArgument = 4, ncclInvalidUsage = 5, ncclRemoteError = 6, ncclInProgress = 7 };
enum { ncclInt8 = 0, ncclUint8 = 1, ncclInt32 = 2, ncclUint32 = 3, ncclInt64 = 4, ncclUint64 = 5,
       ncclFloat16 = 6, ncclFloat32 = 7, ncclFloat64 = 8, ncclBfloat16 = 9, ncclFloat8e4m3 = 10,
       ncclFloat8e5m2 = 11, ncclNumTypes = 12 };
enum { ncclSum = 0, ncclProd = 1, ncclMax = 2, ncclMin = 3, ncclAvg = 4, ncclNumOps = 5 };

#define ID_BYTES 128
typedef struct { char internal[ID_BYTES]; } ncclUniqueId;

#define COMM_MAGIC 0x6e63636cu
struct mockComm {
  uint32_t magic;
  int nranks, rank;
  unsigned char id[ID_BYTES];
};
typedef struct mockComm* ncclComm_t;
typedef void* cudaStream_t;

static char last_error[256] = "";
static char log_buf[16384] = "";
static size_t log_len = 0;

static ncclResult_t fail(ncclResult_t rc, const char* msg) {
  snprintf(last_error, sizeof last_error, "%s", msg);
  return rc;
}
static void logf_(const char* line) {
  size_t n = strlen(line);
  if (log_len + n + 2 >= sizeof log_buf) return;
  memcpy(log_buf + log_len, line, n);
  log_len += n;
  log_buf[log_len++] = '\n';
  log_buf[log_len] = 0;
}
#define LOG(...) do { char l_[256]; snprintf(l_, sizeof l_, __VA_ARGS__); logf_(l_); } while (0)

static int type_size(int t) {
  switch (t) {
    case ncclInt8: case ncclUint8: case ncclFloat8e4m3: case ncclFloat8e5m2: return 1;
    case ncclFloat16: case ncclBfloat16: return 2;
    case ncclInt32: case ncclUint32: case ncclFloat32: return 4;
    case ncclInt64: case ncclUint64: case ncclFloat64: return 8;
    default: return 0;
  }
}
static int comm_ok(ncclComm_t c) { return c && c->magic == COMM_MAGIC; }
#define NEED_COMM(c) do { if (!comm_ok(c)) return fail(ncclInvalidArgument, "invalid communicator"); } while (0)
#define NEED_TYPE(t) do { if (!type_size(t)) return fail(ncclInvalidArgument, "invalid datatype"); } while (0)

// dst[i] = reduce over n mirrored ranks of src[i]. Only the types the tests use are computed; the others
// are refused rather than silently copied.
static ncclResult_t reduce(void* dst, const void* src, size_t count, int type, int op, int n) {
  if (op < 0 || op >= ncclNumOps) return fail(ncclInvalidArgument, "invalid reduction op");
  if (op == ncclMax || op == ncclMin || (op == ncclAvg) || n == 1) { memmove(dst, src, count * (size_t)type_size(type)); return ncclSuccess; }
  // n mirrored ranks hold the same v: the sum is v added n times, the product v multiplied n times, in rank
  // order (as a ring would add them), in the element type
#define REDUCE_AS(T)                                                                                     \
  {                                                                                                     \
    const T* s = src;                                                                                   \
    T* d = dst;                                                                                         \
    for (size_t i = 0; i < count; i++) {                                                                \
      T v = s[i], a = v;                                                                                \
      for (int r = 1; r < n; r++) a = op == ncclSum ? a + v : a * v;                                    \
      d[i] = a;                                                                                         \
    }                                                                                                   \
    return ncclSuccess;                                                                                 \
  }
  switch (type) {
    case ncclFloat32: REDUCE_AS(float)
    case ncclFloat64: REDUCE_AS(double)
    case ncclInt32: REDUCE_AS(int32_t)
    case ncclInt64: REDUCE_AS(int64_t)
    default: return fail(ncclInvalidArgument, "mocknccl: sum/prod over more than one rank computes f32, f64, i32 and i64 only");
  }
#undef REDUCE_AS
}

// ---- version, errors, ids, communicators ---------------------------------------------------------------
ncclResult_t ncclGetVersion(int* v) { *v = 22807; return ncclSuccess; }

const char* ncclGetErrorString(ncclResult_t r) {
  switch (r) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error (mock)";
    case ncclSystemError: return "unhandled system error (mock)";
    case ncclInternalError: return "internal error (mock)";
    case ncclInvalidArgument: return "invalid argument (mock)";
    case ncclInvalidUsage: return "invalid usage (mock)";
    case ncclRemoteError: return "remote process exited or there was a network error (mock)";
    case ncclInProgress: return "NCCL operation in progress (mock)";
    default: return "unknown result code (mock)";
  }
}
const char* ncclGetLastError(ncclComm_t comm) { (void)comm; return last_error; }

ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  static unsigned counter = 0;
  counter++;
  for (int i = 0; i < ID_BYTES; i++) id->internal[i] = (char)((i * 37 + counter * 11 + (unsigned)getpid()) & 0xff);
  id->internal[0] = 'M';  // never all zeros, whatever the pid
  LOG("getUniqueId");
  return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId commId, int rank) {
  if (!comm) return fail(ncclInvalidArgument, "comm is NULL");
  if (nranks < 1) return fail(ncclInvalidArgument, "nranks must be positive");
  if (rank < 0 || rank >= nranks) return fail(ncclInvalidArgument, "rank is out of range [0, nranks)");
  struct mockComm* c = calloc(1, sizeof *c);
  if (!c) return fail(ncclSystemError, "out of host memory");
  c->magic = COMM_MAGIC;
  c->nranks = nranks;
  c->rank = rank;
  memcpy(c->id, commId.internal, ID_BYTES);
  const char* nvls = getenv("NCCL_NVLS_ENABLE");
  LOG("commInitRank nranks=%d rank=%d nvls=%s", nranks, rank, nvls ? nvls : "unset");
  *comm = c;
  return ncclSuccess;
}
ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  NEED_COMM(comm);
  comm->magic = 0;
  free(comm);
  LOG("commDestroy");
  return ncclSuccess;
}
ncclResult_t ncclCommCount(const ncclComm_t comm, int* count) { NEED_COMM(comm); *count = comm->nranks; return ncclSuccess; }
ncclResult_t ncclCommUserRank(const ncclComm_t comm, int* rank) { NEED_COMM(comm); *rank = comm->rank; return ncclSuccess; }

// ---- collectives -----------------------------------------------------------------------------------------
ncclResult_t ncclAllReduce(const void* sendbuff, void* recvbuff, size_t count, int datatype, int op, ncclComm_t comm, cudaStream_t stream) {
  (void)stream;
  NEED_COMM(comm); NEED_TYPE(datatype);
  LOG("allReduce count=%zu type=%d op=%d inplace=%d", count, datatype, op, sendbuff == recvbuff);
  return reduce(recvbuff, sendbuff, count, datatype, op, comm->nranks);
}
ncclResult_t ncclAllGather(const void* sendbuff, void* recvbuff, size_t sendcount, int datatype, ncclComm_t comm, cudaStream_t stream) {
  (void)stream;
  NEED_COMM(comm); NEED_TYPE(datatype);
  LOG("allGather sendcount=%zu type=%d", sendcount, datatype);
  size_t bytes = sendcount * (size_t)type_size(datatype);
  for (int r = 0; r < comm->nranks; r++) memcpy((char*)recvbuff + (size_t)r * bytes, sendbuff, bytes);
  return ncclSuccess;
}
ncclResult_t ncclReduceScatter(const void* sendbuff, void* recvbuff, size_t recvcount, int datatype, int op, ncclComm_t comm, cudaStream_t stream) {
  (void)stream;
  NEED_COMM(comm); NEED_TYPE(datatype);
  LOG("reduceScatter recvcount=%zu type=%d op=%d", recvcount, datatype, op);
  size_t bytes = recvcount * (size_t)type_size(datatype);
  return reduce(recvbuff, (const char*)sendbuff + (size_t)comm->rank * bytes, recvcount, datatype, op, comm->nranks);
}
ncclResult_t ncclBroadcast(const void* sendbuff, void* recvbuff, size_t count, int datatype, int root, ncclComm_t comm, cudaStream_t stream) {
  (void)stream;
  NEED_COMM(comm); NEED_TYPE(datatype);
  if (root < 0 || root >= comm->nranks) return fail(ncclInvalidArgument, "root is out of range [0, nranks)");
  LOG("broadcast count=%zu type=%d root=%d", count, datatype, root);
  if (sendbuff != recvbuff) memmove(recvbuff, sendbuff, count * (size_t)type_size(datatype));
  return ncclSuccess;
}

// ---- point to point, groups ----------------------------------------------------------------------------
#define MAX_P2P 256
static struct p2p { int send; void* buf; size_t bytes; int peer; } queued[MAX_P2P];
static int nqueued = 0, group_depth = 0;

static ncclResult_t p2p(int send, void* buf, size_t count, int datatype, int peer, ncclComm_t comm) {
  NEED_COMM(comm); NEED_TYPE(datatype);
  if (peer < 0 || peer >= comm->nranks) return fail(ncclInvalidArgument, "peer is out of range [0, nranks)");
  if (!group_depth) return fail(ncclInvalidUsage, "mocknccl: send/recv outside a group cannot be paired in one process");
  if (nqueued == MAX_P2P) return fail(ncclInternalError, "mocknccl: too many queued send/recv");
  queued[nqueued++] = (struct p2p){send, buf, count * (size_t)type_size(datatype), peer};
  LOG("%s count=%zu type=%d peer=%d", send ? "send" : "recv", count, datatype, peer);
  return ncclSuccess;
}
ncclResult_t ncclSend(const void* sendbuff, size_t count, int datatype, int peer, ncclComm_t comm, cudaStream_t stream) {
  (void)stream;
  return p2p(1, (void*)sendbuff, count, datatype, peer, comm);
}
ncclResult_t ncclRecv(void* recvbuff, size_t count, int datatype, int peer, ncclComm_t comm, cudaStream_t stream) {
  (void)stream;
  return p2p(0, recvbuff, count, datatype, peer, comm);
}
ncclResult_t ncclGroupStart(void) { group_depth++; LOG("groupStart"); return ncclSuccess; }
// The outermost end pairs, per peer and in call order, each receive with a send to the same peer (the
// mirrored peer sends back what it is sent) and copies it.
ncclResult_t ncclGroupEnd(void) {
  if (group_depth == 0) return fail(ncclInvalidUsage, "ncclGroupEnd without ncclGroupStart");
  LOG("groupEnd");
  if (--group_depth) return ncclSuccess;
  ncclResult_t rc = ncclSuccess;
  int used[MAX_P2P] = {0};
  for (int i = 0; i < nqueued && rc == ncclSuccess; i++) {
    if (queued[i].send) continue;
    int j = 0;
    while (j < nqueued && (used[j] || !queued[j].send || queued[j].peer != queued[i].peer)) j++;
    if (j == nqueued) rc = fail(ncclInvalidUsage, "a receive has no matching send to its peer in the group");
    else if (queued[j].bytes != queued[i].bytes) rc = fail(ncclInvalidUsage, "send and receive sizes differ");
    else { used[j] = 1; memcpy(queued[i].buf, queued[j].buf, queued[i].bytes); }
  }
  nqueued = 0;
  return rc;
}

// ---- test hooks ------------------------------------------------------------------------------------------
size_t mocknccl_log(char* out, size_t cap) {
  size_t n = log_len < cap - 1 ? log_len : cap - 1;
  memcpy(out, log_buf, n);
  out[n] = 0;
  log_len = 0;
  log_buf[0] = 0;
  return n;
}
int mocknccl_comm_id(ncclComm_t comm, unsigned char* out) {
  if (!comm_ok(comm)) return ncclInvalidArgument;
  memcpy(out, comm->id, ID_BYTES);
  return ncclSuccess;
}
// nccl.h's numbers by name, for the test to hold against the TypeScript table.
int mocknccl_enum(const char* name) {
  static const struct { const char* n; int v; } E[] = {
      {"ncclSuccess", ncclSuccess}, {"ncclUnhandledCudaError", ncclUnhandledCudaError}, {"ncclSystemError", ncclSystemError},
      {"ncclInternalError", ncclInternalError}, {"ncclInvalidArgument", ncclInvalidArgument}, {"ncclInvalidUsage", ncclInvalidUsage},
      {"ncclRemoteError", ncclRemoteError}, {"ncclInProgress", ncclInProgress},
      {"ncclInt8", ncclInt8}, {"ncclUint8", ncclUint8}, {"ncclInt32", ncclInt32}, {"ncclUint32", ncclUint32},
      {"ncclInt64", ncclInt64}, {"ncclUint64", ncclUint64}, {"ncclFloat16", ncclFloat16}, {"ncclFloat32", ncclFloat32},
      {"ncclFloat64", ncclFloat64}, {"ncclBfloat16", ncclBfloat16}, {"ncclFloat8e4m3", ncclFloat8e4m3}, {"ncclFloat8e5m2", ncclFloat8e5m2},
      {"ncclSum", ncclSum}, {"ncclProd", ncclProd}, {"ncclMax", ncclMax}, {"ncclMin", ncclMin}, {"ncclAvg", ncclAvg},
      {"NCCL_UNIQUE_ID_BYTES", ID_BYTES},
  };
  for (size_t i = 0; i < sizeof E / sizeof E[0]; i++) if (!strcmp(E[i].n, name)) return E[i].v;
  return -1;
}
