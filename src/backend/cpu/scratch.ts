// Reused temporaries of the CPU backend's ops: arrays an op fills and reads inside one call and never hands
// out (a GEMM's score block, f64 copies of its operands). Each use names its own slot; the slot's array
// grows to the largest request and is kept for the next call, up to CAP elements (larger requests get a
// fresh array, not kept, so a 128K-token prefill does not pin its temporaries for the process's life).
//
// Why: V8 counts typed arrays' memory as external and starts a full collection for about every 20–25 MB
// of them made: the cpu-mid 512-token prefill made ~330 MB of fresh arrays and ran ~15 mark-compacts
// (`--trace-gc`, ~45 ms of its ~650). The indexer's score blocks and the sparse MHA core's f64 operands
// and blocks are ~90 MB of those.
//
// Contents are NOT cleared: a caller that needs zeros fills them itself. A slot is used by one op at a
// time (the CPU backend is synchronous; worker threads have their own module instance). The kept arrays
// lie in SharedArrayBuffers, so an op's row-parallel loop (pool.ts parallelRows) hands them to the worker
// threads without a copy; a request above CAP gets a plain array (a fresh SharedArrayBuffer costs ~20×
// a plain one to allocate and touch, pool.ts), which parallelRows copies if it splits the loop.

const CAP = 1 << 23; // elements: 64 MiB of f64, 32 MiB of f32
const f64 = new Map<string, Float64Array>();
const f32 = new Map<string, Float32Array>();

/** At least n elements of this slot's f64 scratch (exactly n: a subarray), uncleared. */
export function scratchF64(slot: string, n: number): Float64Array {
  if (n > CAP) return new Float64Array(n);
  let a = f64.get(slot);
  if (!a || a.length < n) f64.set(slot, (a = new Float64Array(new SharedArrayBuffer(8 * n))));
  return a.length === n ? a : a.subarray(0, n);
}

/** At least n elements of this slot's f32 scratch (exactly n: a subarray), uncleared. */
export function scratchF32(slot: string, n: number): Float32Array {
  if (n > CAP) return new Float32Array(n);
  let a = f32.get(slot);
  if (!a || a.length < n) f32.set(slot, (a = new Float32Array(new SharedArrayBuffer(4 * n))));
  return a.length === n ? a : a.subarray(0, n);
}
