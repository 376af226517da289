// cuBLASLt GEMMs in column-major terms: D[m×n] = alpha · op(A)[m×k] · op(B)[k×n] (+ beta · C), with
// optional strided batching. Plans (descriptors, layouts and the heuristic's algorithm) are cached per
// shape/layout/alignment key, so a repeated GEMM costs one cublasLtMatmul call.
// FP8 (e4m3) needs the "TN" form (op(A) = Aᵀ, op(B) = B) and takes f32 scale factors through device
// pointers: one per tensor (SCALAR_32F), or, where cuBLASLt offers them, DeepSeek-style block scales
// (VEC128_32F: one per 128 consecutive K elements of each row; BLK128x128_32F: one per 128×128 tile).
import { DsvError } from '../../errors.js';
import * as L from './cublaslt-consts.js';
import * as C from './cuda-consts.js';
import { checkLt, loadCublasLt, type CublasLt, type Handle } from './ffi.js';
import type { CudaRuntime } from './runtime.js';

export type LtType = 'f32' | 'bf16' | 'f16' | 'f8e4m3';
const CUDA_TYPE: Record<LtType, number> = { f32: C.CUDA_R_32F, bf16: C.CUDA_R_16BF, f16: C.CUDA_R_16F, f8e4m3: C.CUDA_R_8F_E4M3 };

export type ScaleMode = 'tensor' | 'vec128' | 'blk128x128';

export interface GemmSpec {
  /** operand dtypes: a and b share one; d is the output (and C) dtype */
  ab: LtType;
  d: LtType;
  transA: boolean;
  transB: boolean;
  m: number; n: number; k: number;
  a: number; lda: number;
  b: number; ldb: number;
  dPtr: number; ldd: number;
  batch?: number;
  strideA?: number; strideB?: number; strideD?: number;
  alpha?: number;
  /** FP8 only: device pointers to f32 scales and how they are laid out */
  scaleA?: number; scaleB?: number;
  scaleModeA?: ScaleMode; scaleModeB?: ScaleMode;
}

interface Plan {
  desc: Handle; la: Handle; lb: Handle; ld: Handle;
  algo: Buffer;
  wsNeeded: number;
}

const WORKSPACE = 32 << 20;

/** Largest power of two (≤ 256) dividing the address: the alignment cuBLASLt may assume. */
function alignOf(ptr: number): number {
  let a = 1;
  while (a < 256 && ptr % (a * 2) === 0) a *= 2;
  return a;
}

export class BlasLt {
  readonly lib: CublasLt;
  private readonly handle: Handle;
  private readonly workspace: number;
  private readonly plans = new Map<string, Plan | null>();
  private readonly one = new Float32Array([1]);
  private readonly zero = new Float32Array([0]);
  private readonly scalePtr = new BigUint64Array(1);
  readonly version: number;

  constructor(private readonly rt: CudaRuntime) {
    if (L.CUBLAS_COMPUTE_32F === undefined) {
      throw new DsvError('cuBLASLt constants were not generated on this machine: run `node scripts/gen-cuda-consts.mjs --lib cublaslt` where cublasLt.h is installed (scripts/device-test.sh does), then rebuild');
    }
    this.lib = loadCublasLt();
    const h: Handle[] = [null];
    checkLt(this.lib.cublasLtCreate(h), 'cublasLtCreate');
    this.handle = h[0]!;
    this.version = Number(this.lib.cublasLtGetVersion());
    this.workspace = rt.allocator.malloc(WORKSPACE)[0];
  }

  /** True when cuBLASLt's headers here define the scale mode (the heuristic decides if the GPU runs it). */
  static hasScaleMode(mode: ScaleMode): boolean {
    if (mode === 'tensor') return true;
    return mode === 'vec128' ? L.CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F !== undefined : L.CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F !== undefined;
  }

