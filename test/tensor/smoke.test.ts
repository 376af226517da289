import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../../src/tensor/index.js';

test('matmul, broadcasting add, softmax forward values', () => {
  const a = T.tensor([[1, 2], [3, 4]]);
  const b = T.tensor([[5, 6], [7, 8]]);
  assert.deepEqual(T.matmul(a, b).toArray(), [[19, 22], [43, 50]]);
  assert.deepEqual(T.matmul(T.transpose(a), b).toArray(), [[26, 30], [38, 44]]);
  assert.deepEqual(T.add(a, T.tensor([10, 20])).toArray(), [[11, 22], [13, 24]]);
  const s = T.softmax(T.tensor([[0, Math.log(3)]])).toArray() as number[][];
  assert.ok(Math.abs(s[0]![0]! - 0.25) < 1e-7 && Math.abs(s[0]![1]! - 0.75) < 1e-7);
});

test('gradcheck: composite expression through matmul, softmax, broadcasting', () => {
  const rng = new T.Rng(7);
  const x = T.randn([3, 4], rng, { dtype: 'f64', requiresGrad: true });
  const w = T.randn([4, 5], rng, { dtype: 'f64', requiresGrad: true });
  const b = T.randn([5], rng, { dtype: 'f64', requiresGrad: true });
  const r = T.gradcheck((x, w, b) => T.logSoftmax(T.add(T.matmul(x, w), b)), [x, w, b]);
  assert.ok(r.ok, r.detail);
});
