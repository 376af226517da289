// The collective operations data- and expert-parallel code is written against, with two implementations:
// NcclCollective (one process per GPU, NCCL on the CUDA backend's stream) and SingleProcessCollective
// (world size 1: what CI and single-GPU runs use). Both check their arguments identically, so code that
// passes on the stand-in does not first meet a shape error on eight GPUs.
//
// Collectives sit outside autograd: they act on gradients and activations the caller owns. Every tensor
// must be contiguous, because NCCL sees a flat run of `count` elements from one address.
import type { CudaBackend } from '../backend/cuda/cuda-backend.js';
import { CudaStorage } from '../backend/cuda/cuda-backend.js';
import type { Backend } from '../tensor/backend.js';
import { isFloat } from '../tensor/dtype.js';
import { ITEMSIZE } from '../tensor/dtype.js';
import { Tensor, fmtShape } from '../tensor/tensor.js';
import { CollectiveError } from './errors.js';
import { checkNccl, loadNccl, NCCL_DTYPE_OF, NCCL_OP, NCCL_UNIQUE_ID_BYTES, type Nccl } from './nccl-ffi.js';
import { distEnv, publishUniqueId, waitForUniqueId } from './rendezvous.js';

export type ReduceKind = 'sum' | 'avg' | 'max';

export interface Collective {
  readonly rank: number;
  readonly worldSize: number;
  /** x ← reduce over ranks of x, in place. avg needs a float dtype. */
  allReduce(x: Tensor, op?: ReduceKind): void;
  /** [worldSize·d0, ...]: every rank's x, in rank order along the first dim. */
  allGather(x: Tensor): Tensor;
  /** x [worldSize·k, ...] reduced over ranks; this rank keeps rows [rank·k, (rank+1)·k). */
  reduceScatter(x: Tensor, op?: ReduceKind): Tensor;
  /** x [worldSize·k, ...]: rows [j·k, (j+1)·k) go to rank j; the result's rows [i·k, ...) came from rank i. */
  allToAll(x: Tensor): Tensor;
  /** x ← root's x, in place. */
  broadcast(x: Tensor, root?: number): void;
  /** Releases the communicator; later calls fail. Idempotent. */
  close(): void;
}

/** Argument checks shared by every implementation (one set of rules, one set of messages). */
export abstract class CheckedCollective implements Collective {
  protected closed = false;
  constructor(readonly rank: number, readonly worldSize: number) {}

  protected flat(x: Tensor, op: string): void {
    if (this.closed) throw new CollectiveError(`${op}: the collective was closed`);
    if (!(x instanceof Tensor)) throw new CollectiveError(`${op}: expected a Tensor`);
    if (!x.isContiguous()) {
      throw new CollectiveError(`${op}: the tensor must be contiguous (shape ${fmtShape(x.shape)}, strides [${x.strides.join(', ')}]); pass x.contiguous()`);
    }
  }
  protected reducible(x: Tensor, op: string, kind: ReduceKind): void {
    if (kind !== 'sum' && kind !== 'avg' && kind !== 'max') throw new CollectiveError(`${op}: op must be 'sum', 'avg' or 'max', got '${String(kind)}'`);
    if (x.dtype === 'bool') throw new CollectiveError(`${op}: cannot reduce a bool tensor; cast it to an integer dtype first`);
    if (kind === 'avg' && !isFloat(x.dtype)) throw new CollectiveError(`${op}: 'avg' needs a float dtype, got ${x.dtype} (integer averages truncate; use 'sum')`);
  }
  protected rowsSplit(x: Tensor, op: string): number {
    if (x.shape.length === 0) throw new CollectiveError(`${op}: a 0-d tensor has no first dim to split over ${this.worldSize} ranks`);
    if (x.shape[0]! % this.worldSize !== 0) {
      throw new CollectiveError(`${op}: the first dim of shape ${fmtShape(x.shape)} is not divisible by the world size ${this.worldSize}`);
    }
    return x.shape[0]! / this.worldSize;
  }
  protected gatherable(x: Tensor, op: string): void {
    if (x.shape.length === 0) throw new CollectiveError(`${op}: a 0-d tensor has no first dim to gather along; reshape it to [1]`);
  }
  protected rootOk(root: number, op: string): void {
    if (!Number.isInteger(root) || root < 0 || root >= this.worldSize) throw new CollectiveError(`${op}: root must be a rank in [0, ${this.worldSize}), got ${root}`);
  }
  protected static like(x: Tensor, shape: number[]): Tensor {
    return new Tensor(x.backend.alloc(x.dtype, shape.reduce((a, b) => a * b, 1)), shape);
  }

  abstract allReduce(x: Tensor, op?: ReduceKind): void;
  abstract allGather(x: Tensor): Tensor;
  abstract reduceScatter(x: Tensor, op?: ReduceKind): Tensor;
  abstract allToAll(x: Tensor): Tensor;
  abstract broadcast(x: Tensor, root?: number): void;
  abstract close(): void;
}

