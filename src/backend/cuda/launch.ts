// Kernel modules and launches. Cubins built by scripts/build-kernels.mjs are loaded on first use; each
// kernel is bound with a declared parameter signature that is checked against the cubin's own
// parameter table (cuFuncGetParamInfo): a count or size mismatch throws here, at bind time, instead of
// letting cuLaunchKernel read past the argument array. Every Kernel owns one pre-built argument block
// and pointer table, so a launch only rewrites the argument bytes and makes one FFI call.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DsvError } from '../../errors.js';
import { addressOf, check, type Driver, type Handle } from './ffi.js';

/** Parameter kinds: p pointer · i32 · i64 · u64 · f32 · f64 · iter (the 360-byte `Iter` struct of common.cuh). */
export type ParamKind = 'p' | 'i32' | 'i64' | 'u64' | 'f32' | 'f64' | 'iter';
const KIND_SIZE: Record<ParamKind, number> = { p: 8, i32: 4, i64: 8, u64: 8, f32: 4, f64: 8, iter: 360 };
export const ITER_BYTES = 360;

export function kernelDir(): string {
  if (process.env.DSV32_KERNEL_DIR) return resolve(process.env.DSV32_KERNEL_DIR);
  // dist/src/backend/cuda/launch.js → dist/kernels
  return resolve(dirname(fileURLToPath(import.meta.url)), '../../../kernels');
}

export class KernelNotFoundError extends DsvError {}

/** One kernel argument: a number (pointers and integers as JS numbers) or the bytes of a struct. */
export type Arg = number | Uint8Array;

export class Kernel {
  readonly paramCount: number;
  private readonly block: Buffer;
  private readonly dv: DataView;
  readonly table: BigUint64Array;
  private readonly offsets: number[];

  constructor(private readonly cu: Driver, readonly name: string, readonly fn: Handle, private readonly kinds: readonly ParamKind[], readonly stream: () => Handle) {
    const offsets: number[] = [];
    const sizes: number[] = [];
    for (let i = 0; ; i++) {
      const off = [0];
      const size = [0];
      if (cu.cuFuncGetParamInfo(fn, i, off, size) !== 0) break;
      offsets.push(Number(off[0]));
      sizes.push(Number(size[0]));
    }
    if (offsets.length !== kinds.length) {
      throw new DsvError(`kernel ${name}: the cubin declares ${offsets.length} parameters, the binding expects ${kinds.length} (${kinds.join(', ')}); rebuild kernels (npm run kernels) or fix src/backend/cuda`);
    }
    for (let i = 0; i < kinds.length; i++) {
      if (sizes[i] !== KIND_SIZE[kinds[i]!]) {
        throw new DsvError(`kernel ${name}: parameter ${i} is ${sizes[i]} bytes in the cubin, the binding's '${kinds[i]}' is ${KIND_SIZE[kinds[i]!]}`);
      }
    }
    this.paramCount = kinds.length;
    this.offsets = offsets;
    const total = kinds.length ? offsets[kinds.length - 1]! + sizes[kinds.length - 1]! : 0;
    this.block = Buffer.alloc(Math.max(8, total + 8));
    this.dv = new DataView(this.block.buffer, this.block.byteOffset, this.block.byteLength);
    const base = addressOf(this.block);
    this.table = new BigUint64Array(Math.max(1, kinds.length));
    for (let i = 0; i < kinds.length; i++) this.table[i] = base + BigInt(offsets[i]!);
  }

  /** Writes args into the argument block and launches a 1-D (or 2-D, 3-D via gridY, gridZ) grid on the stream. */
  launch(grid: number, threads: number, smem: number, args: readonly Arg[], gridY = 1, gridZ = 1): void {
    if (args.length !== this.paramCount) throw new DsvError(`kernel ${this.name}: ${args.length} arguments given, ${this.paramCount} expected`);
    const dv = this.dv;
    for (let i = 0; i < args.length; i++) {
      const o = this.offsets[i]!;
      const a = args[i]!;
      switch (this.kinds[i]) {
        case 'p': case 'i64': case 'u64': {
          const v = a as number;
          if (v >= 0 && v <= Number.MAX_SAFE_INTEGER) {
            // two 32-bit halves: no BigInt allocation on the launch path (device pointers are < 2^53)
            const lo = v % 4294967296;
            dv.setUint32(o, lo, true);
            dv.setUint32(o + 4, (v - lo) / 4294967296, true);
          } else dv.setBigInt64(o, BigInt(v), true);
          break;
        }
        case 'i32': dv.setInt32(o, a as number, true); break;
        case 'f32': dv.setFloat32(o, a as number, true); break;
        case 'f64': dv.setFloat64(o, a as number, true); break;
        case 'iter': this.block.set(a as Uint8Array, o); break;
      }
    }
    check(this.cu.cuLaunchKernel(this.fn, grid, gridY, gridZ, threads, 1, 1, smem, this.stream(), this.table, null), `cuLaunchKernel(${this.name})`);
  }

