// A WebAssembly SIMD microkernel for the f32 TypeScript GEMM. Scalar JavaScript peaks near one multiply-add
// per cycle; 128-bit SIMD does four lanes per instruction, which is what lifts the fallback past a few
// GFLOP/s. The module is tiny, so it is assembled here byte by byte (no toolchain, no binary in the repo).
//
// Export `k(kc, a, b, t)`: with a = MR x kc packed A (4 floats per depth step) and b = kc x NR packed B
// (8 floats per depth step), both at byte addresses in the module's memory, it stores the 4 x 8 f32 tile
//   t[r][c] = sum_{q < kc} a[q][r] * b[q][c]
// row-major at byte address t. Eight v128 accumulators (two per row) plus two B vectors and one splatted
// A value fit the 16 SIMD registers of x86-64, so the loop never spills.
//
// Export `d(kp, x, b, t)`: four dot products of length kp (a multiple of 4) of the vector at x with the
// rows b, b + 4kp, b + 8kp, b + 12kp (bytes), stored as four v128 partial sums (16 f32) at t; the caller
// adds each group of four lanes. It serves matrix-vector shapes (a decode step's x W^T), where packing
// would cost as much as the product: rows of W are copied in with memcpy-speed TypedArray.set instead.
// Export `d2(kp, x, b, t)`: the same for two vectors at once (x and x + 4kp bytes), so each loaded row
// vector of b feeds two multiply-adds; 32 partial sums at t, those of the first vector first.
// The module exports its memory ("mem"); callers grow it and pack into Float32Array views of it.

export const WASM_MR = 4;
export const WASM_NR = 8;

// Opcodes (WebAssembly core spec and SIMD proposal, now standard).
const BLOCK = 0x02, LOOP = 0x03, END = 0x0b, BR_IF = 0x0d, VOID = 0x40;
const LOCAL_GET = 0x20, LOCAL_SET = 0x21, LOCAL_TEE = 0x22;
const I32_CONST = 0x41, I32_EQZ = 0x45, I32_LT_U = 0x49, I32_ADD = 0x6a, I32_SHL = 0x74;
const I32 = 0x7f, V128 = 0x7b;
const SIMD = 0xfd;
const V128_LOAD = [SIMD, 0x00], V128_LOAD32_SPLAT = [SIMD, 0x09], V128_STORE = [SIMD, 0x0b];
const F32X4_ADD = [SIMD, 0xe4, 0x01], F32X4_MUL = [SIMD, 0xe6, 0x01];

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}

function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && !(b & 0x40)) || (n === -1 && b & 0x40)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body];
const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
const str = (s: string): number[] => [...uleb(s.length), ...Array.from(s, (c) => c.charCodeAt(0))];
const memarg = (alignLog2: number, offset: number): number[] => [...uleb(alignLog2), ...uleb(offset)];

function kernelBody(): number[] {
  // params: 0 kc, 1 a, 2 b, 3 t; locals: 4 end (i32), 5..12 acc (v128), 13 b0, 14 b1, 15 av
  const KC = 0, A = 1, B = 2, T = 3, ENDP = 4, ACC = 5, B0 = 13, B1 = 14, AV = 15;
  const code: number[] = [];
  const get = (i: number): void => void code.push(LOCAL_GET, i);
  const set = (i: number): void => void code.push(LOCAL_SET, i);
  // end = a + kc * 16   (4 floats of packed A per depth step)
  get(A); get(KC); code.push(I32_CONST, ...sleb(4), I32_SHL, I32_ADD); set(ENDP);
  code.push(BLOCK, VOID);
  get(KC); code.push(I32_EQZ, BR_IF, 0);
  code.push(LOOP, VOID);
  get(B); code.push(...V128_LOAD, ...memarg(4, 0)); set(B0);
  get(B); code.push(...V128_LOAD, ...memarg(4, 16)); set(B1);
  for (let r = 0; r < WASM_MR; r++) {
    get(A); code.push(...V128_LOAD32_SPLAT, ...memarg(2, 4 * r)); set(AV);
    for (let h = 0; h < 2; h++) {
      const acc = ACC + 2 * r + h;
      get(acc); get(AV); get(h ? B1 : B0); code.push(...F32X4_MUL, ...F32X4_ADD); set(acc);
    }
  }
  get(B); code.push(I32_CONST, ...sleb(4 * WASM_NR), I32_ADD); set(B);
  get(A); code.push(I32_CONST, ...sleb(4 * WASM_MR), I32_ADD, LOCAL_TEE, A);
  get(ENDP); code.push(I32_LT_U, BR_IF, 0);
  code.push(END); // loop
  code.push(END); // block
  for (let i = 0; i < 8; i++) {
    get(T); get(ACC + i); code.push(...V128_STORE, ...memarg(4, 16 * i));
  }
  code.push(END); // function
  const locals = vec([[...uleb(1), I32], [...uleb(11), V128]]);
  const body = [...locals, ...code];
  return [...uleb(body.length), ...body];
}