/** World size 1 on any backend: every collective is the identity (a copy where a new tensor is returned). */
export class SingleProcessCollective extends CheckedCollective {
  constructor() {
    super(0, 1);
  }
  allReduce(x: Tensor, op: ReduceKind = 'sum'): void {
    this.flat(x, 'allReduce');
    this.reducible(x, 'allReduce', op);
  }
  allGather(x: Tensor): Tensor {
    this.flat(x, 'allGather');
    this.gatherable(x, 'allGather');
    return copyOf(x);
  }
  reduceScatter(x: Tensor, op: ReduceKind = 'sum'): Tensor {
    this.flat(x, 'reduceScatter');
    this.reducible(x, 'reduceScatter', op);
    this.rowsSplit(x, 'reduceScatter');
    return copyOf(x);
  }
  allToAll(x: Tensor): Tensor {
    this.flat(x, 'allToAll');
    this.rowsSplit(x, 'allToAll');
    return copyOf(x);
  }
  broadcast(x: Tensor, root = 0): void {
    this.flat(x, 'broadcast');
    this.rootOk(root, 'broadcast');
  }
  close(): void {
    this.closed = true;
  }
}

function copyOf(x: Tensor): Tensor {
  const out = new Tensor(x.backend.alloc(x.dtype, x.numel), [...x.shape]);
  x.backend.copy(out, x);
  return out;
}

const OP_CODE: Record<ReduceKind, number> = { sum: NCCL_OP.ncclSum, avg: NCCL_OP.ncclAvg, max: NCCL_OP.ncclMax };

/**
 * One rank of an NCCL communicator, enqueuing on the CUDA backend's stream: collectives are ordered
 * with the kernels around them and return before they complete, like any other op on that stream.
 */
export class NcclCollective extends CheckedCollective {
  private readonly nccl: Nccl;
  private comm: unknown;

  private constructor(readonly backend: CudaBackend, rank: number, worldSize: number, nccl: Nccl, comm: unknown) {
    super(rank, worldSize);
    this.nccl = nccl;
    this.comm = comm;
  }

  /** Rank 0's side of the rendezvous: a fresh unique id, to be handed to every rank. */
  static uniqueId(): Uint8Array {
    const nccl = loadNccl();
    const id = new Uint8Array(NCCL_UNIQUE_ID_BYTES);
    checkNccl(nccl.ncclGetUniqueId(id), 'ncclGetUniqueId');
    return id;
  }

