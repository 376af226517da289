// Device memory of dead tensors comes back through the CUDA backend's FinalizationRegistry and, at
// once, through CudaBackend.reclaimDead (a full collection, then every block whose storage's WeakRef is
// empty). Three things hold it back in a long synchronous loop, each measured on an H100 (2026-12-05):
// V8 collects only under JS-heap pressure, which GPU tensors (small JS objects over large device
// blocks) never create; finalizer callbacks run as separate tasks, never inside the running one; and a
// WeakRef keeps its target alive until the job that made it ends, so nothing made inside a job can be
// reclaimed during it. 8 steps of a 13 M-parameter model in one loop held 84 GB; with a release between
// steps, dsv32-mini at B 32 × S 512 held 44 GB after each step but its backward (one job) ran out of
// memory at 83 GB. Hence `releaseDeadTensors` between phases and steps, and `memoryPauses` for
// backwardAsync (which also frees each node's saved tensors as it passes: autograd.ts).
import v8 from 'node:v8';
import vm from 'node:vm';
import { getBackend } from './backend.js';
import { backwardAsync, type BackwardOptions } from './autograd.js';
import type { Tensor } from './tensor.js';

let gcFn: (() => void) | null | undefined;

function fullGc(): (() => void) | null {
  if (gcFn === undefined) {
    const g = (globalThis as { gc?: () => void }).gc;
    if (typeof g === 'function') gcFn = g;
    else {
      try {
        v8.setFlagsFromString('--expose-gc');
        gcFn = vm.runInNewContext('gc') as () => void;
      } catch {
        gcFn = null;
      }
    }
  }
  return gcFn;
}

/** A full, synchronous V8 collection (where the runtime allows exposing it; otherwise nothing). */
export function collectGarbageNow(): void {
  fullGc()?.();
}

/**
 * Give back at once the memory of tensors the caller made, that nothing else holds and nothing will read
 * again: an op's intermediates whose backward does not need them (a training forward is one synchronous
 * job, so the collector cannot return them before the backward starts: dense training attention's f32
 * [B, S·H, S] blocks of the mid config, 2 GiB each, held the step at 73–76 GiB of an 80 GB H100). The
 * autograd tape may still name them (as graph nodes, never reading their data). A view shares its base's
 * storage: freeing one frees both. A backend without explicit release (the CPU) leaves them to the collector.
 */
export function freeNow(...ts: Tensor[]): void {
  for (const t of ts) (t.storage as { dispose?: () => void }).dispose?.();
}

/**
 * Return the device memory of every tensor the program no longer reaches (await it between steps).
 * First one macrotask: a WeakRef made during a job keeps its target alive until the job ends, and the
 * CUDA backend holds one per storage, so garbage made in the running job cannot be collected yet.
 * Then the backend's reclaim: a full collection and the release of every block whose tensor is gone.
 */
export async function releaseDeadTensors(device: string): Promise<void> {
  if (device === 'cpu') return;
  await new Promise<void>((r) => setImmediate(r));
  const be = getBackend(device);
  if (be.reclaimDead) be.reclaimDead();
  else collectGarbageNow();
}

/**
 * For a long-lived loop of steps (the engine): a function to await between steps that releases the dead
 * tensors once the device has made `every` allocations since the last release. Without it nothing of a
 * step comes back until the device is full, so every allocation of every later step is a driver call:
 * measured on an H100 (bench/alloc-release.ts, the mid config's 4 096-token prefill), ~103 ms a forward
 * with its 686 allocations from cuMemAlloc, 80 ms from the cache after a release that took 7–14 ms (a
 * full collection). A step that allocates little (a replayed CUDA graph) leaves it due only every so
 * many steps. A no-op on the CPU and on devices without allocation counters.
 */
export function releaseEvery(device: string, every = 128): () => Promise<void> {
  const be = device === 'cpu' ? null : getBackend(device);
  const count = (): number | undefined => {
    const s = be?.memoryStats?.();
    return s?.driverAllocs === undefined || s.cacheHits === undefined ? undefined : s.driverAllocs + s.cacheHits;
  };
  let base = count();
  if (base === undefined) return async () => {};
  return async () => {
    if (count()! - base! < every) return;
    await releaseDeadTensors(device);
    base = count();
  };
}

/**
 * When backwardAsync pauses on a device: each time the memory handed out has grown by `headroom` of the
 * card since the last release. A backward makes gradients and temporaries as it goes and lets go of the
 * activations it has passed; without a pause none of that comes back before the pass ends, and a step
 * of dsv32-mini at B 32 × S 512 ran an 80 GB H100 out of memory (2026-12-05, docs/gpu.md). The headroom
 * bounds the pauses (each a full collection, tens of ms) to about one per `headroom` of garbage (0.2:
 * 16 GB on an H100, two or three pauses in a dsv32-mini step).
 */
export function memoryPauses(device: string, headroom = 0.2): { pause: () => boolean; release: () => Promise<void> } {
  const be = device === 'cpu' ? null : getBackend(device);
  const total = be?.memoryStats?.().total;
  if (!be || !total) return { pause: () => false, release: async () => {} };
  let base = be.memoryStats!().allocated;
  return {
    pause: () => be.memoryStats!().allocated > base + headroom * total,
    release: async () => {
      await releaseDeadTensors(device);
      base = be.memoryStats!().allocated;
    },
  };
}

/** backward() from `loss` on `device`, giving device memory back as it goes (backwardAsync paused by memoryPauses). */
export async function backwardReleasing(loss: Tensor, device: string, opts: BackwardOptions = {}): Promise<void> {
  const { pause, release } = memoryPauses(device);
  await backwardAsync(loss, pause, release, undefined, opts);
}