function dotBody(): number[] {
  // params: 0 kp, 1 x, 2 b, 3 t; locals: 4 end, 5..7 b1..b3 (i32), 8..11 acc (v128), 12 xv (v128)
  const KP = 0, X = 1, B = 2, T = 3, ENDP = 4, ACC = 8, XV = 12;
  const ROWS = [B, 5, 6, 7];
  const code: number[] = [];
  const get = (i: number): void => void code.push(LOCAL_GET, i);
  const set = (i: number): void => void code.push(LOCAL_SET, i);
  const bump = (i: number, by: number): void => {
    get(i); code.push(I32_CONST, ...sleb(by), I32_ADD); set(i);
  };
  for (let r = 1; r < 4; r++) {
    // row r starts kp * 4 bytes after row r - 1
    get(ROWS[r - 1]!); get(KP); code.push(I32_CONST, ...sleb(2), I32_SHL, I32_ADD); set(ROWS[r]!);
  }
  get(X); get(KP); code.push(I32_CONST, ...sleb(2), I32_SHL, I32_ADD); set(ENDP);
  code.push(BLOCK, VOID);
  get(KP); code.push(I32_EQZ, BR_IF, 0);
  code.push(LOOP, VOID);
  get(X); code.push(...V128_LOAD, ...memarg(4, 0)); set(XV);
  for (let r = 0; r < 4; r++) {
    get(ACC + r); get(XV); get(ROWS[r]!); code.push(...V128_LOAD, ...memarg(4, 0), ...F32X4_MUL, ...F32X4_ADD); set(ACC + r);
    bump(ROWS[r]!, 16);
  }
  get(X); code.push(I32_CONST, ...sleb(16), I32_ADD, LOCAL_TEE, X);
  get(ENDP); code.push(I32_LT_U, BR_IF, 0);
  code.push(END, END);
  for (let r = 0; r < 4; r++) {
    get(T); get(ACC + r); code.push(...V128_STORE, ...memarg(4, 16 * r));
  }
  code.push(END);
  const body = [...vec([[...uleb(4), I32], [...uleb(5), V128]]), ...code];
  return [...uleb(body.length), ...body];
}

