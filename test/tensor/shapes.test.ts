// Broadcasting, non-contiguous and stride-0 views, empty tensors, softmax numerical stability and
// masked rows, and shape errors that name the op and both shapes.
import assert from 'node:assert/strict';
import * as T from '../../src/tensor/index.js';
import { assertClose, assertGradcheck, assertThrowsWith, ints, randn, testEachDevice, to } from './helpers.js';

testEachDevice('broadcasting: values over leading and size-1 dims, 0-d tensors, gradients summed back', (dev) => {
  const a = to(T.tensor([[[1, 2, 3]], [[4, 5, 6]]]), dev); // [2, 1, 3]
  const b = to(T.tensor([[10], [20], [30], [40]]), dev); // [4, 1]
  const c = T.add(a, b);
  assert.deepEqual(c.shape, [2, 4, 3]);
  assert.deepEqual((c.toArray() as number[][][])[1]![2], [34, 35, 36]);
  assert.deepEqual(T.mul(a, to(T.scalar(2), dev)).toArray(), [[[2, 4, 6]], [[8, 10, 12]]]);
  assert.deepEqual(T.where(T.gt(b, 25), a, b).shape, [2, 4, 3]);
  assertGradcheck((x, y, z) => T.where(T.gt(y, 0), T.mul(x, y), z), [randn([2, 1, 3], 1, dev), randn([4, 1], 2, dev), randn([3], 3, dev)]);
  assertThrowsWith(() => T.add(randn([2, 3], 4, dev), randn([4], 5, dev)), ['add', '[2, 3]', '[4]']);
  assertThrowsWith(() => T.mul(randn([2, 3], 4, dev), randn([3, 3], 5, dev)), ['mul', '[2, 3]', '[3, 3]']);
});

testEachDevice('non-contiguous views: ops on transposed, narrowed and stride-0 inputs equal ops on copies', (dev) => {
  const x = randn([4, 6], 6, dev);
  const views: [string, T.Tensor][] = [
    ['transpose', T.transpose(x)],
    ['narrow', T.narrow(T.narrow(x, 1, 2, 3), 0, 1, 2)],
    ['permute+select', T.select(T.permute(T.reshape(x, [2, 2, 6]), [2, 0, 1]), 2, 1)],
    ['expand', T.expand(T.narrow(x, 0, 3, 1), [5, 6])],
  ];
  for (const [name, v] of views) {
    assert.ok(!v.isContiguous(), `${name} is a strided view`);
    const c = T.contiguous(v);
    assert.ok(c.isContiguous());
    assertClose(T.exp(v), T.exp(c), 0, 0, `${name} exp`);
    assertClose(T.softmax(v), T.softmax(c), 0, 0, `${name} softmax`);
    assertClose(T.sum(v, -1), T.sum(c, -1), 1e-15, 0, `${name} sum`);
    assertClose(T.matmul(v, T.transpose(v)), T.matmul(c, T.transpose(c)), 1e-12, 1e-12, `${name} matmul`);
    assertClose(T.add(v, T.select(v, 0, 0)), T.add(c, T.select(c, 0, 0)), 0, 0, `${name} add`);
  }
  // a view that can be reshaped without copying shares storage; one that cannot is copied
  const t = T.transpose(randn([3, 4, 5], 7, dev), 0, 1); // [4, 3, 5]
  assert.equal(T.reshape(t, [4, 15]).storage === t.storage, false);
  assert.equal(T.reshape(t, [2, 2, 3, 5]).storage, t.storage);
});

