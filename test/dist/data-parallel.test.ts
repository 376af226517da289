// The bucketed gradient averaging of data-parallel training (src/dist/data-parallel.ts) seen through a
// collective that records its calls: buckets in reverse registration order within the size cap, each
// launched during the backward as soon as its parameters are final but never out of bucket order, a
// parameter without a gradient zero in its bucket and null after, and nothing at all at world size 1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import '../../src/backend/cpu/index.js';
import { CheckedCollective, type ReduceKind, SingleProcessCollective } from '../../src/dist/collective.js';
import { averageScalars, GradAverager } from '../../src/dist/data-parallel.js';
import { backwardAsync } from '../../src/tensor/autograd.js';
import * as T from '../../src/tensor/index.js';

/** Rank 0 of 2 whose peer holds exactly what it holds: every reduction returns x; calls are recorded. */
class Mirror extends CheckedCollective {
  calls: { op: ReduceKind; numel: number; dtype: string; at: number; values: number[] }[] = [];
  clock = 0;
  constructor() {
    super(0, 2);
  }
  allReduce(x: T.Tensor, op: ReduceKind = 'sum'): void {
    this.flat(x, 'allReduce');
    this.reducible(x, 'allReduce', op);
    this.calls.push({ op, numel: x.numel, dtype: x.dtype, at: this.clock, values: Array.from(x.toFloat64()) });
  }
  allGather(): T.Tensor {
    throw new Error('not used');
  }
  reduceScatter(): T.Tensor {
    throw new Error('not used');
  }
  allToAll(): T.Tensor {
    throw new Error('not used');
  }
  broadcast(): void {}
  close(): void {}
}

/** 4 layers h ← tanh(W_i·h) (W_i [8, 8], 64 elements = 256 bytes in f32), an unused [8] and a frozen [8]. */
function net() {
  const rng = new T.Rng(2);
  const p = (shape: number[]) => T.fromArray(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.uniform() - 0.5), shape, { requiresGrad: true });
  const ws = [p([8, 8]), p([8, 8]), p([8, 8]), p([8, 8])];
  const unused = p([8]);
  const x = T.fromArray(Float32Array.from({ length: 16 }, (_, i) => i / 16 - 0.5), [8, 2]);
  const loss = (): T.Tensor => {
    let h = x;
    for (const w of ws) h = T.tanh(T.matmul(w, h));
    return T.sum(h);
  };
  return { ws, unused, loss };
}

test('buckets: reverse registration order, at most bucketMb each (one parameter over the cap alone), launched in order during the backward', async () => {
  const { ws, unused, loss } = net();
  const params = [...ws, unused];
  const c = new Mirror();
  // 512 bytes: two 256-byte matrices per bucket; in reverse order: [unused + W3], [W2 + W1], [W0]
  const avg = new GradAverager(c, params, 512 / 2 ** 20);
  assert.deepEqual(avg.bucketNumels, [8 + 64, 128, 64]);
  // a 128-byte cap is below one matrix: each gets a bucket of its own
  assert.deepEqual(new GradAverager(c, params, 128 / 2 ** 20).bucketNumels, [8, 64, 64, 64, 64]);
  const l = loss();
  let nodes = 0;
  await backwardAsync(l, () => (c.clock = ++nodes, false), async () => {}, undefined, { onLeafGrad: avg.ready });
  const during = c.calls.length;
  avg.finish();
  // the unused parameter holds up the first bucket until finish(); the later buckets wait behind it
  assert.equal(during, 0);
  assert.deepEqual(c.calls.map((k) => [k.op, k.numel, k.dtype]), [['avg', 72, 'f32'], ['avg', 128, 'f32'], ['avg', 64, 'f32'], ['max', 5, 'i32']]);
  assert.deepEqual(c.calls[3]!.values, [1, 1, 1, 1, 0], 'which parameters had a gradient here');
  assert.equal(unused.grad, null, 'no rank had a gradient for it: it stays without one, as on one rank');
  assert.deepEqual(c.calls[0]!.values.slice(0, 8), new Array(8).fill(0), 'a zero in its bucket meanwhile');

  // without the unused parameter every bucket launches inside the backward, the last layer's first
  const c2 = new Mirror();
  const fresh = net();
  const avg2 = new GradAverager(c2, fresh.ws, 512 / 2 ** 20);
  assert.deepEqual(avg2.bucketNumels, [128, 128]);
  nodes = 0;
  const l2 = fresh.loss();
  let total = 0;
  await backwardAsync(l2, () => (c2.clock = ++nodes, total = nodes, false), async () => {}, undefined, { onLeafGrad: avg2.ready });
  assert.equal(c2.calls.length, 2, 'both buckets were all-reduced before the backward returned');
  assert.ok(c2.calls[0]!.at < c2.calls[1]!.at && c2.calls[1]!.at < total, `launched at nodes ${c2.calls.map((k) => k.at)} of ${total}`);
  avg2.finish();
  // the gradients are views of the (mirrored) buckets with the backward's values
  const ref = net();
  T.backward(ref.loss());
  fresh.ws.forEach((w, i) => assert.deepEqual(Array.from(w.grad!.toFloat32()), Array.from(ref.ws[i]!.grad!.toFloat32())));
  assert.equal(fresh.ws[3]!.grad!.storage, fresh.ws[2]!.grad!.storage, 'W3 and W2 share the first bucket');
  assert.throws(() => avg2.finish(), /GradAverager\.finish: already called for this backward/);
});

test('world size 1: no bucket, no call, the gradients are the backward\'s own tensors; bad bucket sizes are named', () => {
  const { ws, loss } = net();
  const c = new SingleProcessCollective();
  const avg = new GradAverager(c, ws);
  assert.deepEqual(avg.bucketNumels, []);
  T.backward(loss(), undefined, { onLeafGrad: avg.ready });
  const before = ws.map((w) => w.grad);
  avg.finish();
  ws.forEach((w, i) => assert.equal(w.grad, before[i]));
  assert.deepEqual(averageScalars(c, [1.5, -2], 'cpu'), [1.5, -2]);
  assert.throws(() => new GradAverager(c, ws, 0), /bucketMb must be a positive number, got 0/);
  assert.throws(() => new GradAverager(c, ws, Number.NaN), /bucketMb must be a positive number, got NaN/);
});
