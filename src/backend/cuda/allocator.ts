// Caching device allocator. cuMemAlloc is slow (it can synchronise the device) and cuMemFree always
// does, so freed blocks go to per-size free lists and are handed out again. All work runs on one
// stream, so a block freed after its last use was enqueued may be reused at once: later work on the
// same stream is ordered after that use.
// Sizes are rounded (512 B up to 1 MiB, then 2 MiB granules) to make reuse likely; statistics report
// bytes handed out (allocated, peak) and bytes held from the driver (reserved).
import { CudaError } from './errors.js';
import { check, type Driver } from './ffi.js';
import { CUDA_ERROR_OUT_OF_MEMORY } from './cuda-consts.js';

export interface MemoryStats {
  /** bytes in blocks currently handed out (rounded sizes) */
  allocated: number;
  /** bytes obtained from cuMemAlloc and not yet returned to the driver */
  reserved: number;
  /** high-water mark of `allocated` since creation or resetPeak() */
  peak: number;
  /** cuMemAlloc calls made */
  driverAllocs: number;
  /** allocations served from the cache */
  cacheHits: number;
}

export function roundSize(bytes: number): number {
  if (bytes <= 0) return 0;
  if (bytes <= 1 << 20) return Math.ceil(bytes / 512) * 512;
  return Math.ceil(bytes / (2 << 20)) * (2 << 20);
}

export class CachingAllocator {
  private readonly free = new Map<number, number[]>();
  private allocated = 0;
  private reserved = 0;
  private peak = 0;
  private driverAllocs = 0;
  private cacheHits = 0;
  /** While a graph is being captured, freed blocks are parked here (the graph may still use them). */
  private sink: { ptr: number; size: number }[] | null = null;

  constructor(private readonly cu: Driver, private readonly beforeRetry: () => void) {}

  /** A device block of at least `bytes`; returns [ptr, roundedSize]. */
  malloc(bytes: number): [number, number] {
    const size = roundSize(bytes);
    if (size === 0) return [0, 0];
    let ptr = this.take(size);
    if (ptr !== undefined) this.cacheHits++;
    else ptr = this.driverAlloc(size);
    this.allocated += size;
    if (this.allocated > this.peak) this.peak = this.allocated;
    return [ptr, size];
  }

  /** A cached block of exactly `size`, if one is free. */
  private take(size: number): number | undefined {
    return this.free.get(size)?.pop();
  }

  /**
   * A block from the driver. When the card is full: wait for the stream and collect dead tensors (their
   * blocks come back to the cache, which may now hold one of this size), then give cached blocks back to
   * the driver, largest first, only until the request fits, and only then all of them. Emptying the whole
   * cache on the first failure made every later allocation a driver call: the mid config's dense training
   * step (73 GiB peak on an 80 GB H100) made 506 cuMemAlloc calls a step, each of them a wait for the
   * device (2026-12-07, docs/benchmarks.md).
   */
  private driverAlloc(size: number): number {
    const out = [0];
    let rc = this.cu.cuMemAlloc(out, size);
    if (rc === CUDA_ERROR_OUT_OF_MEMORY) {
      this.beforeRetry();
      const hit = this.take(size);
      if (hit !== undefined) {
        this.cacheHits++;
        return hit;
      }
      const sizes = [...this.free.keys()].sort((a, b) => b - a);
      let freed = 0;
      for (const s of sizes) {
        const list = this.free.get(s)!;
        while (list.length && rc === CUDA_ERROR_OUT_OF_MEMORY) {
          check(this.cu.cuMemFree(list.pop()!), 'cuMemFree');
          this.reserved -= s;
          freed += s;
          // fragmentation can keep a request from fitting in as many bytes as it needs: retry as we go
          if (freed >= size) rc = this.cu.cuMemAlloc(out, size);
        }
        if (!list.length) this.free.delete(s);
        if (rc !== CUDA_ERROR_OUT_OF_MEMORY) break;
      }
      if (rc === CUDA_ERROR_OUT_OF_MEMORY) rc = this.cu.cuMemAlloc(out, size);
    }
    if (rc !== 0) {
      try {
        check(rc, `cuMemAlloc(${size} bytes)`);
      } catch (e) {
        if (e instanceof CudaError) {
          throw new CudaError(e.call, e.code, e.codeName, `${e.detail}; allocator holds ${this.reserved} bytes reserved, ${this.allocated} allocated`);
        }
        throw e;
      }
    }
    this.driverAllocs++;
    this.reserved += size;
    return Number(out[0]);
  }

  release(ptr: number, size: number): void {
    if (size === 0) return;
    this.allocated -= size;
    if (this.sink) {
      this.sink.push({ ptr, size });
      return;
    }
    let list = this.free.get(size);
    if (!list) this.free.set(size, (list = []));
    list.push(ptr);
  }

  /** Park freed blocks instead of recycling them until endSink() (used around graph capture). */
  beginSink(): void {
    this.sink = [];
  }
  endSink(): { ptr: number; size: number }[] {
    const s = this.sink ?? [];
    this.sink = null;
    return s;
  }
  /** Blocks parked for a graph go back to the cache once the graph is destroyed. */
  recycle(blocks: { ptr: number; size: number }[]): void {
    for (const b of blocks) {
      let list = this.free.get(b.size);
      if (!list) this.free.set(b.size, (list = []));
      list.push(b.ptr);
    }
  }

  /** Return every cached (free) block to the driver. The caller must have synchronised the stream. */
  emptyCache(): void {
    for (const [size, list] of this.free) {
      for (const p of list) {
        check(this.cu.cuMemFree(p), 'cuMemFree');
        this.reserved -= size;
      }
    }
    this.free.clear();
  }

  resetPeak(): void {
    this.peak = this.allocated;
  }

  stats(): MemoryStats {
    return { allocated: this.allocated, reserved: this.reserved, peak: this.peak, driverAllocs: this.driverAllocs, cacheHits: this.cacheHits };
  }
}
