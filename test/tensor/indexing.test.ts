// Indexing and selection: embedding, index_select/index_add, gather/scatter_add (torch semantics
// incl. an index smaller than the input), cat/split/stack, and topk/argmax with the documented tie rule.
import assert from 'node:assert/strict';
import * as T from '../../src/tensor/index.js';
import { assertClose, assertGradcheck, assertThrowsWith, ints, randn, testEachDevice, to } from './helpers.js';

testEachDevice('embedding picks rows; its weight gradient accumulates repeated ids (gradcheck)', (dev) => {
  const w = randn([5, 3], 1, dev);
  const ids = ints([4, 0, 4, 2, 1, 4], [2, 3], dev);
  const e = T.embedding(w, ids);
  assert.deepEqual(e.shape, [2, 3, 3]);
  const wv = w.toArray() as number[][];
  assert.deepEqual((e.toArray() as number[][][])[0]![2], wv[4]);
  assertGradcheck((w) => T.embedding(w, ids), [w]);
  const wl = to(w, dev, true);
  T.backward(T.sum(T.embedding(wl, ids)));
  assert.deepEqual((wl.grad!.toArray() as number[][]).map((r) => r[0]), [1, 1, 1, 0, 3]);
});

testEachDevice('indexSelect/indexAdd along inner dims; gradchecks for input and source', (dev) => {
  const x = randn([3, 4, 2], 2, dev);
  const idx = ints([3, 0, 3], undefined, dev);
  const sel = T.indexSelect(x, 1, idx);
  assert.deepEqual(sel.shape, [3, 3, 2]);
  assertClose(T.select(sel, 1, 1), T.select(x, 1, 0), 0, 0);
  assertGradcheck((x) => T.indexSelect(x, 1, idx), [x]);
  assertGradcheck((x) => T.indexSelect(T.transpose(x, 0, 2), 0, ints([1, 1], undefined, dev)), [x]);
  const src = randn([3, 3, 2], 3, dev);
  const added = T.indexAdd(x, 1, idx, src);
  // column 3 received src columns 0 and 2; the input is not modified
  assertClose(T.select(added, 1, 3), T.add(T.add(T.select(x, 1, 3), T.select(src, 1, 0)), T.select(src, 1, 2)), 1e-15);
  assertGradcheck((x, src) => T.indexAdd(x, 1, idx, src), [x, src]);
  assertThrowsWith(() => T.indexAdd(x, 1, idx, randn([3, 2, 2], 4, dev)), ['indexAdd', '[3, 2, 2]', '[3, 4, 2]']);
  assert.throws(() => T.indexSelect(x, 1, ints([4], undefined, dev)), /index 4 out of range/);
});

testEachDevice('gather/scatterAdd follow torch (index smaller than the input in other dims); gradchecks', (dev) => {
  const x = randn([3, 4], 5, dev);
  const idx = ints([3, 3, 0, 1, 2, 2], [2, 3], dev); // rows 0..1 only, 3 picks each along dim 1
  const g = T.gather(x, 1, idx);
  const xv = x.toArray() as number[][];
  assert.deepEqual(g.toArray(), [[xv[0]![3], xv[0]![3], xv[0]![0]], [xv[1]![1], xv[1]![2], xv[1]![2]]]);
  assertGradcheck((x) => T.gather(x, 1, idx), [x]);
  assertGradcheck((x) => T.gather(T.transpose(x), 0, ints([0, 2, 1, 0], [2, 2], dev)), [x]);
  const src = randn([2, 4], 6, dev); // larger than idx: only its [2, 3] corner is used
  const s = T.scatterAdd(x, 1, idx, src);
  const sv = src.toArray() as number[][];
  const sr = s.toArray() as number[][];
  assert.ok(Math.abs(sr[0]![3]! - (xv[0]![3]! + sv[0]![0]! + sv[0]![1]!)) < 1e-15);
  assert.ok(Math.abs(sr[1]![2]! - (xv[1]![2]! + sv[1]![1]! + sv[1]![2]!)) < 1e-15);
  assert.deepEqual(sr[2], xv[2]); // rows outside idx untouched
  assertGradcheck((x, src) => T.scatterAdd(x, 1, idx, src), [x, src]);
  const full = ints([0, 0, 1, 2, 2, 2, 1, 0], [2, 4], dev); // idx covering x's other dims entirely
  assertGradcheck((x, src) => T.scatterAdd(x, 0, full, src), [x, src]);
  assertThrowsWith(() => T.gather(x, 1, ints([0, 0, 0, 0, 0], [5, 1], dev)), ['gather', '[5, 1]', '[3, 4]']);
});

