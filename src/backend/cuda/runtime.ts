// The CUDA runtime of one device: driver init, primary context, one non-blocking stream, the caching
// allocator, kernel modules, the pinned staging ring for host↔device copies, events for timing, and
// CUDA-graph capture/replay/update. All calls happen on the JS main thread (the current context is
// per thread, so koffi's async calls are not used).
import { DsvError } from '../../errors.js';
import { CachingAllocator } from './allocator.js';
import * as C from './cuda-consts.js';
import { CudaIndexError, CudaUnavailableError } from './errors.js';
import { check, loadDriver, type Driver, type Handle } from './ffi.js';
import { ModuleCache } from './launch.js';
import { hostAlloc, StagingRing, type PinnedBuffer } from './pinned.js';

export interface DeviceInfo {
  ordinal: number;
  name: string;
  computeCapability: [number, number];
  multiprocessors: number;
  totalMemory: number;
  l2Bytes: number;
  maxSharedPerBlockOptin: number;
  driverVersion: number;
  driverPath: string;
}

export class CudaEvent {
  constructor(private readonly rt: CudaRuntime, readonly handle: Handle) {}
  record(): this {
    check(this.rt.cu.cuEventRecord(this.handle, this.rt.stream), 'cuEventRecord');
    return this;
  }
  synchronize(): void {
    check(this.rt.cu.cuEventSynchronize(this.handle), 'cuEventSynchronize');
  }
  done(): boolean {
    const rc = this.rt.cu.cuEventQuery(this.handle);
    if (rc === C.CUDA_ERROR_NOT_READY) return false;
    check(rc, 'cuEventQuery');
    return true;
  }
  /** Milliseconds from `start` to this event (both recorded and complete). */
  since(start: CudaEvent): number {
    const ms = [0];
    check(this.rt.cu.cuEventElapsedTime(ms, start.handle, this.handle), 'cuEventElapsedTime');
    return ms[0]!;
  }
  destroy(): void {
    check(this.rt.cu.cuEventDestroy(this.handle), 'cuEventDestroy');
  }
}

/**
 * An instantiated CUDA graph: the kernels and copies enqueued by one call of a function, replayed with
 * a single launch. Device memory the graph touches stays reserved for it (storages are referenced,
 * blocks freed during capture are parked) until destroy().
 */
export class CudaGraph {
  private destroyed = false;
  constructor(private readonly rt: CudaRuntime, private graph: Handle, private exec: Handle, private parked: { ptr: number; size: number }[], private keep: Set<unknown>, readonly nodes: number) {}

  replay(): void {
    if (this.destroyed) throw new DsvError('CudaGraph.replay: the graph was destroyed');
    check(this.rt.cu.cuGraphLaunch(this.exec, this.rt.stream), 'cuGraphLaunch');
  }

  /**
   * Re-capture `fn` and update the executable graph in place (cuGraphExecUpdate: same topology, new
   * kernel arguments, e.g. other buffers or sizes); falls back to a fresh instantiation when the
   * topology changed. Returns true when the in-place update succeeded.
   */
  update(fn: () => void): boolean {
    const { graph, parked, keep } = this.rt.captureRaw(fn);
    const info = Buffer.alloc(C.SIZEOF_CUgraphExecUpdateResultInfo);
    const rc = this.rt.cu.cuGraphExecUpdate(this.exec, graph, info);
    let inPlace = rc === 0 && info.readInt32LE(0) === C.CU_GRAPH_EXEC_UPDATE_SUCCESS;
    if (!inPlace) {
      check(this.rt.cu.cuGraphExecDestroy(this.exec), 'cuGraphExecDestroy');
      const ex: Handle[] = [null];
      check(this.rt.cu.cuGraphInstantiateWithFlags(ex, graph, 0), 'cuGraphInstantiateWithFlags');
      this.exec = ex[0]!;
    }
    check(this.rt.cu.cuGraphDestroy(this.graph), 'cuGraphDestroy');
    this.graph = graph;
    this.rt.sync();
    this.rt.allocator.recycle(this.parked);
    this.parked = parked;
    this.keep = keep;
    return inPlace;
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.rt.sync();
    check(this.rt.cu.cuGraphExecDestroy(this.exec), 'cuGraphExecDestroy');
    check(this.rt.cu.cuGraphDestroy(this.graph), 'cuGraphDestroy');
    this.rt.allocator.recycle(this.parked);
    this.keep.clear();
  }
}

export class CudaRuntime {
  readonly cu: Driver;
  readonly device: number;
  readonly ctx: Handle;
  readonly stream: Handle;
  readonly allocator: CachingAllocator;
  readonly modules: ModuleCache;
  readonly info: DeviceInfo;
  /** Device int written by kernels that meet a bad index (see raise_err in common.cuh). */
  readonly errWord: number;
  /** Pinned slots every copy of pageable JS memory goes through (allocated on first use). */
  readonly staging: StagingRing;
  /** Called when a device allocation fails, after the stream drained and before the cache is emptied
   *  and the allocation retried: the backend returns the blocks of unreachable tensors here. */
  onMemoryPressure: (() => void) | null = null;
  /** Storages referenced by kernels while a graph is being captured. */
  capturing: Set<unknown> | null = null;