  private layout(type: LtType, rows: number, cols: number, ld: number, batch: number, stride: number): Handle {
    const l: Handle[] = [null];
    checkLt(this.lib.cublasLtMatrixLayoutCreate(l, CUDA_TYPE[type], rows, cols, ld), 'cublasLtMatrixLayoutCreate');
    if (batch > 1) {
      checkLt(this.lib.cublasLtMatrixLayoutSetAttribute(l[0], L.CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, new Int32Array([batch]), 4), 'cublasLtMatrixLayoutSetAttribute(BATCH_COUNT)');
      checkLt(this.lib.cublasLtMatrixLayoutSetAttribute(l[0], L.CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, new BigInt64Array([BigInt(stride)]), 8), 'cublasLtMatrixLayoutSetAttribute(STRIDED_BATCH_OFFSET)');
    }
    return l[0]!;
  }

  private plan(s: GemmSpec, key: string): Plan | null {
    if (this.plans.has(key)) return this.plans.get(key)!;
    const lib = this.lib;
    const batch = s.batch ?? 1;
    const d: Handle[] = [null];
    checkLt(lib.cublasLtMatmulDescCreate(d, L.CUBLAS_COMPUTE_32F, C.CUDA_R_32F), 'cublasLtMatmulDescCreate');
    const desc = d[0]!;
    const setD = (attr: number, v: ArrayBufferView, what: string): void =>
      checkLt(lib.cublasLtMatmulDescSetAttribute(desc, attr, v, v.byteLength), `cublasLtMatmulDescSetAttribute(${what})`);
    setD(L.CUBLASLT_MATMUL_DESC_TRANSA, new Int32Array([s.transA ? L.CUBLAS_OP_T : L.CUBLAS_OP_N]), 'TRANSA');
    setD(L.CUBLASLT_MATMUL_DESC_TRANSB, new Int32Array([s.transB ? L.CUBLAS_OP_T : L.CUBLAS_OP_N]), 'TRANSB');
    if (s.ab === 'f8e4m3') {
      const mode = (m: ScaleMode | undefined): number =>
        m === 'vec128' ? L.CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F : m === 'blk128x128' ? L.CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F : L.CUBLASLT_MATMUL_MATRIX_SCALE_SCALAR_32F;
      if (s.scaleModeA && s.scaleModeA !== 'tensor') setD(L.CUBLASLT_MATMUL_DESC_A_SCALE_MODE, new Int32Array([mode(s.scaleModeA)]), 'A_SCALE_MODE');
      if (s.scaleModeB && s.scaleModeB !== 'tensor') setD(L.CUBLASLT_MATMUL_DESC_B_SCALE_MODE, new Int32Array([mode(s.scaleModeB)]), 'B_SCALE_MODE');
      // the heuristic sees this call's pointers; gemm() re-sets them on every call (see there)
      if (s.scaleA) setD(L.CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, new BigUint64Array([BigInt(s.scaleA)]), 'A_SCALE_POINTER');
      if (s.scaleB) setD(L.CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, new BigUint64Array([BigInt(s.scaleB)]), 'B_SCALE_POINTER');
    }
    const [ar, ac] = s.transA ? [s.k, s.m] : [s.m, s.k];
    const [br, bc] = s.transB ? [s.n, s.k] : [s.k, s.n];
    const la = this.layout(s.ab, ar, ac, s.lda, batch, s.strideA ?? 0);
    const lb = this.layout(s.ab, br, bc, s.ldb, batch, s.strideB ?? 0);
    const ld = this.layout(s.d, s.m, s.n, s.ldd, batch, s.strideD ?? s.m * s.n);
    const p: Handle[] = [null];
    checkLt(lib.cublasLtMatmulPreferenceCreate(p), 'cublasLtMatmulPreferenceCreate');
    const setP = (attr: number, v: number, what: string): void => {
      const buf = new BigUint64Array([BigInt(v)]);
      checkLt(lib.cublasLtMatmulPreferenceSetAttribute(p[0], attr, attr === L.CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES ? buf : new Uint32Array([v]), attr === L.CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES ? 8 : 4), `cublasLtMatmulPreferenceSetAttribute(${what})`);
    };
    setP(L.CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, WORKSPACE, 'MAX_WORKSPACE_BYTES');
    setP(L.CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, alignOf(s.a), 'MIN_ALIGNMENT_A_BYTES');
    setP(L.CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, alignOf(s.b), 'MIN_ALIGNMENT_B_BYTES');
    setP(L.CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, alignOf(s.dPtr), 'MIN_ALIGNMENT_C_BYTES');
    setP(L.CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, alignOf(s.dPtr), 'MIN_ALIGNMENT_D_BYTES');
    const res = Buffer.alloc(L.SIZEOF_cublasLtMatmulHeuristicResult_t);
    const count = [0];
    const rc = lib.cublasLtMatmulAlgoGetHeuristic(this.handle, desc, la, lb, ld, ld, p[0], 1, res, count);
    lib.cublasLtMatmulPreferenceDestroy(p[0]);
    let plan: Plan | null = null;
    if (rc === 0 && count[0]! > 0 && res.readInt32LE(L.OFFSETOF_HEURISTIC_state) === 0) {
      plan = { desc, la, lb, ld, algo: res, wsNeeded: Number(res.readBigUInt64LE(L.OFFSETOF_HEURISTIC_workspaceSize)) };
    } else {
      lib.cublasLtMatmulDescDestroy(desc);
      lib.cublasLtMatrixLayoutDestroy(la);
      lib.cublasLtMatrixLayoutDestroy(lb);
      lib.cublasLtMatrixLayoutDestroy(ld);
      if (rc !== 0 && rc !== L.CUBLAS_STATUS_NOT_SUPPORTED) checkLt(rc, 'cublasLtMatmulAlgoGetHeuristic');
    }
    this.plans.set(key, plan);
    return plan;
  }