testEachDevice('cat/split/stack: values, promotion, errors, gradchecks', (dev) => {
  const a = randn([2, 3], 7, dev);
  const b = randn([2, 1], 8, dev);
  const c = randn([2, 2], 9, dev);
  const y = T.cat([a, b, c], 1);
  assert.deepEqual(y.shape, [2, 6]);
  assertClose(T.narrow(y, 1, 3, 1), b, 0, 0);
  assertGradcheck((a, b, c) => T.cat([T.narrow(a, 1, 1, 2), T.transpose(T.expand(b, [2, 2])), c], 0), [a, b, c]);
  const parts = T.split(y, [3, 1, 2], 1);
  assertClose(parts[2]!, c, 0, 0);
  assert.deepEqual(T.split(y, 4, 1).map((t) => t.shape[1]), [4, 2]);
  assertGradcheck((y) => T.cat(T.split(y, 2, 1).reverse(), 1), [randn([2, 5], 10, dev)]);
  const st = T.stack([a, a, a], 1);
  assert.deepEqual(st.shape, [2, 3, 3]);
  assertGradcheck((a, c) => T.stack([T.narrow(a, 1, 0, 2), c], -1), [a, c]);
  assert.equal(T.cat([T.cast(a, 'bf16'), a], 0).dtype, 'f64');
  assertThrowsWith(() => T.cat([a, randn([3, 3], 11, dev)], 1), ['cat', '[2, 3]', '[3, 3]']);
  assertThrowsWith(() => T.split(y, [3, 2], 1), ['split', '[3, 2]', '[2, 6]']);
  assertThrowsWith(() => T.stack([a, b]), ['stack', '[2, 3]', '[2, 1]']);
});

testEachDevice('topk: sorted values, i64 indices, ties by lowest index, NaN largest, axis and smallest', (dev) => {
  const x = to(T.tensor([[3, 1, 3, 2, 3, 0], [NaN, 5, 5, -1, NaN, 2]], { dtype: 'f32' }), dev);
  const { values, indices } = T.topk(x, 4);
  assert.equal(indices.dtype, 'i64');
  assert.deepEqual(indices.toArray(), [[0, 2, 4, 3], [0, 4, 1, 2]]);
  const v = values.toArray() as number[][];
  assert.deepEqual(v[0], [3, 3, 3, 2]);
  assert.ok(Number.isNaN(v[1]![0]!) && Number.isNaN(v[1]![1]!) && v[1]![2] === 5);
  const lo = T.topk(x, 3, { largest: false });
  assert.deepEqual(lo.indices.toArray(), [[5, 1, 3], [3, 5, 1]]);
  // along dim 0 of the transpose: same answer, transposed
  const t = T.topk(T.transpose(x), 4, { axis: 0 });
  assert.deepEqual(t.indices.shape, [4, 2]);
  assert.deepEqual(T.transpose(t.indices).toArray(), indices.toArray());
  assert.deepEqual(T.argmax(x, 1).toArray(), [0, 0]);
  assert.deepEqual(T.argmax(to(T.tensor([[1, 7], [7, 2]]), dev)).toArray(), 1);
  assert.deepEqual(T.argmin(x, 1, true).toArray(), [[5], [3]]);
  const m = T.maxWithIndices(to(T.tensor([[1, 4, 4], [2, 0, 1]]), dev), 1);
  assert.deepEqual(m.values.toArray(), [4, 2]);
  assert.deepEqual(m.indices.toArray(), [1, 0]);
  assert.throws(() => T.topk(x, 7), /topk: k = 7 must be an integer in \[0, 6\]/);
});

testEachDevice('gradcheck: topk values and maxWithIndices (gradient to the selected entries only)', (dev) => {
  const x = randn([3, 5], 12, dev);
  assertGradcheck((x) => T.topk(x, 2).values, [x]);
  assertGradcheck((x) => T.topk(x, 2, { axis: 0, largest: false }).values, [x]);
  assertGradcheck((x) => T.maxWithIndices(x, 1).values, [x]);
  assertGradcheck((x) => T.minWithIndices(x, 0, true).values, [x]);
  const tie = to(T.tensor([[2, 2, 1]], { dtype: 'f64' }), dev, true);
  T.backward(T.sum(T.maxWithIndices(tie, 1).values));
  assert.deepEqual(tie.grad!.toArray(), [[1, 0, 0]]);
});