testEachDevice('empty tensors flow through elementwise, reductions, matmul, softmax, norms, indexing and backward', (dev) => {
  const e = randn([0, 3], 8, dev);
  const w = randn([3], 9, dev, 'f64', true);
  assert.deepEqual(T.add(e, w).shape, [0, 3]);
  assert.deepEqual(T.sum(e, 0).toArray(), [0, 0, 0]);
  assert.equal(T.sum(e).item(), 0);
  assert.ok(Number.isNaN(T.mean(e).item()));
  assert.deepEqual(T.matmul(randn([2, 0], 10, dev), randn([0, 3], 11, dev)).toArray(), [[0, 0, 0], [0, 0, 0]]);
  assert.deepEqual(T.matmul(e, randn([3, 5], 12, dev)).shape, [0, 5]);
  assert.deepEqual(T.softmax(e).shape, [0, 3]);
  assert.deepEqual(T.rmsNorm(e, w, 1e-6).shape, [0, 3]);
  assert.deepEqual(T.hadamard(randn([0, 4], 13, dev)).shape, [0, 4]);
  assert.deepEqual(T.topk(randn([2, 3], 14, dev), 0).values.shape, [2, 0]);
  assert.deepEqual(T.indexSelect(randn([2, 3], 15, dev), 1, ints([], undefined, dev)).shape, [2, 0]);
  assert.deepEqual(T.embedding(randn([5, 3], 16, dev), ints([], [0, 2], dev)).shape, [0, 2, 3]);
  assert.deepEqual(T.cat([e, randn([2, 3], 17, dev), e], 0).shape, [2, 3]);
  assert.deepEqual(T.split(randn([2, 3], 18, dev), [0, 3, 0], 1).map((t) => t.shape[1]), [0, 3, 0]);
  assert.equal(T.crossEntropy(randn([0, 4], 19, dev), ints([], undefined, dev), { reduction: 'sum' }).item(), 0);
  assert.deepEqual(T.actQuant(T.cast(e, 'f32')).s.shape, [0, 1]);
  T.backward(T.sum(T.mul(e, w)));
  assert.deepEqual(w.grad!.toArray(), [0, 0, 0]);
  assert.throws(() => T.amax(e, 0), /amax: cannot reduce over an empty dim/);
});

testEachDevice('softmax is stable for large inputs and gives NaN rows only when the whole row is masked', (dev) => {
  const x = to(T.tensor([[1000, 1001, 1002], [-1e4, 0, -Infinity], [-Infinity, -Infinity, -Infinity]]), dev);
  const p = T.softmax(x).toArray() as number[][];
  const ref = [Math.exp(-2), Math.exp(-1), 1].map((v, _, a) => v / (Math.exp(-2) + Math.exp(-1) + 1));
  assertClose(T.fromArray(p[0]!, [3]), ref, 1e-7, 1e-6, 'shifted row');
  assert.deepEqual(p[1], [0, 1, 0]);
  assert.ok(p[2]!.every(Number.isNaN), 'a fully masked row is NaN (0/0), as torch');
  const lp = T.logSoftmax(x).toArray() as number[][];
  assert.deepEqual(lp[1], [-1e4, 0, -Infinity]);
  assertClose(T.fromArray(lp[0]!, [3]), ref.map(Math.log), 1e-6, 1e-6, 'log row');
  const big = T.softmax(T.cast(to(T.tensor([[3e38, 3e38]]), dev), 'bf16'));
  assert.deepEqual(big.toArray(), [[0.5, 0.5]]);
});

testEachDevice('shape errors name the op and both shapes', (dev) => {
  const a = randn([2, 3], 20, dev);
  assertThrowsWith(() => T.matmul(a, randn([4, 5], 21, dev)), ['matmul', '[2, 3]', '[4, 5]']);
  assertThrowsWith(() => T.matmul(randn([2, 2, 3], 22, dev), randn([3, 3, 1], 23, dev)), ['matmul', '[2, 2, 3]', '[3, 3, 1]']);
  assertThrowsWith(() => T.linear(a, randn([4, 5], 24, dev)), ['linear', '[2, 3]', '[4, 5]']);
  assertThrowsWith(() => T.reshape(a, [4, 2]), ['reshape', '[2, 3]', '[4, 2]']);
  assertThrowsWith(() => T.expand(a, [2, 4]), ['expand', '[2, 3]', '[2, 4]']);
  assertThrowsWith(() => T.where(T.gt(randn([4], 25, dev), 0), a, 0), ['where', '[4]', '[2, 3]']);
  assertThrowsWith(() => T.layerNorm(a, randn([3], 26, dev), randn([2], 27, dev), 1e-5), ['layerNorm', '[2]', '[2, 3]']);
  assertThrowsWith(() => T.scatterAdd(a, 0, ints([0, 0, 0, 0], [1, 4], dev), a), ['scatterAdd', '[1, 4]', '[2, 3]']);
});