  /** Runs the GEMM; returns false (and does nothing) when cuBLASLt has no algorithm for it. */
  gemm(s: GemmSpec): boolean {
    const key = [s.ab, s.d, +s.transA, +s.transB, s.m, s.n, s.k, s.lda, s.ldb, s.ldd, s.batch ?? 1, s.strideA ?? 0, s.strideB ?? 0,
      s.strideD ?? 0, alignOf(s.a), alignOf(s.b), alignOf(s.dPtr), +!!s.scaleA, +!!s.scaleB, s.scaleModeA ?? '', s.scaleModeB ?? ''].join(',');
    const plan = this.plan(s, key);
    if (!plan) return false;
    // Scale pointers are per call, not per plan: they are read when cublasLtMatmul is enqueued, and keying
    // plans by them grew the cache with every freshly allocated scale tensor.
    if (s.ab === 'f8e4m3') {
      this.scalePtr[0] = BigInt(s.scaleA ?? 0);
      checkLt(this.lib.cublasLtMatmulDescSetAttribute(plan.desc, L.CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, this.scalePtr, 8), 'cublasLtMatmulDescSetAttribute(A_SCALE_POINTER)');
      this.scalePtr[0] = BigInt(s.scaleB ?? 0);
      checkLt(this.lib.cublasLtMatmulDescSetAttribute(plan.desc, L.CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, this.scalePtr, 8), 'cublasLtMatmulDescSetAttribute(B_SCALE_POINTER)');
    }
    const alpha = s.alpha === undefined || s.alpha === 1 ? this.one : new Float32Array([s.alpha]);
    checkLt(this.lib.cublasLtMatmul(this.handle, plan.desc, alpha, s.a, plan.la, s.b, plan.lb, this.zero, s.dPtr, plan.ld, s.dPtr, plan.ld,
      plan.algo, this.workspace, WORKSPACE, this.rt.stream), 'cublasLtMatmul');
    return true;
  }
}