  /**
   * Joins the communicator `id` as `rank` of `worldSize` on the backend's device. Blocks until every
   * rank has joined (that is NCCL's contract). NVLink multicast (NVLS) is switched off here as well as
   * by the launcher, since NCCL reads NCCL_NVLS_ENABLE when the communicator is created.
   */
  static init(backend: CudaBackend, rank: number, worldSize: number, id: Uint8Array): NcclCollective {
    if (!Number.isInteger(worldSize) || worldSize < 1) throw new CollectiveError(`worldSize must be a positive integer, got ${worldSize}`);
    if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize) throw new CollectiveError(`rank must be in [0, ${worldSize}), got ${rank}`);
    if (id.length !== NCCL_UNIQUE_ID_BYTES) throw new CollectiveError(`the NCCL unique id must be ${NCCL_UNIQUE_ID_BYTES} bytes, got ${id.length}`);
    process.env.NCCL_NVLS_ENABLE = '0';
    const nccl = loadNccl();
    const comm: unknown[] = [null];
    checkNccl(nccl.ncclCommInitRank(comm, worldSize, { internal: id }, rank), `ncclCommInitRank(rank ${rank} of ${worldSize})`);
    const c = new NcclCollective(backend, rank, worldSize, nccl, comm[0]);
    // what NCCL believes must be what we asked for; a mismatch would misplace every reduce-scatter row
    const n = [0];
    const r = [0];
    checkNccl(nccl.ncclCommCount(c.comm, n), 'ncclCommCount', c.comm);
    checkNccl(nccl.ncclCommUserRank(c.comm, r), 'ncclCommUserRank', c.comm);
    if (n[0] !== worldSize || r[0] !== rank) {
      c.close();
      throw new CollectiveError(`NCCL communicator reports rank ${r[0]} of ${n[0]}, expected rank ${rank} of ${worldSize}`);
    }
    return c;
  }

  private addr(x: Tensor, op: string): number {
    const s = x.storage;
    if (!(s instanceof CudaStorage) || s.backend !== this.backend) {
      throw new CollectiveError(`${op}: the tensor lives on '${x.device}', the communicator on this process's CUDA device`);
    }
    return this.backend.address(x);
  }
  private get stream(): unknown {
    return this.backend.rt.stream;
  }
  private check(rc: number, call: string): void {
    checkNccl(rc, call, this.comm);
  }

  allReduce(x: Tensor, op: ReduceKind = 'sum'): void {
    this.flat(x, 'allReduce');
    this.reducible(x, 'allReduce', op);
    const p = this.addr(x, 'allReduce');
    this.check(this.nccl.ncclAllReduce(p, p, x.numel, NCCL_DTYPE_OF[x.dtype], OP_CODE[op], this.comm, this.stream), `ncclAllReduce(${x.numel} ${x.dtype}, ${op})`);
  }
  allGather(x: Tensor): Tensor {
    this.flat(x, 'allGather');
    this.gatherable(x, 'allGather');
    const src = this.addr(x, 'allGather');
    const out = CheckedCollective.like(x, [x.shape[0]! * this.worldSize, ...x.shape.slice(1)]);
    this.check(this.nccl.ncclAllGather(src, this.addr(out, 'allGather'), x.numel, NCCL_DTYPE_OF[x.dtype], this.comm, this.stream),
      `ncclAllGather(${x.numel} ${x.dtype})`);
    return out;
  }
  reduceScatter(x: Tensor, op: ReduceKind = 'sum'): Tensor {
    this.flat(x, 'reduceScatter');
    this.reducible(x, 'reduceScatter', op);
    const rows = this.rowsSplit(x, 'reduceScatter');
    const src = this.addr(x, 'reduceScatter');
    const out = CheckedCollective.like(x, [rows, ...x.shape.slice(1)]);
    this.check(this.nccl.ncclReduceScatter(src, this.addr(out, 'reduceScatter'), out.numel, NCCL_DTYPE_OF[x.dtype], OP_CODE[op], this.comm, this.stream),
      `ncclReduceScatter(${out.numel} ${x.dtype} per rank, ${op})`);
    return out;
  }
  /** NCCL has no all-to-all primitive: one send and one receive per peer, fused by a group. */
  allToAll(x: Tensor): Tensor {
    this.flat(x, 'allToAll');
    this.rowsSplit(x, 'allToAll');
    const src = this.addr(x, 'allToAll');
    const out = CheckedCollective.like(x, [...x.shape]);
    const dst = this.addr(out, 'allToAll');
    const count = x.numel / this.worldSize;
    const bytes = count * ITEMSIZE[x.dtype];
    const dt = NCCL_DTYPE_OF[x.dtype];
    this.check(this.nccl.ncclGroupStart(), 'ncclGroupStart');
    let failed = true;
    try {
      for (let p = 0; p < this.worldSize; p++) {
        this.check(this.nccl.ncclSend(src + p * bytes, count, dt, p, this.comm, this.stream), `ncclSend(${count} ${x.dtype} to rank ${p})`);
        this.check(this.nccl.ncclRecv(dst + p * bytes, count, dt, p, this.comm, this.stream), `ncclRecv(${count} ${x.dtype} from rank ${p})`);
      }
      failed = false;
    } finally {
      // the group must be closed even when a call failed, or NCCL stays in group mode for this thread
      const rc = this.nccl.ncclGroupEnd();
      if (!failed) this.check(rc, `ncclGroupEnd(allToAll of ${x.numel} ${x.dtype})`);
    }
    return out;
  }
  broadcast(x: Tensor, root = 0): void {
    this.flat(x, 'broadcast');
    this.rootOk(root, 'broadcast');
    const p = this.addr(x, 'broadcast');
    this.check(this.nccl.ncclBroadcast(p, p, x.numel, NCCL_DTYPE_OF[x.dtype], root, this.comm, this.stream), `ncclBroadcast(${x.numel} ${x.dtype} from rank ${root})`);
  }
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.check(this.nccl.ncclCommDestroy(this.comm), 'ncclCommDestroy');
    this.comm = null;
  }
}

/**
 * The collective of this process as `dsv32 launch` set it up (src/dist/rendezvous.ts): world size 1 (or
 * no launcher) gives the single-process stand-in on any backend; otherwise rank 0 creates the NCCL
 * unique id and publishes it, the others wait for it, and all join on the CUDA backend.
 */
export async function openCollective(backend: Backend | null, env: NodeJS.ProcessEnv = process.env): Promise<Collective> {
  const d = distEnv(env);
  if (d.worldSize === 1) return new SingleProcessCollective();
  if (!backend || backend.name !== 'cuda') throw new CollectiveError(`DSV32_WORLD_SIZE is ${d.worldSize}: multi-process runs need the cuda backend, got '${backend?.name ?? 'none'}'`);
  let id: Uint8Array;
  if (d.rank === 0) {
    id = NcclCollective.uniqueId();
    publishUniqueId(d.idFile!, id);
  } else {
    id = await waitForUniqueId(d.idFile!, { env });
  }
  return NcclCollective.init(backend as CudaBackend, d.rank, d.worldSize, id);
}
