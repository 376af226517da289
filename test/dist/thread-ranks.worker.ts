// One rank of the ThreadCollective tests (test/dist/thread-collective.test.ts): runs the case named in
// its data and posts what it saw (values as numbers, errors as their messages).
import { parentPort } from 'node:worker_threads';
import '../../src/backend/cpu/index.js';
import { joinThreadRank } from '../../src/dist/thread-collective.js';
import { fromArray, type Tensor } from '../../src/tensor/tensor.js';
import { caught, input, type RankCase } from './thread-ranks.js';

const { collective: c, data } = joinThreadRank<RankCase>();
const N = c.worldSize;
const vals = (t: Tensor): number[] => Array.from(t.toFloat64());

const out: Record<string, unknown> = {};
if (data.kind === 'ops') {
  const dt = data.dtype!;
  const n = 2 * N * 3; // [2N, 3]: divisible into N row blocks
  const x = (): Tensor => fromArray(input(c.rank, n, dt), [2 * N, 3], { dtype: dt });
  for (const op of dt === 'i32' ? (['sum', 'max'] as const) : (['sum', 'avg', 'max'] as const)) {
    const t = x();
    c.allReduce(t, op);
    out[`allReduce.${op}`] = vals(t);
    out[`reduceScatter.${op}`] = vals(c.reduceScatter(x(), op));
  }
  const g = c.allGather(x());
  out.allGather = { shape: g.shape, v: vals(g) };
  out.allToAll = vals(c.allToAll(x()));
  const b = x();
  c.broadcast(b, N - 1);
  out.broadcast = vals(b);
  out.dtype = g.dtype;
} else if (data.kind === 'mismatch') {
  out.error = caught(() => c.allReduce(fromArray(new Float32Array(4 + c.rank), [4 + c.rank])));
} else if (data.kind === 'indivisible') {
  out.error = caught(() => c.reduceScatter(fromArray(new Float32Array(N + 1), [N + 1])));
} else if (data.kind === 'die') {
  if (c.rank === 1) throw new Error('rank 1 fell over');
  const t0 = Date.now();
  out.error = caught(() => c.allReduce(fromArray([1, 2], [2])));
  out.ms = Date.now() - t0;
} else {
  // stall: rank 1 blocks longer than the group's timeout before its first call
  if (c.rank === 1) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1500);
  out.error = caught(() => c.allReduce(fromArray([1, 2], [2])));
}
parentPort!.postMessage(out);