  private regs = -1;
  /** Registers per thread the cubin gives this kernel (CU_FUNC_ATTRIBUTE_NUM_REGS), read once. */
  numRegs(attrib: number): number {
    if (this.regs < 0) {
      const v = [0];
      check(this.cu.cuFuncGetAttribute(v, attrib, this.fn), `cuFuncGetAttribute(${this.name}, NUM_REGS)`);
      this.regs = v[0]!;
    }
    return this.regs;
  }

  private maxDynamicSmem = -1;
  /** Raises the kernel's dynamic shared-memory limit; a call with the limit already set makes no driver call (launchers call it per launch). */
  setMaxDynamicSmem(bytes: number, attrib: number): void {
    if (bytes === this.maxDynamicSmem) return;
    check(this.cu.cuFuncSetAttribute(this.fn, attrib, bytes), `cuFuncSetAttribute(${this.name}, MAX_DYNAMIC_SHARED_SIZE_BYTES)`);
    this.maxDynamicSmem = bytes;
  }
}

/** Loads cubins from the kernel directory on demand and binds kernels by name. */
export class ModuleCache {
  private readonly modules = new Map<string, Handle>();
  private readonly kernels = new Map<string, Kernel>();

  constructor(private readonly cu: Driver, private readonly stream: () => Handle, private readonly dir = kernelDir()) {}

  /** Load a cubin image under `key` (e.g. a run-time compiled module); get(key, …) then binds its kernels. */
  loadImage(key: string, image: Uint8Array, source = key): Handle {
    let m = this.modules.get(key);
    if (m !== undefined) return m;
    const out: Handle[] = [null];
    check(this.cu.cuModuleLoadData(out, image), `cuModuleLoadData(${source})`);
    m = out[0]!;
    this.modules.set(key, m);
    return m;
  }

  module(file: string): Handle {
    const m = this.modules.get(file);
    if (m !== undefined) return m;
    const path = join(this.dir, `${file}.cubin`);
    if (!existsSync(path)) {
      throw new KernelNotFoundError(`CUDA kernels not built: ${path} is missing (run \`npm run kernels\`, or set DSV32_KERNEL_DIR to the folder holding the .cubin files)`);
    }
    return this.loadImage(file, readFileSync(path), path);
  }

  /** The kernel `name` of kernels/`file`.cu, bound to the parameter kinds `sig`. */
  get(file: string, name: string, sig: readonly ParamKind[]): Kernel {
    const key = `${file}:${name}:${sig.join(',')}`; // another signature for the same kernel is bound (and checked) anew
    let k = this.kernels.get(key);
    if (k) return k;
    const mod = this.module(file);
    const fn: Handle[] = [null];
    const rc = this.cu.cuModuleGetFunction(fn, mod, name);
    // 500 is CUDA_ERROR_NOT_FOUND; anything else is the driver's own failure (with lazy loading the function is
    // loaded here, so a full device gives CUDA_ERROR_OUT_OF_MEMORY, which is no reason to rebuild kernels)
    if (rc === 500) throw new KernelNotFoundError(`kernel ${name} not found in ${file}.cubin (CUresult ${rc}); rebuild kernels`);
    check(rc, `cuModuleGetFunction(${file}.cubin, ${name})`);
    k = new Kernel(this.cu, name, fn[0]!, sig, this.stream);
    this.kernels.set(key, k);
    return k;
  }

  unloadAll(): void {
    for (const m of this.modules.values()) this.cu.cuModuleUnload(m);
    this.modules.clear();
    this.kernels.clear();
  }
}