  constructor(ordinal = 0) {
    this.cu = loadDriver();
    const cu = this.cu;
    check(cu.cuInit(0), 'cuInit');
    const count = [0];
    check(cu.cuDeviceGetCount(count), 'cuDeviceGetCount');
    if (count[0]! <= ordinal) throw new CudaUnavailableError(`CUDA device ${ordinal} not present: the driver at ${cu.path} reports ${count[0]} device(s)`);
    const dev = [0];
    check(cu.cuDeviceGet(dev, ordinal), 'cuDeviceGet');
    this.device = dev[0]!;
    const ctx: Handle[] = [null];
    check(cu.cuDevicePrimaryCtxRetain(ctx, this.device), 'cuDevicePrimaryCtxRetain');
    this.ctx = ctx[0]!;
    check(cu.cuCtxSetCurrent(this.ctx), 'cuCtxSetCurrent');
    const s: Handle[] = [null];
    check(cu.cuStreamCreate(s, C.CU_STREAM_NON_BLOCKING), 'cuStreamCreate');
    this.stream = s[0]!;
    this.info = this.queryInfo(ordinal);
    this.allocator = new CachingAllocator(cu, () => {
      this.sync();
      this.onMemoryPressure?.();
    });
    this.modules = new ModuleCache(cu, () => this.stream);
    this.staging = new StagingRing(cu, () => this.stream);
    const [ew] = this.allocator.malloc(24);
    this.errWord = ew;
    check(cu.cuMemsetD8Async(ew, 0, 24, this.stream), 'cuMemsetD8Async');
  }

  private queryInfo(ordinal: number): DeviceInfo {
    const cu = this.cu;
    const attr = (a: number): number => {
      const v = [0];
      check(cu.cuDeviceGetAttribute(v, a, this.device), `cuDeviceGetAttribute(${a})`);
      return v[0]!;
    };
    const name = Buffer.alloc(256);
    check(cu.cuDeviceGetName(name, 256, this.device), 'cuDeviceGetName');
    const mem = [0];
    check(cu.cuDeviceTotalMem(mem, this.device), 'cuDeviceTotalMem');
    const ver = [0];
    check(cu.cuDriverGetVersion(ver), 'cuDriverGetVersion');
    return {
      ordinal,
      name: name.toString('utf8', 0, Math.max(0, name.indexOf(0))),
      computeCapability: [attr(C.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR), attr(C.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)],
      multiprocessors: attr(C.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT),
      totalMemory: Number(mem[0]),
      l2Bytes: attr(C.CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE),
      maxSharedPerBlockOptin: attr(C.CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN),
      driverVersion: ver[0]!,
      driverPath: cu.path,
    };
  }

  /** Page-locked host memory of `bytes` (free it with .free()). */
  hostAlloc(bytes: number): PinnedBuffer {
    return hostAlloc(this.cu, bytes);
  }

  /** Wait for the stream. */
  sync(): void {
    check(this.cu.cuStreamSynchronize(this.stream), 'cuStreamSynchronize');
  }

  /** Synchronise, then throw CudaIndexError if an index kernel recorded a bad index (op names the caller). */
  checkErrors(op = 'gather/scatterAdd/indexSelect/indexAdd'): void {
    const rec = new BigInt64Array(3);
    check(this.cu.cuMemcpyDtoHAsync(rec, this.errWord, 24, this.stream), 'cuMemcpyDtoHAsync(error record)');
    this.sync();
    if ((rec[0]! & 0xffffffffn) !== 0n) {
      check(this.cu.cuMemsetD8Async(this.errWord, 0, 4, this.stream), 'cuMemsetD8Async');
      this.sync();
      throw new CudaIndexError(`${op}: index ${rec[1]} out of range for a dim of size ${rec[2]}`);
    }
  }

  event(timing = true): CudaEvent {
    const e: Handle[] = [null];
    check(this.cu.cuEventCreate(e, timing ? C.CU_EVENT_DEFAULT : C.CU_EVENT_DISABLE_TIMING), 'cuEventCreate');
    return new CudaEvent(this, e[0]!);
  }

  /** Capture the work `fn` enqueues into a graph (not instantiated). */
  captureRaw(fn: () => void): { graph: Handle; parked: { ptr: number; size: number }[]; keep: Set<unknown> } {
    if (this.capturing) throw new DsvError('CUDA graph capture cannot be nested');
    this.sync();
    const keep = new Set<unknown>();
    this.capturing = keep;
    this.allocator.beginSink();
    check(this.cu.cuStreamBeginCapture(this.stream, C.CU_STREAM_CAPTURE_MODE_RELAXED), 'cuStreamBeginCapture');
    let failure: unknown = null;
    try {
      fn();
    } catch (e) {
      failure = e;
    }
    const g: Handle[] = [null];
    const rc = this.cu.cuStreamEndCapture(this.stream, g);
    this.capturing = null;
    const parked = this.allocator.endSink();
    if (failure) {
      if (g[0]) this.cu.cuGraphDestroy(g[0]);
      this.allocator.recycle(parked);
      throw failure;
    }
    check(rc, 'cuStreamEndCapture');
    return { graph: g[0]!, parked, keep };
  }

  capture(fn: () => void): CudaGraph {
    const { graph, parked, keep } = this.captureRaw(fn);
    const ex: Handle[] = [null];
    check(this.cu.cuGraphInstantiateWithFlags(ex, graph, 0), 'cuGraphInstantiateWithFlags');
    const n = [0];
    check(this.cu.cuGraphGetNodes(graph, null, n), 'cuGraphGetNodes');
    return new CudaGraph(this, graph, ex[0]!, parked, keep, Number(n[0]));
  }

  memGetInfo(): { free: number; total: number } {
    const f = [0];
    const t = [0];
    check(this.cu.cuMemGetInfo(f, t), 'cuMemGetInfo');
    return { free: Number(f[0]), total: Number(t[0]) };
  }
}
