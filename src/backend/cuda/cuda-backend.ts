// The CUDA backend: the Backend interface on one GPU, with the CPU backend as its numerical reference.
// Each method validates what the kernels cannot (dtype combinations, alignment for vector paths),
// picks a kernel, and enqueues it on the runtime's stream; nothing blocks except toHost/synchronize.
// Extras beyond the interface (fused kernels the model uses, graphs, timing, memory stats) are public
// methods of CudaBackend.
import { DsvError } from '../../errors.js';
import type { AdamWScalars, Backend, BinaryOp, ReduceOp, SoftmaxOptions, Storage, UnaryOp, View } from '../../tensor/backend.js';
import { type DType, type HostArray, ITEMSIZE, allocHost, fromFloatArray, hostBytes } from '../../tensor/dtype.js';
import { BlasLt } from './blaslt.js';
import { binaryCode, dtCode, reduceCode, unaryCode } from './codes.js';
import * as C from './cuda-consts.js';
import { check } from './ffi.js';
import { encodeIter } from './iter.js';
import type { Arg, Kernel, ParamKind } from './launch.js';
import { CudaRuntime, type CudaEvent, type CudaGraph } from './runtime.js';
import type { PinnedBuffer } from './pinned.js';
import { archFor, compileCubin, type CompileOptions } from './nvrtc.js';
import { createHash } from 'node:crypto';
import type { MemoryStats } from './allocator.js';
import { matrixLayout } from '../matrix-layout.js';
import { contiguousStrides, isContiguousLayout, numelOf } from '../../tensor/tensor.js';
import { causalSelectCuda, indexerCacheWriteCuda, indexerLogitsCuda, indexerLogitsPagedCuda, topkSelectCuda } from './dsa-indexer.js';
import { mlaCacheWriteCuda, sparseMlaDecodeCuda, sparseMlaPrefillCuda } from './sparse-mla.js';
import { sparseMhaPrefillCuda } from './sparse-mha.js';
import { sparseMlaBackwardCuda } from './sparse-mla-backward.js';
import { collectGarbageNow } from '../../tensor/memory.js';
import { indexerKlLossCuda, indexerScoresBackwardCuda, indexerScoresCuda } from './indexer-train.js';
import { groupedMatmulBackwardCuda, groupedMatmulCuda, groupedMatmulFp8Cuda, moeCombineCuda, moeDispatchCuda, moeRouteCuda } from './moe.js';
import { fp8BlockLinearCuda } from './fp8-linear.js';
import { gemmSwitchError } from './gemm-switch.js';

/** A device block and whether it is still owned by a storage (released exactly once). */
interface Block {
  ref: WeakRef<CudaStorage>;
  ptr: number;
  size: number;
  live: boolean;
}

/** Device storage: one allocator block. Freed when dispose() is called or the storage is collected. */
export class CudaStorage implements Storage {
  disposed = false;
  /** @internal */
  block: Block | null = null;
  constructor(readonly backend: CudaBackend, readonly dtype: DType, readonly numel: number, readonly ptr: number, readonly bytes: number) {}
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.backend._free(this);
  }
}

const THREADS = 256;
const FLOAT_LT: Partial<Record<DType, 'f32' | 'bf16' | 'f16'>> = { f32: 'f32', bf16: 'bf16', f16: 'f16' };
const SUF: Partial<Record<DType, string>> = { f32: 'f32', bf16: 'bf16', f16: 'f16', f64: 'f64' };
const VEC: Partial<Record<DType, number>> = { f32: 4, bf16: 8 };
const WIDE = new Set<DType>(['f64', 'i32', 'i64']);

const isContig = (v: View): boolean => isContiguousLayout(v.shape, v.strides);
/**
 * Register-cached row kernels: NV vectors per thread (1, 2, 4 or 8) and about `target` threads, so a row
 * of nv vectors is read once into registers. null when a row is too long for that (the re-reading
 * kernel). Measured on the H200 at 7168-wide bf16 rows (docs/gpu.md): RMSNorm is fastest with the most
 * threads per row (NV = 1, 896 threads: 89–91% of copy against 85% at NV = 4), softmax, which does more
 * work per element and two merges per row, with NV = 4 at 224 threads (84% against 63% at NV = 1).
 */
function cacheShape(nv: number, target: number): { nv: number; threads: number } | null {
  const per = pow2ceil(Math.ceil(nv / target));
  if (per > 8) return null;
  return { nv: per, threads: Math.max(32, Math.ceil(Math.ceil(nv / per) / 32) * 32) };
}
/**
 * The split column reduction (kernels/reduce.cu header): null keeps the single pass (R ≤ 512, or nout
 * alone reaches 4 · SMs · 256 threads); otherwise `chunks` slices of R of `chunk` elements each, chunks
 * ≈ target / nout so that nout · chunks threads fill the GPU, chunk ≥ 64, chunks ≤ 65535 (gridDim.y).
 */