function dot2Body(): number[] {
  // params: 0 kp, 1 x, 2 b, 3 t; locals: 4 end, 5..7 b1..b3, 8 x1 (i32), 9..16 acc, 17 xv0, 18 xv1, 19 bv (v128)
  const KP = 0, X = 1, B = 2, T = 3, ENDP = 4, X1 = 8, ACC = 9, XV0 = 17, XV1 = 18, BV = 19;
  const ROWS = [B, 5, 6, 7];
  const code: number[] = [];
  const get = (i: number): void => void code.push(LOCAL_GET, i);
  const set = (i: number): void => void code.push(LOCAL_SET, i);
  const plusRow = (from: number, to: number): void => {
    get(from); get(KP); code.push(I32_CONST, ...sleb(2), I32_SHL, I32_ADD); set(to);
  };
  for (let r = 1; r < 4; r++) plusRow(ROWS[r - 1]!, ROWS[r]!);
  plusRow(X, X1);
  plusRow(X, ENDP);
  code.push(BLOCK, VOID);
  get(KP); code.push(I32_EQZ, BR_IF, 0);
  code.push(LOOP, VOID);
  get(X); code.push(...V128_LOAD, ...memarg(4, 0)); set(XV0);
  get(X1); code.push(...V128_LOAD, ...memarg(4, 0)); set(XV1);
  for (let j = 0; j < 4; j++) {
    get(ROWS[j]!); code.push(...V128_LOAD, ...memarg(4, 0)); set(BV);
    get(ACC + j); get(XV0); get(BV); code.push(...F32X4_MUL, ...F32X4_ADD); set(ACC + j);
    get(ACC + 4 + j); get(XV1); get(BV); code.push(...F32X4_MUL, ...F32X4_ADD); set(ACC + 4 + j);
    get(ROWS[j]!); code.push(I32_CONST, ...sleb(16), I32_ADD); set(ROWS[j]!);
  }
  get(X1); code.push(I32_CONST, ...sleb(16), I32_ADD); set(X1);
  get(X); code.push(I32_CONST, ...sleb(16), I32_ADD, LOCAL_TEE, X);
  get(ENDP); code.push(I32_LT_U, BR_IF, 0);
  code.push(END, END);
  for (let i = 0; i < 8; i++) {
    get(T); get(ACC + i); code.push(...V128_STORE, ...memarg(4, 16 * i));
  }
  code.push(END);
  const body = [...vec([[...uleb(5), I32], [...uleb(11), V128]]), ...code];
  return [...uleb(body.length), ...body];
}

function moduleBytes(): Uint8Array {
  const bytes = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec([[0x60, ...uleb(4), I32, I32, I32, I32, ...uleb(0)]])), // type 0: (i32 x4) -> ()
    ...section(3, vec([uleb(0), uleb(0), uleb(0)])), // functions k, d and d2 all have type 0
    ...section(5, vec([[0x00, ...uleb(1)]])), // one memory, 1 page minimum, no maximum
    ...section(7, vec([[...str('mem'), 0x02, ...uleb(0)], [...str('k'), 0x00, ...uleb(0)], [...str('d'), 0x00, ...uleb(1)], [...str('d2'), 0x00, ...uleb(2)]])),
    ...section(10, vec([kernelBody(), dotBody(), dot2Body()])),
  ];
  return new Uint8Array(bytes);
}

// The project compiles with lib ES2022 and no DOM, which declares no WebAssembly types; these are the few
// members used here, typed after the JS API spec.
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
}
const wasmApi = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;

export interface WasmKernel {
  /** Computes one 4 x 8 tile; addresses are byte offsets into `memory`. */
  k(kc: number, a: number, b: number, t: number): void;
  /** Four length-kp dot products as 16 partial sums; addresses are byte offsets into `memory`. */
  d(kp: number, x: number, b: number, t: number): void;
  /** `d` for two vectors, x and x + 4kp: 32 partial sums, those of x first. */
  d2(kp: number, x: number, b: number, t: number): void;
  memory: WasmMemory;
}

let compiled: object | null | undefined;

/** Whether this runtime compiles the SIMD module (compiled once, cached). */
export function wasmSimdAvailable(): boolean {
  if (compiled === undefined) {
    try {
      const bytes = moduleBytes();
      compiled = wasmApi && wasmApi.validate(bytes) ? new wasmApi.Module(bytes) : null;
    } catch {
      compiled = null;
    }
  }
  return compiled !== null;
}

/** A fresh instance (own memory) per thread, or null where WebAssembly SIMD is unavailable. */
export function instantiateWasmKernel(): WasmKernel | null {
  if (!wasmSimdAvailable()) return null;
  const inst = new wasmApi!.Instance(compiled!, {});
  const ex = inst.exports as unknown as Omit<WasmKernel, 'memory'> & { mem: WasmMemory };
  return { k: ex.k, d: ex.d, d2: ex.d2, memory: ex.mem };
}