export function reduceSplit(nout: number, R: number, sms: number): { chunks: number; chunk: number } | null {
  const target = 4 * sms * 256;
  if (R <= 512 || nout >= target) return null;
  const want = Math.min(Math.ceil(target / nout), Math.ceil(R / 64), 65535);
  const chunk = Math.max(64, Math.ceil(R / want));
  const chunks = Math.ceil(R / chunk);
  return chunks > 1 ? { chunks, chunk } : null;
}
function pow2ceil(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/** kernels/adamw.cu adamw_f32(n, p, g, m, v, decay, lerp, w, 1 − w, β₂, 1 − β₂, √(1 − β₂ᵗ), eps, −step size); exported for its no-GPU test. */
export const ADAMW_SIG: readonly ParamKind[] = ['i64', 'p', 'p', 'p', 'p', 'f32', 'i32', 'f32', 'f32', 'f32', 'f32', 'f32', 'f32', 'f32'];

const SIG: Record<string, readonly ParamKind[]> = {
  unary_strided: ['iter', 'i64', 'i32', 'f64', 'p', 'i32', 'p', 'i32'],
  binary_strided: ['iter', 'i64', 'i32', 'p', 'i32', 'p', 'i32', 'p', 'i32'],
  where_strided: ['iter', 'i64', 'p', 'i32', 'p', 'i32', 'p', 'i32', 'p', 'i32'],
  unary_vec: ['i64', 'i32', 'f32', 'p', 'p'],
  binary_vec: ['i64', 'i32', 'i32', 'p', 'p', 'p'],
  copy_raw: ['iter', 'i64', 'p', 'p'],
  cast_strided: ['iter', 'i64', 'p', 'i32', 'p', 'i32'],
  fill: ['iter', 'i64', 'p', 'u64'],
  reduce: ['iter', 'iter', 'i64', 'i64', 'i32', 'p', 'i32', 'p', 'i32'],
  reduce_cols_partial: ['iter', 'iter', 'i64', 'i64', 'i64', 'i32', 'p', 'p', 'i32'],
  reduce_cols_finish: ['iter', 'i64', 'i64', 'i32', 'p', 'i32', 'p'],
  softmax: ['i64', 'i64', 'f64', 'p', 'p', 'p', 'i64', 'i32', 'p'],
  softmax_bwd: ['i64', 'i64', 'f64', 'p', 'p', 'p'],
  rmsnorm: ['i64', 'i64', 'f64', 'p', 'p', 'p', 'p', 'p'],
  layernorm: ['i64', 'i64', 'f64', 'p', 'p', 'p', 'p'],
  rope: ['i64', 'i64', 'i64', 'i64', 'i32', 'i32', 'p', 'p', 'p', 'p'],
  swiglu: ['i64', 'i64', 'p', 'p', 'i64', 'p', 'i64'],
  act_quant: ['i64', 'i64', 'i64', 'i32', 'p', 'p', 'p'],
  act_dequant: ['i64', 'i64', 'i64', 'p', 'p', 'p'],
  act_quant_b128: ['i64', 'i32', 'p', 'p', 'p'],
  hadamard: ['i64', 'i32', 'f64', 'p', 'p'],
  topk: ['i64', 'i64', 'i64', 'i64', 'i32', 'p', 'p', 'p', 'p'],
  gather: ['i64', 'i64', 'i64', 'i64', 'i64', 'p', 'p', 'p', 'i32', 'p'],
  index_select: ['i64', 'i64', 'i64', 'i64', 'p', 'p', 'p', 'i32', 'p'],
  scatter_add: ['i64', 'i64', 'i64', 'i64', 'i64', 'i64', 'i64', 'p', 'p', 'i32', 'p', 'p'],
  index_add: ['i64', 'i64', 'i64', 'i64', 'p', 'p', 'i32', 'p', 'p'],
  gemv: ['i64', 'i64', 'p', 'i64', 'p', 'i64', 'p', 'i64'],
  gemv_e4m3_block: ['i64', 'i64', 'p', 'p', 'p', 'p', 'p', 'i64'],
  matmul_naive: ['iter', 'i64', 'i64', 'i64', 'i64', 'p', 'i32', 'p', 'i32', 'i64', 'i64', 'p', 'i32', 'i64', 'i64'],
  pick_tokens: ['i64', 'i64', 'p', 'p', 'p', 'p', 'p', 'p', 'p', 'p', 'p', 'p'],
  adamw: ADAMW_SIG,
};

export interface SoftmaxExOptions extends SoftmaxOptions {
  log?: boolean;
}

export class CudaBackend implements Backend {
  readonly name = 'cuda';
  readonly keepsBf16Weights = true;
  readonly rt: CudaRuntime;
  private lt: BlasLt | null = null;
  // Device memory of a tensor nobody disposed comes back when V8 collects its storage. The finalizer does
  // that asynchronously, after the running job (a whole synchronous training step) has ended; on an
  // allocation failure reclaimDead() does it at once for every block whose storage is already collected
  // (the WeakRef is empty), so memory held only by garbage never causes an out-of-memory error. Each
  // block is released once, by whichever comes first (dispose, reclaimDead, the finalizer).
  private readonly blocks = new Set<Block>();
  private readonly finalizer = new FinalizationRegistry<Block>((b) => this.releaseBlock(b));
  private readonly maxGrid: number;
  /**
   * Index kernels report out-of-range indices through the device error word. With eager checks (the
   * default) the op waits for the kernel and throws right away, as the CPU backend does; set false to
   * defer the check to the next synchronize()/toHost() and keep the stream asynchronous. Inside graph
   * capture the check is always deferred.
   */
  eagerIndexChecks = true;

  constructor(ordinal = 0) {
    const bad = gemmSwitchError();
    if (bad) throw new DsvError(bad);
    this.rt = new CudaRuntime(ordinal);
    this.maxGrid = this.rt.info.multiprocessors * 8;
    this.rt.onMemoryPressure = () => this.reclaimDead();
  }

  // ---- memory --------------------------------------------------------------------------------------
  alloc(dtype: DType, numel: number): CudaStorage {
    const [ptr, size] = this.rt.allocator.malloc(numel * ITEMSIZE[dtype]);
    const s = new CudaStorage(this, dtype, numel, ptr, size);
    if (size) {
      const b: Block = { ref: new WeakRef(s), ptr, size, live: true };
      s.block = b;
      this.blocks.add(b);
      this.finalizer.register(s, b, s);
    }
    return s;
  }
  /** @internal called by CudaStorage.dispose */
  _free(s: CudaStorage): void {
    this.finalizer.unregister(s);
    if (s.block) this.releaseBlock(s.block);
  }
  private releaseBlock(b: Block): void {
    if (!b.live) return;
    b.live = false;
    this.blocks.delete(b);
    this.rt.allocator.release(b.ptr, b.size);
  }
  /** Run a full collection and release the blocks of every storage it freed; returns the bytes released. */
  reclaimDead(): number {
    collectGarbageNow();
    let bytes = 0;
    for (const b of [...this.blocks]) {
      if (b.ref.deref() === undefined) {
        bytes += b.size;
        this.releaseBlock(b);
      }
    }
    return bytes;
  }
  private tmp(dtype: DType, numel: number): CudaStorage {
    return this.alloc(dtype, numel);
  }
  memoryStats(): MemoryStats & { total: number } {
    return { ...this.rt.allocator.stats(), total: this.rt.info.totalMemory };
  }
  resetPeakMemory(): void {
    this.rt.allocator.resetPeak();
  }
  emptyCache(): void {
    this.rt.sync();
    for (const p of this.fp8Pads.values()) for (const st of [p.xp, p.sp, p.op]) st.dispose();
    this.fp8Pads.clear();
    this.rt.allocator.emptyCache();
  }

  /** Device address of a view's first element (records the storage while a graph is captured). */
  private ptr(v: View): number {
    const s = v.storage as CudaStorage;
    if (!(s instanceof CudaStorage)) throw new DsvError(`cuda backend got a tensor stored on '${v.storage.backend.name}'`);
    if (s.disposed) throw new DsvError('cuda: use of a disposed tensor storage');
    if (this.rt.capturing) this.rt.capturing.add(s);
    return s.ptr + v.offset * ITEMSIZE[v.dtype];
  }
  private base(v: View): number {
    const s = v.storage as CudaStorage;
    if (this.rt.capturing) this.rt.capturing.add(s);
    return s.ptr;
  }

  fromHost(data: HostArray, dtype: DType): CudaStorage {
    const s = this.alloc(dtype, data.length);
    if (s.bytes) {
      this.noCapture('copying host data to the device');
      this.rt.staging.upload(s.ptr, hostBytes(data));
    }
    return s;
  }

  toHost(v: View): HostArray {
    const n = numelOf(v.shape);
    const out = allocHost(v.dtype, n);
    if (n === 0) return out;
    this.noCapture('copying device data to the host');
    const c = this.contiguous(v);
    this.rt.staging.download(hostBytes(out), this.ptr(c.view));
    this.synchronize();  // surfaces a bad index recorded by an earlier kernel, as the CPU backend would have thrown
    c.tmp?.dispose();
    return out;
  }

  /** Page-locked host memory for the caller's own staging (e.g. reading checkpoint bytes straight into it). */
  hostAlloc(bytes: number): PinnedBuffer {
    return this.rt.hostAlloc(bytes);
  }
  /**
   * Asynchronous copy of `src` bytes [byteOffset, byteOffset + dst's size) into the contiguous view `dst`.
   * `src` must not be rewritten until `src.wait()` returns (the copy reads it from the stream).
   */
  uploadPinned(dst: View, src: PinnedBuffer, byteOffset = 0): void {
    this.pinnedCopy(dst, src, byteOffset, 'upload');
  }
  /** Asynchronous copy of the contiguous view `src` into `dst` at byteOffset; read dst after `dst.wait()`. */
  downloadPinned(dst: PinnedBuffer, src: View, byteOffset = 0): void {
    this.pinnedCopy(src, dst, byteOffset, 'download');
  }
  private pinnedCopy(v: View, buf: PinnedBuffer, byteOffset: number, dir: 'upload' | 'download'): void {
    const bytes = numelOf(v.shape) * ITEMSIZE[v.dtype];
    if (buf.isFreed) throw new DsvError(`${dir}Pinned: the pinned buffer was freed`);
    if (!isContig(v)) throw new DsvError(`${dir}Pinned: the device tensor must be contiguous`);
    if (!Number.isSafeInteger(byteOffset) || byteOffset < 0 || byteOffset + bytes > buf.bytes) {
      throw new DsvError(`${dir}Pinned: ${bytes} bytes at offset ${byteOffset} do not fit the ${buf.bytes}-byte pinned buffer`);
    }
    if (bytes === 0) return;
    this.noCapture(`${dir}Pinned`);
    const host = buf.u8.subarray(byteOffset, byteOffset + bytes);
    if (dir === 'upload') check(this.rt.cu.cuMemcpyHtoDAsync(this.ptr(v), host, bytes, this.rt.stream), 'cuMemcpyHtoDAsync');
    else check(this.rt.cu.cuMemcpyDtoHAsync(host, this.ptr(v), bytes, this.rt.stream), 'cuMemcpyDtoHAsync');
    buf._recordOn(this.rt.stream);
  }

  /** Host↔device copies of JS memory are not graph nodes: a replay would re-read a staging slot reused since. */
  private noCapture(what: string): void {
    if (this.rt.capturing) throw new DsvError(`cuda: ${what} is not allowed while a CUDA graph is being captured (do it before capture; the graph replays device work only)`);
  }

  synchronize(): void {
    this.rt.checkErrors();
  }

  /**
   * Compile `source` with NVRTC for this GPU (cached on disk, see nvrtc.ts) and bind its kernel `name` to
   * the parameter kinds `sig` (checked against the cubin's own table). Launch it with kernel.launch(grid,
   * threads, sharedBytes, args), passing device addresses from address(). Needs libnvrtc (the CUDA toolkit
   * or the nvidia-cuda-nvrtc wheel); throws CudaUnavailableError naming where it looked otherwise.
   */
  compileKernel(source: string, name: string, sig: readonly ParamKind[], o: CompileOptions = {}): Kernel {
    const { cubin } = compileCubin(source, archFor(this.rt.info.computeCapability), o);
    const key = `rtc:${createHash('sha256').update(cubin).digest('hex').slice(0, 24)}`;
    this.rt.modules.loadImage(key, cubin);
    return this.rt.modules.get(key, name, sig);
  }
  /** Device address of a view's first element, for arguments of kernels from compileKernel. */
  address(v: View): number {
    return this.ptr(v);
  }

  // ---- launch helpers --------------------------------------------------------------------------------
  private k(file: string, name: string, sig: keyof typeof SIG): Kernel {
    return this.rt.modules.get(file, name, SIG[sig]!);
  }
  private grid(n: number, threads = THREADS): number {
    return Math.max(1, Math.min(Math.ceil(n / threads), this.maxGrid));
  }
  private aligned16(...vs: View[]): boolean {
    return vs.every((v) => this.ptr(v) % 16 === 0);
  }
  /** Weight/bias vectors of the cached row kernels are read as Vec<W, VEC>: 16 bytes, or 32 for f32 × 8. */
  private alignedVec(vec: number, ...vs: View[]): boolean {
    return vs.every((v) => this.ptr(v) % (vec * ITEMSIZE[v.dtype]) === 0);
  }

  // ---- copy / fill -------------------------------------------------------------------------------------
  copy(dst: View, src: View): void {
    const n = numelOf(dst.shape);
    if (n === 0) return;
    if (dst.dtype === src.dtype) {
      if (isContig(dst) && isContig(src)) {
        check(this.rt.cu.cuMemcpyDtoDAsync(this.ptr(dst), this.ptr(src), n * ITEMSIZE[dst.dtype], this.rt.stream), 'cuMemcpyDtoDAsync');
        return;
      }
      const it = encodeIter(dst.shape, [dst.strides, src.strides], [dst.offset, src.offset], 'copy');
      this.k('copy', `copy_raw_${ITEMSIZE[dst.dtype]}`, 'copy_raw').launch(this.grid(n), THREADS, 0, [it, n, this.base(dst), this.base(src)]);
      return;
    }
    const it = encodeIter(dst.shape, [dst.strides, src.strides], [dst.offset, src.offset], 'copy');
    this.k('copy', 'cast_strided', 'cast_strided').launch(this.grid(n), THREADS, 0, [it, n, this.base(dst), dtCode(dst.dtype), this.base(src), dtCode(src.dtype)]);
  }

  fill(dst: View, value: number): void {
    const n = numelOf(dst.shape);
    if (n === 0) return;
    const enc = hostBytes(fromFloatArray([value], dst.dtype));
    let bits = 0;
    for (let i = enc.length - 1; i >= 0; i--) bits = bits * 256 + enc[i]!;
    if (enc.length === 8) {
      // 8-byte patterns can exceed 2^53 (negative i64, f64 with high bits): pass them through an i64 view
      const dv = new DataView(enc.buffer, enc.byteOffset, 8);
      bits = Number(dv.getBigInt64(0, true));
      if (!Number.isSafeInteger(bits)) return this.fillWide(dst, dv.getBigUint64(0, true));
    }
    const it = encodeIter(dst.shape, [dst.strides], [dst.offset], 'fill');
    this.k('copy', `fill_${enc.length}`, 'fill').launch(this.grid(n), THREADS, 0, [it, n, this.base(dst), bits]);
  }
  /** fill for 8-byte patterns that are not safe integers: write the pattern once, then broadcast-copy it. */
  private fillWide(dst: View, pattern: bigint): void {
    const one = this.fromHost(new BigUint64Array([pattern]) as unknown as BigInt64Array, 'i64');
    const src: View = { storage: one, dtype: dst.dtype, shape: dst.shape, strides: dst.shape.map(() => 0), offset: 0 };
    const it = encodeIter(dst.shape, [dst.strides, src.strides], [dst.offset, 0], 'fill');
    this.k('copy', 'copy_raw_8', 'copy_raw').launch(this.grid(numelOf(dst.shape)), THREADS, 0, [it, numelOf(dst.shape), this.base(dst), one.ptr]);
    one.dispose();
  }

  // ---- elementwise -------------------------------------------------------------------------------------
  unary(op: UnaryOp, out: View, x: View, alpha = 0): void {
    const n = numelOf(out.shape);
    if (n === 0) return;
    const v = VEC[x.dtype];
    if (v && out.dtype === x.dtype && isContig(out) && isContig(x) && this.aligned16(out, x)) {
      this.streamLaunch(this.k('elementwise', `unary_vec_${x.dtype}`, 'unary_vec'), Math.ceil(n / v), [n, unaryCode(op), alpha, this.ptr(out), this.ptr(x)]);
      return;
    }
    const wide = WIDE.has(x.dtype) || WIDE.has(out.dtype);
    const it = encodeIter(out.shape, [out.strides, x.strides], [out.offset, x.offset], `unary ${op}`);
    this.k('elementwise', wide ? 'unary_strided_d' : 'unary_strided_f', 'unary_strided')
      .launch(this.grid(n), THREADS, 0, [it, n, unaryCode(op), alpha, this.base(out), dtCode(out.dtype), this.base(x), dtCode(x.dtype)]);
  }

  binary(op: BinaryOp, out: View, a: View, b: View): void {
    const n = numelOf(out.shape);
    if (n === 0) return;
    const v = VEC[a.dtype];
    const arith = binaryCode(op) <= binaryCode('minimum');
    if (v && arith && a.dtype === b.dtype && out.dtype === a.dtype && isContig(out) && isContig(a) && this.aligned16(out, a)) {
      const bScalar = b.strides.every((s, i) => s === 0 || b.shape[i] === 1);
      if (bScalar || (isContig(b) && this.aligned16(b))) {
        this.streamLaunch(this.k('elementwise', `binary_vec_${a.dtype}`, 'binary_vec'), Math.ceil(n / v),
          [n, binaryCode(op), bScalar ? 1 : 0, this.ptr(out), this.ptr(a), this.ptr(b)]);
        return;
      }
    }
    const wide = WIDE.has(a.dtype) || WIDE.has(b.dtype) || WIDE.has(out.dtype);
    const it = encodeIter(out.shape, [out.strides, a.strides, b.strides], [out.offset, a.offset, b.offset], `binary ${op}`);
    this.k('elementwise', wide ? 'binary_strided_d' : 'binary_strided_f', 'binary_strided')
      .launch(this.grid(n), THREADS, 0, [it, n, binaryCode(op), this.base(out), dtCode(out.dtype), this.base(a), dtCode(a.dtype), this.base(b), dtCode(b.dtype)]);
  }

  where(out: View, cond: View, a: View, b: View): void {
    const n = numelOf(out.shape);
    if (n === 0) return;
    const wide = WIDE.has(a.dtype) || WIDE.has(b.dtype) || WIDE.has(out.dtype);
    const it = encodeIter(out.shape, [out.strides, cond.strides, a.strides, b.strides], [out.offset, cond.offset, a.offset, b.offset], 'where');
    this.k('elementwise', wide ? 'where_strided_d' : 'where_strided_f', 'where_strided').launch(this.grid(n), THREADS, 0,
      [it, n, this.base(out), dtCode(out.dtype), this.base(cond), dtCode(cond.dtype), this.base(a), dtCode(a.dtype), this.base(b), dtCode(b.dtype)]);
  }

  // ---- reduce ------------------------------------------------------------------------------------------
  reduce(op: ReduceOp, out: View, x: View, axes: readonly number[]): void {
    const nout = numelOf(out.shape);
    if (nout === 0) return;
    const keepDims: number[] = [];
    for (let i = 0; i < x.shape.length; i++) if (!axes.includes(i)) keepDims.push(i);
    const kShape = keepDims.map((d) => x.shape[d]!);
    const rShape = axes.map((d) => x.shape[d]!);
    const R = numelOf(rShape);
    // out holds the kept dims in order; its own strides may include size-1 dims, so use contiguous ones
    const outStrides = contiguousStrides(kShape);
    const keep = encodeIter(kShape, [outStrides, keepDims.map((d) => x.strides[d]!)], [out.offset, x.offset], 'reduce');
    const red = encodeIter(rShape, [axes.map((d) => x.strides[d]!)], [0], 'reduce');
    // rows: reduced dims hold the fastest-moving data; cols: the kept dims do (e.g. sum over batch)
    const redMin = Math.min(...axes.filter((d) => x.shape[d]! > 1).map((d) => Math.abs(x.strides[d]!)), Infinity);
    const keepMin = Math.min(...keepDims.filter((d) => x.shape[d]! > 1).map((d) => Math.abs(x.strides[d]!)), Infinity);
    const colsLayout = keepMin < redMin;
    const split = colsLayout ? reduceSplit(nout, R, this.rt.info.multiprocessors) : null;
    if (split) {
      // two passes through an f64 workspace [chunks, nout] (kernels/reduce.cu: reduce_cols_partial)
      const ws = this.tmp('f64', split.chunks * nout);
      const threads = Math.min(THREADS, Math.ceil(nout / 32) * 32);
      this.k('reduce', 'reduce_cols_partial', 'reduce_cols_partial').launch(Math.ceil(nout / threads), threads, 0,
        [keep, red, nout, R, split.chunk, reduceCode(op), ws.ptr, this.base(x), dtCode(x.dtype)], split.chunks);
      this.k('reduce', 'reduce_cols_finish', 'reduce_cols_finish').launch(Math.min(Math.ceil(nout / 32), this.maxGrid * 8), THREADS, 0,
        [keep, nout, split.chunks, reduceCode(op), this.base(out), dtCode(out.dtype), ws.ptr]);
      ws.dispose();  // stream-ordered allocator: the block is reused only by work queued after these kernels (parked while a graph is captured)
      return;
    }
    const cols = colsLayout && nout >= 256;
    const args = [keep, red, nout, R, reduceCode(op), this.base(out), dtCode(out.dtype), this.base(x), dtCode(x.dtype)];
    if (cols) this.k('reduce', 'reduce_cols', 'reduce').launch(this.grid(nout), THREADS, 0, args);
    else this.k('reduce', 'reduce_rows', 'reduce').launch(Math.min(nout, 65535 * 16), THREADS, 0, args);
  }

  // ---- optimizer -----------------------------------------------------------------------------------------
  /**
   * One AdamW step in place on p, m (exp_avg), v (exp_avg_sq), reading the gradient g: kernels/adamw.cu,
   * bit for bit the CPU backend's adamwStep and the op-by-op update (AdamW.step calls it only for f32,
   * contiguous tensors). Any element offset works; the float4 path needs the four share their address mod 16.
   */
  adamwStep(p: View, g: View, m: View, v: View, h: AdamWScalars): void {
    const n = numelOf(p.shape);
    for (const [name, t] of [['parameter', p], ['gradient', g], ['exp_avg', m], ['exp_avg_sq', v]] as const) {
      if (t.dtype !== 'f32') throw new DsvError(`cuda adamwStep: the ${name} is ${t.dtype}; the fused AdamW step takes f32 tensors only`);
      if (!isContig(t)) throw new DsvError(`cuda adamwStep: the ${name} is not contiguous (shape [${t.shape.join(', ')}], strides [${t.strides.join(', ')}]); the fused AdamW step takes contiguous tensors only`);
      if (numelOf(t.shape) !== n) throw new DsvError(`cuda adamwStep: the ${name} has ${numelOf(t.shape)} elements, the parameter ${n}`);
    }
    if (n === 0) return;
    this.streamLaunch(this.k('adamw', 'adamw_f32', 'adamw'), Math.ceil(n / 4), [n, this.ptr(p), this.ptr(g), this.ptr(m), this.ptr(v),
      h.decay, h.lerp ? 1 : 0, h.w, h.oneMinusW, h.b2, h.oneMinusB2, h.bc2Sqrt, h.eps, h.negStepSize]);
  }

  // ---- matmul ------------------------------------------------------------------------------------------
  private blas(): BlasLt {
    return (this.lt ??= new BlasLt(this.rt));
  }

  matmul(out: View, a: View, b: View): void {
    const r = out.shape.length;
    const M = out.shape[r - 2]!;
    const N = out.shape[r - 1]!;
    const K = a.shape[a.shape.length - 1]!;
    if (M === 0 || N === 0) return;
    if (K === 0) return this.fill(out, 0);
    const batchShape = out.shape.slice(0, r - 2);
    const nb = numelOf(batchShape);
    const lt = FLOAT_LT[out.dtype];
    if (lt && a.dtype === out.dtype && b.dtype === out.dtype && isContig(out)) {
      if (nb === 1 && M <= this.tune.skinnyMaxM && this.matmulSkinny(out, a, b, M, N, K)) return;
      if (this.matmulLt(lt, lt, out, a, b, M, N, K, batchShape, nb)) return;
    }
    // bf16 operands into an f32 output (the sparse MLA backward's dP and dG): cuBLASLt, f32 accumulation
    if (out.dtype === 'f32' && a.dtype === 'bf16' && b.dtype === 'bf16' && isContig(out) && this.matmulLt('bf16', 'f32', out, a, b, M, N, K, batchShape, nb)) return;
    // mixed float operands into f32 (a bf16 activation against an f32 weight or gradient): the narrow one is
    // widened into a contiguous f32 temporary — exact — and the f32 GEMM runs. The f64 fallback below took
    // 85% of a bf16 training step on an H100 (2026-12-06: 98 calls, 2.07 s of 2.59 s).
    if (out.dtype === 'f32' && isContig(out) && a.dtype !== b.dtype && (a.dtype === 'f32' || b.dtype === 'f32') && FLOAT_LT[a.dtype] && FLOAT_LT[b.dtype]) {
      const wa = a.dtype === 'f32' ? null : this.widened(a);
      const wb = b.dtype === 'f32' ? null : this.widened(b);
      const done = this.matmulLt('f32', 'f32', out, wa?.view ?? a, wb?.view ?? b, M, N, K, batchShape, nb);
      wa?.st.dispose(); // stream-ordered: reused only by work queued after the GEMM
      wb?.st.dispose();
      if (done) return;
    }
    // fallback: f64 accumulation, any dtypes and strides
    const bi = encodeIter(batchShape, [contiguousStrides(batchShape).map((s) => s * M * N), a.strides.slice(0, r - 2), b.strides.slice(0, r - 2)],
      [out.offset, a.offset, b.offset], 'matmul');
    this.k('matmul', 'matmul_naive', 'matmul_naive').launch(this.grid(nb * M * N), THREADS, 0, [bi, nb, M, N, K, this.base(out), dtCode(out.dtype),
      this.base(a), dtCode(a.dtype), a.strides[r - 2]!, a.strides[r - 1]!, this.base(b), dtCode(b.dtype), b.strides[r - 2]!, b.strides[r - 1]!]);
  }

  /**
   * Decode GEMV (M = 1, one batch) against a weight read along k, i.e. b = wᵀ with w [N, K] rows
   * contiguous (b's strides [1, ldw]): kernels/gemv.cu streams w at up to copy bandwidth and takes
   * 1/1.18–1/1.14 of cuBLASLt's time for the same call. Returns false for other M (only M = 1 is
   * instantiated), other layouts, or operands not 16-byte aligned.
   */
  private matmulSkinny(out: View, a: View, b: View, M: number, N: number, K: number): boolean {
    if (M !== 1 || (out.dtype !== 'bf16' && out.dtype !== 'f32')) return false;
    const size = ITEMSIZE[out.dtype];
    const vec = 16 / size;
    const ra = a.shape.length;
    const rb = b.shape.length;
    const lda = M > 1 ? a.strides[ra - 2]! : K;
    const ldw = N > 1 ? b.strides[rb - 1]! : K;
    if ((K > 1 && (a.strides[ra - 1] !== 1 || b.strides[rb - 2] !== 1)) || K % vec !== 0) return false;
    if ((lda * size) % 16 !== 0 || (ldw * size) % 16 !== 0 || lda < K || ldw < K || !this.aligned16(a, b)) return false;
    const threads = 32 * Math.min(8, Math.ceil(K / (32 * vec)));
    this.k('gemv', `gemv_${out.dtype}_m${M}`, 'gemv').launch(Math.ceil(N / 2), threads, 0,
      [N, K, this.ptr(out), N, this.ptr(a), lda, this.ptr(b), ldw]);
    return true;
  }

  /** x as a contiguous f32 copy (a matmul operand widened; broadcast batch dims are materialised). */
  private widened(x: View): { st: CudaStorage; view: View } {
    const st = this.tmp('f32', numelOf(x.shape));
    const view: View = { storage: st, dtype: 'f32', shape: x.shape, strides: contiguousStrides(x.shape), offset: 0 };
    this.copy(view, x);
    return { st, view };
  }

  /**
   * Row-major out[M,N] = a[M,K] · b[K,N] as column-major cuBLASLt: outᵀ (N×M) = bᵀ · aᵀ, so cuBLASLt's
   * "A" is our b and its "B" is our a; a row-major matrix read column-major is its transpose, so a
   * row-major operand needs no op and a column-major (transposed view) one needs op T. lt: the operands'
   * dtype; d: the output's (lt, or f32 for bf16 operands).
   */
  private matmulLt(lt: 'f32' | 'bf16' | 'f16', d: 'f32' | 'bf16' | 'f16', out: View, a: View, b: View, M: number, N: number, K: number, batchShape: number[], nb: number): boolean {
    const r = out.shape.length;
    const la = matrixLayout(a, M, K);
    const lb = matrixLayout(b, K, N);
    if (!la || !lb) return false;
    const sa = uniformBatchStride(batchShape, a.strides.slice(0, r - 2));
    const sb = uniformBatchStride(batchShape, b.strides.slice(0, r - 2));
    if (sa === null || sb === null) return false;
    return this.blas().gemm({
      ab: lt, d, transA: lb.trans, transB: la.trans, m: N, n: M, k: K,
      a: this.ptr(b), lda: lb.ld, b: this.ptr(a), ldb: la.ld, dPtr: this.ptr(out), ldd: N,
      batch: nb, strideA: sb, strideB: sa, strideD: M * N,
    });
  }

  /** Zero-padded operands of block-scaled fp8Linear calls whose M is not a multiple of 4, per shape. */
  private readonly fp8Pads = new Map<string, { xp: CudaStorage; sp: CudaStorage; op: CudaStorage }>();

  /**
   * FP8 e4m3 linear layer: out[M,N] (bf16 or f32) = (x[M,K] · sx) · (w[N,K] · sw)ᵀ with f32 scales.
   * scaleMode 'tensor': sx, sw are single f32 values (device). 'block' (cuBLASLt VEC128_32F for x,
   * BLK128x128_32F for w; measured on the H200 with non-uniform scales, bench/cuda-bench.ts):
   *  - sx holds one scale per (row m, 128 columns kb) of x stored K-block-major, element kb·M + m: the
   *    TRANSPOSE of actQuant's [M, K/128] output (transpose it to a contiguous [K/128, M] first);
   *  - sw holds one scale per 128×128 tile, element nb·(K/128) + kb: DeepSeek's weight_scale_inv
   *    [N/128, K/128] as stored in the checkpoint. cuBLASLt reads BLK128x128 scales with a row pitch of
   *    K/128 rounded up to a multiple of 4 (16 bytes), as PyTorch's scaled_mm pads them; when K/128 is not
   *    a multiple of 4 the scales are copied into a zero-padded [N/128, roundUp(K/128, 4)] temporary.
   *    (The bench probe used K/128 = 8 and so never saw this; K = 384 read tile nb ≥ 1 from the wrong
   *    offsets, relative error ≈ 1.)
   * Block-scaled calls at decode sizes (M ≤ 8, not a multiple of 4; tune.fp8GemvMaxM) run our GEMV kernel
   * (kernels/gemv.cu) instead of cuBLASLt; larger M that are not a multiple of 4 are padded for cuBLASLt.
   * Returns false when cuBLASLt offers no algorithm.
   */
  fp8Linear(out: View, x: View, w: View, sx: View, sw: View, scaleMode: 'tensor' | 'block' = 'tensor'): boolean {
    const [M, K] = x.shape as [number, number];
    const N = w.shape[0]!;
    if (x.dtype !== 'f8e4m3' || w.dtype !== 'f8e4m3') throw new DsvError(`fp8Linear: x and w must be f8e4m3, got ${x.dtype} and ${w.dtype}`);
    if (K % 16 !== 0 || N % 16 !== 0) throw new DsvError(`fp8Linear: cuBLASLt FP8 needs K and N multiples of 16, got K=${K} N=${N}`);
    if (!isContig(x) || !isContig(w) || !isContig(out)) throw new DsvError('fp8Linear: x, w and out must be contiguous');
    const d = out.dtype === 'bf16' ? 'bf16' : out.dtype === 'f32' ? 'f32' : null;
    if (!d) throw new DsvError(`fp8Linear: out must be bf16 or f32, got ${out.dtype}`);
    if (scaleMode === 'block') {
      if (!BlasLt.hasScaleMode('vec128') || !BlasLt.hasScaleMode('blk128x128')) return false;
      const kb = Math.ceil(K / 128);
      if (numelOf(sx.shape) !== kb * M) throw new DsvError(`fp8Linear: block scales sx must hold K/128 × M = ${kb * M} values ([K/128, M], M fastest), got shape [${sx.shape.join(', ')}]`);
      if (numelOf(sw.shape) !== Math.ceil(N / 128) * kb) throw new DsvError(`fp8Linear: block scales sw must hold N/128 × K/128 = ${Math.ceil(N / 128) * kb} values ([N/128, K/128]), got shape [${sw.shape.join(', ')}]`);
      if (!isContig(sx) || !isContig(sw) || sx.dtype !== 'f32' || sw.dtype !== 'f32') throw new DsvError('fp8Linear: block scales must be contiguous f32');
    } else if (numelOf(sx.shape) !== 1 || numelOf(sw.shape) !== 1) {
      throw new DsvError(`fp8Linear: per-tensor scales must be single values, got sx [${sx.shape.join(', ')}] and sw [${sw.shape.join(', ')}]`);
    }
    const kb = Math.ceil(K / 128);
    if (scaleMode === 'block' && M <= Math.min(8, this.tune.fp8GemvMaxM) && M % 4 !== 0 && this.aligned16(x, w)) {
      // decode: our block-scaled GEMV (kernels/gemv.cu) reads the checkpoint's scales unpadded
      this.k('gemv', `gemv_e4m3_block_${d}_m${M}`, 'gemv_e4m3_block').launch(Math.ceil(N / 2), 32 * Math.min(8, Math.ceil(K / 512)), 0,
        [N, K, this.ptr(out), this.ptr(x), this.ptr(sx), this.ptr(w), this.ptr(sw), kb]);
      return true;
    }
    let swPtr = this.ptr(sw);
    let padded: CudaStorage | null = null;
    if (scaleMode === 'block' && kb % 4 !== 0) {
      const nb = Math.ceil(N / 128);
      const kb4 = Math.ceil(kb / 4) * 4;
      padded = this.tmp('f32', nb * kb4);
      const all: View = { storage: padded, dtype: 'f32', shape: [nb * kb4], strides: [1], offset: 0 };
      this.fill(all, 0);
      this.copy({ storage: padded, dtype: 'f32', shape: [nb, kb], strides: [kb4, 1], offset: 0 }, { ...sw, shape: [nb, kb], strides: [kb, 1] });
      swPtr = this.ptr(all);
    }
    const temps: CudaStorage[] = padded ? [padded] : [];
    const run = (m: number, xPtr: number, sxPtr: number, outPtr: number): boolean => this.blas().gemm({
      ab: 'f8e4m3', d, transA: true, transB: false, m: N, n: m, k: K,
      a: this.ptr(w), lda: K, b: xPtr, ldb: K, dPtr: outPtr, ldd: N,
      scaleA: swPtr, scaleB: sxPtr,
      scaleModeA: scaleMode === 'block' ? 'blk128x128' : 'tensor', scaleModeB: scaleMode === 'block' ? 'vec128' : 'tensor',
    });
    try {
      if (run(M, this.ptr(x), this.ptr(sx), this.ptr(out))) return true;
      if (scaleMode !== 'block' || M % 4 === 0) return false;
      // cuBLASLt 13.1 on the H200 has no block-scaled algorithm when M is not a multiple of 4 (measured at
      // M = 1, 3, 5; 4, 8, 20 and 128 run): pad x with zero rows and sx with zero scales to M4 rows, run
      // that, and copy the first M rows of the result out (small M normally take the GEMV above).
      // The padded buffers are kept per shape and zeroed once: only rows < M are ever rewritten, so the
      // padding stays zero and a call costs two small copies in, the GEMM, and one copy out.
      const M4 = Math.ceil(M / 4) * 4;
      const key = `${M4}x${N}x${K}:${out.dtype}`;
      let pad = this.fp8Pads.get(key);
      if (!pad) {
        pad = { xp: this.alloc('f8e4m3', M4 * K), sp: this.alloc('f32', kb * M4), op: this.alloc(out.dtype, M4 * N) };
        this.fill({ storage: pad.xp, dtype: 'f8e4m3', shape: [M4 * K], strides: [1], offset: 0 }, 0);
        this.fill({ storage: pad.sp, dtype: 'f32', shape: [kb * M4], strides: [1], offset: 0 }, 0);
        this.fp8Pads.set(key, pad);
      }
      const { xp, sp, op } = pad;
      this.copy({ storage: xp, dtype: 'f8e4m3', shape: [M, K], strides: [K, 1], offset: 0 }, x);
      this.copy({ storage: sp, dtype: 'f32', shape: [kb, M], strides: [M4, 1], offset: 0 }, { ...sx, shape: [kb, M], strides: [M, 1] });
      if (!run(M4, xp.ptr, sp.ptr, op.ptr)) return false;
      this.copy(out, { storage: op, dtype: out.dtype, shape: [M, N], strides: [N, 1], offset: 0 });
      return true;
    } finally {
      // stream-ordered reuse: later work on the stream runs after the GEMM has read the temporaries
      for (const t of temps) t.dispose();
    }
  }

  // ---- row kernels ---------------------------------------------------------------------------------------
  private rowThreads(nv: number): number {
    return Math.min(1024, Math.max(32, Math.ceil(nv / 32) * 32));
  }
  private rowGrid(rows: number): number {
    return Math.max(1, Math.min(rows, this.rt.info.multiprocessors * 32));
  }
  /**
   * The register-cached row kernels get one block per row (up to the grid limit): the block scheduler
   * then balances the tail, where a grid-stride loop over ~4.4 rows per block left the last wave
   * half empty.
   */
  private cachedGrid(rows: number): number {
    return Math.max(1, Math.min(rows, 0x7fffffff));
  }
  /** Blocks of `threads` threads of kernel k that fit on one SM at once (registers, threads, 32 blocks). */
  private perSm(k: Kernel, threads: number): number {
    const regs = Math.max(1, k.numRegs(C.CU_FUNC_ATTRIBUTE_NUM_REGS));
    const warps = Math.ceil(threads / 32);
    const perWarp = Math.ceil((regs * 32) / 256) * 256;  // registers are allocated per warp in units of 256
    const byRegs = Math.floor(65536 / (perWarp * warps));
    return Math.min(byRegs, Math.floor(2048 / (warps * 32)), 32);
  }
  /**
   * Persistent grid for the prefetching row kernels and the grid-stride kernels: as many blocks as are
   * resident at once, so every block streams work back to back and none waits for a second wave (a
   * grid of 8 blocks per SM where only 5 fit ran 1.6 waves, the second one 60% full).
   */
  private persistentGrid(k: Kernel, threads: number, blocks: number): number {
    return Math.max(1, Math.min(blocks, Math.max(1, this.perSm(k, threads)) * this.rt.info.multiprocessors));
  }
  /**
   * Launch a grid-stride (streaming) kernel over `items` work items, one per thread per step: 1024-thread
   * blocks (512 or 256 where the registers do not allow it), as many as are resident. Measured on the
   * H200 at 256 MiB of bf16 (docs/gpu.md): add 89% → 99.8% of copy, SwiGLU 85% → 94%, act_quant 79% →
   * 93%, against 256-thread blocks on a fixed grid of 8 per SM.
   */
  private streamLaunch(k: Kernel, items: number, args: readonly Arg[]): void {
    const threads = [1024, 512, 256].find((t) => this.perSm(k, t) >= 1) ?? 128;
    k.launch(this.persistentGrid(k, threads, Math.ceil(items / threads)), threads, 0, args);
  }
  /** Launch-shape choices that are still measured both ways (see bench/cuda-bench.ts). */
  readonly tune = {
    /**
     * Largest M sent to the skinny GEMM: 1 (on) or 0 (off). Measured against cuBLASLt on the same operands (H200):
     * M = 1 114–118%, M = 2 91–104%, M = 4 69–88%, M = 8 45–54%: only M = 1 pays.
     */
    skinnyMaxM: 1,
    /**
     * Block-scaled fp8Linear calls with M ≤ this (at most 8) and M not a multiple of 4 go to the FP8 GEMV.
     * Measured (H200, 7168 × 2048): GEMV 8.0–16.6 µs at M = 1, 2, 3, 5, 6, 7 against 29–34 µs for cuBLASLt
     * on rows padded to a multiple of 4; at M = 4 and 8 cuBLASLt runs directly and is faster (10.9 µs
     * against 12.0 and 17.5), so those M are not instantiated.
     */
    fp8GemvMaxM: 8,
  };
  private suffix(op: string, d: DType): string {
    const s = SUF[d];
    if (!s) throw new DsvError(`${op} on cuda: dtype ${d} is not supported (f32, bf16, f16, f64)`);
    return s;
  }
  /** A contiguous view of v (v itself when it already is); the caller disposes the temp if any. */
  private contiguous(v: View, dtype: DType = v.dtype): { view: View; tmp: CudaStorage | null } {
    if (isContig(v) && v.dtype === dtype) return { view: v, tmp: null };
    const s = this.tmp(dtype, numelOf(v.shape));
    const view: View = { storage: s, dtype, shape: v.shape, strides: contiguousStrides(v.shape), offset: 0 };
    this.copy(view, v);
    return { view, tmp: s };
  }

  softmax(out: View, x: View, log: boolean, opts: SoftmaxOptions = {}): void {
    this.softmaxEx(out, x, { ...opts, log });
  }

  /** Softmax with an optional pre-scale, boolean mask and log-sum-exp output (SoftmaxOptions), or log-softmax. */
  softmaxEx(out: View, x: View, o: SoftmaxExOptions = {}): void {
    const D = x.shape[x.shape.length - 1] ?? 1;
    const n = numelOf(x.shape);
    if (n === 0 || D === 0) return;
    const rows = n / D;
    const sfx = this.suffix('softmax', x.dtype);
    const xc = this.contiguous(x);
    let maskPtr = 0;
    let maskRows = 1;
    let mtmp: CudaStorage | null = null;
    if (o.mask) {
      if (o.mask.shape[o.mask.shape.length - 1] !== D) throw new DsvError(`softmax mask: last dim ${o.mask.shape.at(-1)} does not match the input's ${D}`);
      maskRows = numelOf(o.mask.shape) / D;
      if (rows % maskRows !== 0) throw new DsvError(`softmax mask: its ${maskRows} rows do not divide the input's ${rows} rows`);
      const mc = this.contiguous(o.mask, o.mask.dtype === 'bool' || o.mask.dtype === 'u8' ? o.mask.dtype : 'u8');
      mtmp = mc.tmp;
      maskPtr = this.ptr(mc.view);
    }
    const v = VEC[x.dtype];
    const vec = v && D % v === 0 && this.aligned16(xc.view, out) ? v : 1;
    // the cached kernel reads the mask VEC bytes at a time
    const cached = vec > 1 && maskPtr % vec === 0 ? cacheShape(D / vec, 256) : null;
    const variant = `${o.mask ? 'm' : ''}${o.log ? 'l' : ''}`;
    const name = cached ? `softmax_${sfx}_v${vec}_r${cached.nv}${variant ? `_${variant}` : ''}` : vec > 1 ? `softmax_${sfx}_v${vec}` : `softmax_${sfx}`;
    const kern = this.k('softmax', name, 'softmax');
    kern.launch(cached ? this.persistentGrid(kern, cached.threads, rows) : this.rowGrid(rows), cached ? cached.threads : this.rowThreads(D / vec), 0,
      [rows, D, o.scale ?? 1, this.ptr(out), this.ptr(xc.view), maskPtr, maskRows, o.log ? 1 : 0, o.lse ? this.ptr(o.lse) : 0]);
    xc.tmp?.dispose();
    mtmp?.dispose();
  }

  /** dx = y ⊙ (g − Σ_row g⊙y) · scale over the last dim (kernels/softmax.cu softmax_bwd); y, g contiguous with dx's shape and dtype. */
  softmaxBackward(dx: View, y: View, g: View, scale: number): void {
    const D = y.shape[y.shape.length - 1] ?? 1;
    const n = numelOf(y.shape);
    if (n === 0 || D === 0) return;
    const sfx = this.suffix('softmax backward', y.dtype);
    const v = VEC[y.dtype];
    const vec = v && D % v === 0 && this.aligned16(dx, y, g) ? v : 1;
    this.k('softmax', vec > 1 ? `softmax_bwd_${sfx}_v${vec}` : `softmax_bwd_${sfx}`, 'softmax_bwd')
      .launch(this.rowGrid(n / D), this.rowThreads(D / vec), 0, [n / D, D, scale, this.ptr(dx), this.ptr(y), this.ptr(g)]);
  }

  /** The reference's RMSNorm in its order and roundings (kernels/norm.cu rmsnorm_tree): out x's dtype or f32 ↔ bf16. */
  rmsNorm(out: View, x: View, w: View, eps: number): void {
    this.rmsNormTree(out, null, x, null, w, eps);
  }
  /** The pre-norm residual step: h = x + r (f32), hOut = h rounded to out's dtype, out = rmsNorm(h) · w. */
  rmsNormResidual(out: View, hOut: View, x: View, r: View, w: View, eps: number): void {
    this.rmsNormTree(out, hOut, x, r, w, eps);
  }
  private rmsNormTree(out: View, hOut: View | null, x: View, r: View | null, w: View, eps: number): void {
    const D = w.shape[0] ?? numelOf(w.shape);
    const n = numelOf(x.shape);
    if (n === 0 || D === 0) return;
    const ti = this.suffix('rmsNorm', x.dtype);
    const to = this.suffix('rmsNorm', out.dtype);
    if (to !== ti && !(ti === 'bf16' && to === 'f32') && !(ti === 'f32' && to === 'bf16')) {
      throw new DsvError(`rmsNorm on cuda: a ${x.dtype} input writes ${x.dtype}, or f32 ↔ bf16; got ${out.dtype} out`);
    }
    if (r && r.dtype !== x.dtype) throw new DsvError(`rmsNormResidual on cuda: the residual must have x's dtype (${x.dtype}), got ${r.dtype}`);
    if (hOut && (hOut.dtype !== out.dtype || !isContig(hOut))) throw new DsvError(`rmsNormResidual on cuda: the new residual must be contiguous in out's dtype (${out.dtype})`);
    const wide = x.dtype === 'f64' ? 'f64' : 'f32';
    // the tree's first L levels in registers where 2^L divides D (kernels/norm.cu): D / 2^L shared words
    const L = D % 32 === 0 ? 5 : D % 8 === 0 ? 3 : 0;
    const smem = (D >> L) * (wide === 'f64' ? 8 : 4);
    if (smem > this.rt.info.maxSharedPerBlockOptin) throw new DsvError(`rmsNorm on cuda: rows of ${D} exceed the shared memory of one block`);
    const xc = this.contiguous(x);
    const rc = r ? this.contiguous(r) : null;
    const wc = this.contiguous(w, wide);
    // the output pass in 16-byte vectors of x where every row pointer allows it (2^L | D makes V | D)
    const V = 16 / ITEMSIZE[x.dtype];
    const vec = L >= 3 && this.alignedVec(V, xc.view, wc.view, out, ...(rc ? [rc.view] : []), ...(hOut ? [hOut] : []));
    const kern = this.k('norm', `rmsnorm_tree_${ti}_${to}_l${L}${vec ? '_v' : ''}`, 'rmsnorm');
    if (smem > 48 * 1024) kern.setMaxDynamicSmem(smem, C.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES);
    kern.launch(this.rowGrid(n / D), D >= 1024 ? 256 : 128, smem,
      [n / D, D, eps, this.ptr(out), hOut ? this.ptr(hOut) : 0, this.ptr(xc.view), rc ? this.ptr(rc.view) : 0, this.ptr(wc.view)]);
    xc.tmp?.dispose();
    rc?.tmp?.dispose();
    wc.tmp?.dispose();
  }

  layerNorm(out: View, x: View, w: View, b: View, eps: number): void {
    const D = w.shape[0] ?? numelOf(w.shape);
    const n = numelOf(x.shape);
    if (n === 0 || D === 0) return;
    const rows = n / D;
    const sfx = this.suffix('layerNorm', x.dtype);
    const wd: DType = w.dtype === x.dtype || (x.dtype === 'bf16' && w.dtype === 'f32') ? w.dtype : x.dtype;
    const wc = this.contiguous(w, wd);
    const bc = this.contiguous(b, wd);
    const xc = this.contiguous(x);
    const tag = x.dtype === 'bf16' && wd === 'f32' ? 'bf16w32' : sfx;
    const v = VEC[x.dtype];
    const vec = v && D % v === 0 && (tag === 'f32' || tag === 'bf16' || tag === 'bf16w32') && this.aligned16(xc.view, out) ? v : 1;
    const cached = vec > 1 && this.alignedVec(vec, wc.view, bc.view) ? cacheShape(D / vec, 256) : null;
    // no re-reading vector kernel for bf16 with f32 weights: it takes the scalar one when not cached
    const name = cached ? `layernorm_${tag}_v${vec}_r${cached.nv}` : vec > 1 && tag !== 'bf16w32' ? `layernorm_${tag}_v${vec}` : `layernorm_${tag}`;
    const nvec = name === `layernorm_${tag}` ? 1 : vec;
    this.k('norm', name, 'layernorm').launch(cached ? this.cachedGrid(rows) : this.rowGrid(rows), cached ? cached.threads : this.rowThreads(D / nvec), 0,
      [rows, D, eps, this.ptr(out), this.ptr(xc.view), this.ptr(wc.view), this.ptr(bc.view)]);
    wc.tmp?.dispose();
    bc.tmp?.dispose();
    xc.tmp?.dispose();
  }

  rope(out: View, x: View, cos: View, sin: View, interleaved: boolean, inverse: boolean): void {
    const [, S, H, D] = x.shape as [number, number, number, number];
    const n = numelOf(x.shape);
    if (n === 0) return;
    const sfx = this.suffix('rope', x.dtype);
    const xc = this.contiguous(x);
    const cc = this.contiguous(cos, 'f32');
    const sc = this.contiguous(sin, 'f32');
    const pairs = n / 2;
    this.k('rope', `rope_${sfx}`, 'rope').launch(this.grid(pairs), THREADS, 0,
      [pairs, S, H, D, interleaved ? 1 : 0, inverse ? 1 : 0, this.ptr(out), this.ptr(xc.view), this.ptr(cc.view), this.ptr(sc.view)]);
    xc.tmp?.dispose();
    cc.tmp?.dispose();
    sc.tmp?.dispose();
  }

  /** out[r, j] = silu(g[r, j]) · u[r, j]; g and u may be row-strided halves of one [rows, 2F] tensor. */
  swiglu(out: View, g: View, u: View): void {
    const F = g.shape[g.shape.length - 1]!;
    const rows = numelOf(g.shape) / Math.max(F, 1);
    if (rows === 0 || F === 0) return;
    if (g.dtype !== u.dtype || out.dtype !== g.dtype) throw new DsvError(`swiglu: gate, up and out must share a dtype, got ${g.dtype}, ${u.dtype}, ${out.dtype}`);
    const sfx = this.suffix('swiglu', g.dtype);
    const rowStride = (v: View): number | null => {
      const r = v.shape.length;
      if (v.strides[r - 1] !== 1 && F > 1) return null;
      // all leading dims must flatten to one row stride
      let s: number | null = null;
      let expect = -1;
      for (let i = r - 2; i >= 0; i--) {
        if (v.shape[i] === 1) continue;
        if (s === null) {
          s = v.strides[i]!;
          expect = s * v.shape[i]!;
        } else if (v.strides[i] !== expect) return null;
        else expect *= v.shape[i]!;
      }
      return s ?? F;
    };
    let gs = rowStride(g);
    let us = rowStride(u);
    const gc = gs === null ? this.contiguous(g) : { view: g, tmp: null };
    const uc = us === null ? this.contiguous(u) : { view: u, tmp: null };
    gs ??= F;
    us ??= F;
    const v = VEC[g.dtype];
    const vec = v && F % v === 0 && gs % v === 0 && us % v === 0 && isContig(out) && this.aligned16(gc.view, uc.view, out) ? v : 1;
    this.streamLaunch(this.k('swiglu', vec > 1 ? `swiglu_${sfx}_v${vec}` : `swiglu_${sfx}`, 'swiglu'), rows * F / vec,
      [rows, F, this.ptr(out), this.ptr(gc.view), gs, this.ptr(uc.view), us]);
    gc.tmp?.dispose();
    uc.tmp?.dispose();
  }

  hadamard(out: View, x: View, scale: number): void {
    const n = x.shape[x.shape.length - 1] ?? 1;
    const total = numelOf(x.shape);
    if (total === 0) return;
    if ((n & (n - 1)) !== 0) throw new DsvError(`hadamard: last dim ${n} is not a power of two`);
    const sfx = this.suffix('hadamard', x.dtype);
    const smem = n * (x.dtype === 'f64' ? 8 : 4);
    if (smem > this.rt.info.maxSharedPerBlockOptin) throw new DsvError(`hadamard on cuda: a row of ${n} needs ${smem} bytes of shared memory, the device allows ${this.rt.info.maxSharedPerBlockOptin}`);
    const k = this.k('hadamard', `hadamard_${sfx}`, 'hadamard');
    if (smem > 48 * 1024) k.setMaxDynamicSmem(smem, C.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES);
    const xc = this.contiguous(x);
    const rows = total / n;
    k.launch(this.rowGrid(rows), Math.min(1024, Math.max(32, n / 2)), smem, [rows, n, scale, this.ptr(out), this.ptr(xc.view)]);
    xc.tmp?.dispose();
  }

  topk(values: View, indices: View, x: View, k: number, largest: boolean): void {
    const n = x.shape[x.shape.length - 1] ?? 0;
    const rows = n === 0 ? 0 : numelOf(x.shape) / n;
    if (rows === 0 || k === 0) return;
    if (k > n) throw new DsvError(`topk: k=${k} exceeds the last dim ${n}`);
    const sel = x.dtype === 'f32' || x.dtype === 'bf16' || x.dtype === 'f16' ? x.dtype : 'f32';
    const xc = this.contiguous(x, sel);
    const kp2 = pow2ceil(k);
    const grid = Math.min(rows, this.rt.info.multiprocessors * 4);
    const scratch = this.tmp('i64', grid * kp2);
    const vals = sel === values.dtype && isContig(values) ? values : { storage: this.tmp(sel, rows * k), dtype: sel, shape: values.shape, strides: contiguousStrides(values.shape), offset: 0 } as View;
    this.k('topk', `topk_${sel}`, 'topk').launch(grid, 512, 0, [rows, n, k, kp2, largest ? 1 : 0, this.ptr(vals), this.ptr(indices), this.ptr(xc.view), scratch.ptr]);
    if (vals !== values) {
      // values of a dtype without a topk kernel: take them from the original by index (no rounding)
      this.gather(values, this.contiguous(x).view, x.shape.length - 1, indices);
      (vals.storage as CudaStorage).dispose();
    }
    scratch.dispose();
    xc.tmp?.dispose();
  }

  // ---- DSA indexer (src/backend/cuda/dsa-indexer.ts) ------------------------------------------------------
  indexerLogits(out: View, q: View, k: View, kScale: View, w: View, start: View, end: View): void {
    indexerLogitsCuda(this, out, q, k, kScale, w, start, end);
  }
  indexerLogitsPaged(out: View, q: View, cache: View, w: View, blockTable: View, contextLens: View): void {
    indexerLogitsPagedCuda(this, out, q, cache, w, blockTable, contextLens);
  }
  indexerCacheWrite(cache: View, k: View, kScale: View, slots: View): void {
    indexerCacheWriteCuda(this, cache, k, kScale, slots);
  }
  topkSelect(out: View, x: View, k: number, start: View | null, end: View | null, blockTable: View | null, rowsPerSeq: number): void {
    topkSelectCuda(this, out, x, k, start, end, blockTable, rowsPerSeq);
  }
  causalSelect(out: View, end: View, blockTable: View | null, rowsPerSeq: number): void {
    causalSelectCuda(this, out, end, blockTable, rowsPerSeq);
  }
  /** Tokens picked from logits, a CTA of 512 threads per row (kernels/pick.cu; x contiguous f32, the op checks). */
  pickTokens(token: View, logprob: View, x: View, temperature: View, u: View, filters: { topK: View; topP: View; minP: View } | null, mask: View | null, logZ: View | null): void {
    const [R, V] = x.shape as [number, number];
    const f = filters ? [this.ptr(filters.topK), this.ptr(filters.topP), this.ptr(filters.minP)] : [0, 0, 0];
    this.k('pick', 'pick_tokens_f32', 'pick_tokens').launch(Math.min(R, this.maxGrid), 512, 0,
      [R, V, this.ptr(x), this.ptr(temperature), this.ptr(u), ...f, this.ptr(token), this.ptr(logprob), mask ? this.ptr(mask) : 0, logZ ? this.ptr(logZ) : 0]);
  }

  // ---- indexing ------------------------------------------------------------------------------------------
  private indexView(idx: View): { view: View; tmp: CudaStorage | null; code: number } {
    const d = idx.dtype === 'i64' || idx.dtype === 'i32' || idx.dtype === 'u8' ? idx.dtype : 'i64';
    const c = this.contiguous(idx, d);
    return { ...c, code: dtCode(d) };
  }
  private static split(shape: readonly number[], axis: number): { outer: number; inner: number } {
    let outer = 1;
    let inner = 1;
    for (let i = 0; i < axis; i++) outer *= shape[i]!;
    for (let i = axis + 1; i < shape.length; i++) inner *= shape[i]!;
    return { outer, inner };
  }

  gather(out: View, x: View, axis: number, idx: View): void {
    const n = numelOf(out.shape);
    if (n === 0) return;
    const { inner } = CudaBackend.split(out.shape, axis);
    const xInner = CudaBackend.split(x.shape, axis).inner;
    const xc = this.contiguous(x, out.dtype);
    const ic = this.indexView(idx);
    this.k('index', `gather_${ITEMSIZE[out.dtype]}`, 'gather').launch(this.grid(n), THREADS, 0,
      [n, out.shape[axis]!, inner, x.shape[axis]!, xInner, this.ptr(out), this.ptr(xc.view), this.ptr(ic.view), ic.code, this.rt.errWord]);
    xc.tmp?.dispose();
    ic.tmp?.dispose();
    this.indexChecked('gather');
  }

  indexSelect(out: View, x: View, axis: number, idx: View): void {
    const n = numelOf(out.shape);
    if (n === 0) return;
    const { inner } = CudaBackend.split(x.shape, axis);
    const xc = this.contiguous(x, out.dtype);
    const ic = this.indexView(idx);
    this.k('index', `index_select_${ITEMSIZE[out.dtype]}`, 'index_select').launch(this.grid(n), THREADS, 0,
      [n, numelOf(idx.shape), inner, x.shape[axis]!, this.ptr(out), this.ptr(xc.view), this.ptr(ic.view), ic.code, this.rt.errWord]);
    xc.tmp?.dispose();
    ic.tmp?.dispose();
    this.indexChecked('indexSelect');
  }

  private indexChecked(op: string): void {
    if (this.eagerIndexChecks && !this.rt.capturing) this.rt.checkErrors(op);
  }

  private addSuffix(op: string, d: DType): string {
    const m: Partial<Record<DType, string>> = { f32: 'f32', f64: 'f64', bf16: 'bf16', f16: 'f16', i32: 'i32', i64: 'i64' };
    const s = m[d];
    if (!s) throw new DsvError(`${op} on cuda: dtype ${d} has no atomic add (f32, f64, bf16, f16, i32, i64)`);
    return s;
  }

  scatterAdd(out: View, axis: number, idx: View, src: View): void {
    const n = numelOf(idx.shape);
    if (n === 0) return;
    const sfx = this.addSuffix('scatterAdd', out.dtype);
    const { inner } = CudaBackend.split(idx.shape, axis);
    const oInner = CudaBackend.split(out.shape, axis).inner;
    const sInner = CudaBackend.split(src.shape, axis).inner;
    const sc = this.contiguous(src, out.dtype);
    const ic = this.indexView(idx);
    this.k('index', `scatter_add_${sfx}`, 'scatter_add').launch(this.grid(n), THREADS, 0,
      [n, idx.shape[axis]!, inner, out.shape[axis]!, oInner, src.shape[axis]!, sInner, this.ptr(out), this.ptr(ic.view), ic.code, this.ptr(sc.view), this.rt.errWord]);
    sc.tmp?.dispose();
    ic.tmp?.dispose();
    this.indexChecked('scatterAdd');
  }

  indexAdd(out: View, axis: number, idx: View, src: View): void {
    const n = numelOf(src.shape);
    if (n === 0) return;
    const sfx = this.addSuffix('indexAdd', out.dtype);
    const { inner } = CudaBackend.split(out.shape, axis);
    const sc = this.contiguous(src, out.dtype);
    const ic = this.indexView(idx);
    this.k('index', `index_add_${sfx}`, 'index_add').launch(this.grid(n), THREADS, 0,
      [n, numelOf(idx.shape), inner, out.shape[axis]!, this.ptr(out), this.ptr(ic.view), ic.code, this.ptr(sc.view), this.rt.errWord]);
    sc.tmp?.dispose();
    ic.tmp?.dispose();
    this.indexChecked('indexAdd');
  }

  // ---- FP8 ---------------------------------------------------------------------------------------------
  actQuant(q: View, s: View, x: View, block: number, ue8m0: boolean): void {
    const N = x.shape[x.shape.length - 1] ?? 0;
    const total = numelOf(x.shape);
    if (total === 0 || N === 0) return;
    const rows = total / N;
    const src = x.dtype === 'f32' || x.dtype === 'bf16' ? x.dtype : 'f32';
    const xc = this.contiguous(x, src);
    const esz = src === 'bf16' ? 2 : 4;
    if (block === 128 && N % 128 === 0 && this.ptr(xc.view) % (8 * esz) === 0 && this.ptr(q) % 8 === 0) {
      // half-warp per 128-block, U blocks in flight per half-warp (U = 4 for bf16, 2 for f32)
      const nblk = total / 128;
      const U = src === 'bf16' ? 4 : 2;
      this.streamLaunch(this.k('quant', `act_quant_${src}_b128`, 'act_quant_b128'), Math.ceil((nblk * 16) / U),
        [nblk, ue8m0 ? 1 : 0, this.ptr(q), this.ptr(s), this.ptr(xc.view)]);
      xc.tmp?.dispose();
      return;
    }
    const v4 = block % 128 === 0 && N % block === 0 && this.ptr(xc.view) % 16 === 0 && this.ptr(q) % 4 === 0;
    const warps = rows * Math.ceil(N / block);
    this.k('quant', v4 ? `act_quant_${src}_v4` : `act_quant_${src}`, 'act_quant').launch(this.grid(warps * 32), THREADS, 0,
      [rows, N, block, ue8m0 ? 1 : 0, this.ptr(q), this.ptr(s), this.ptr(xc.view)]);
    xc.tmp?.dispose();
  }

  /** out = e4m3(q) · s per block of `block` along the last dim (inverse of actQuant up to rounding). */
  actDequant(out: View, q: View, s: View, block: number): void {
    const N = q.shape[q.shape.length - 1] ?? 0;
    const total = numelOf(q.shape);
    if (total === 0) return;
    if (out.dtype !== 'f32' && out.dtype !== 'bf16') throw new DsvError(`actDequant: out must be f32 or bf16, got ${out.dtype}`);
    this.k('quant', `act_dequant_${out.dtype}`, 'act_dequant').launch(this.grid(total), THREADS, 0, [total / N, N, block, this.ptr(out), this.ptr(q), this.ptr(s)]);
  }

  // ---- sparse MLA (src/backend/cuda/sparse-mla.ts) ---------------------------------------------------------
  sparseMlaPrefill(out: View, lse: View, q: View, kv: View, indices: View, dv: number, scale: number): void {
    sparseMlaPrefillCuda(this, out, lse, q, kv, indices, dv, scale);
  }
  sparseMhaPrefill(out: View, lse: View, q: View, k: View, v: View, indices: View, scale: number): void {
    sparseMhaPrefillCuda(this, out, lse, q, k, v, indices, scale);
  }
  sparseMlaDecode(out: View, lse: View, q: View, cache: View, indices: View, dv: number, scale: number): void {
    sparseMlaDecodeCuda(this, out, lse, q, cache, indices, dv, scale);
  }
  mlaCacheWrite(cache: View, latent: View, rope: View, slots: View): void {
    mlaCacheWriteCuda(this, cache, latent, rope, slots);
  }
  /** Sparse MLA backward and the indexer's training ops (src/backend/cuda/sparse-mla-backward.ts, indexer-train.ts). */
  sparseMlaBackward(dq: View, dkv: View, dout: View, q: View, kv: View, out: View, lse: View, indices: View, dv: number, scale: number): void {
    sparseMlaBackwardCuda(this, dq, dkv, dout, q, kv, out, lse, indices, dv, scale);
  }
  indexerScores(out: View, q: View, k: View, w: View, start: View | null, end: View | null, indices: View | null): void {
    indexerScoresCuda(this, out, q, k, w, start, end, indices);
  }
  indexerScoresBackward(dq: View, dk: View, dw: View, dout: View, q: View, k: View, w: View, start: View | null, end: View | null, indices: View | null): void {
    indexerScoresBackwardCuda(this, dq, dk, dw, dout, q, k, w, start, end, indices);
  }
  indexerKlLoss(loss: View, grad: View, scores: View, q: View, kv: View, lse: View, start: View | null, end: View | null, indices: View | null, dv: number, scale: number): void {
    indexerKlLossCuda(this, loss, grad, scores, q, kv, lse, start, end, indices, dv, scale);
  }
  moeRoute(out: View, scores: View, bias: View | null, forced: View | null, groups: number, topkGroups: number): void {
    moeRouteCuda(this, out, scores, bias, forced, groups, topkGroups);
  }
  moeDispatch(pairs: View, rows: View, tokens: View, offsets: View, experts: View): void {
    moeDispatchCuda(this, pairs, rows, tokens, offsets, experts);
  }
  groupedMatmul(out: View, x: View, w: View, offsets: View): void {
    groupedMatmulCuda(this, out, x, w, offsets);
  }
  groupedMatmulFp8(out: View, q: View, sq: View, w8: View, sw: View, offsets: View): void {
    groupedMatmulFp8Cuda(this, out, q, sq, w8, sw, offsets);
  }
  groupedMatmulBackward(dx: View | null, dw: View | null, g: View, x: View, w: View, offsets: View): void {
    groupedMatmulBackwardCuda(this, dx, dw, g, x, w, offsets);
  }
  moeCombine(out: View, ySlots: View, weights: View, rows: View, shared: View | null): void {
    moeCombineCuda(this, out, ySlots, weights, rows, shared);
  }
  /** FP8 block-scaled linear from quantised activations (src/backend/cuda/fp8-linear.ts). */
  fp8BlockLinear(out: View, q: View, sq: View, w8: View, sw: View): void {
    fp8BlockLinearCuda(this, out, q, sq, w8, sw);
  }

  // ---- graphs, timing ------------------------------------------------------------------------------------
  /** Capture the kernels `fn` enqueues into a replayable CUDA graph (no host reads inside fn). */
  captureGraph(fn: () => void): CudaGraph {
    return this.rt.capture(fn);
  }
  event(): CudaEvent {
    return this.rt.event(true);
  }
  /** Hold the stream for `ms` of device time (kernels/spin.cu): what is enqueued next waits behind it. */
  hold(ms: number): void {
    if (!(ms > 0) || ms > 10_000) throw new DsvError(`hold on cuda: ms must be in (0, 10000], got ${ms}`);
    this.rt.modules.get('spin', 'spin_ns', ['i64']).launch(1, 1, 0, [Math.round(ms * 1e6)]);
  }
}


/** The single stride s with offset(batch i) = i · s over the flattened batch dims, or null if none. */
function uniformBatchStride(shape: readonly number[], strides: readonly number[]): number | null {
  let s: number | null = null;
  let expect = 0;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] === 1) continue;
    if (s === null) {
      s = strides[i]!;
      expect = s * shape[i]!;
    } else if (strides[i] !== expect) return null;
    else expect *= shape[i]!;
  }
  return s ?? 0;
}
