// Gradchecks (f64 central differences vs autograd) for the core ops: elementwise (with broadcasting),
// reductions (incl. amax ties), matmul/bmm with transposed and broadcast operands, softmax and
// log-softmax, and the view ops. Each runs on every available device.
import assert from 'node:assert/strict';
import * as T from '../../src/tensor/index.js';
import { assertClose, assertGradcheck, assertThrowsWith, randn, testEachDevice, to } from './helpers.js';

/** Positive f64 leaf: |randn| + 0.5 (keeps log/sqrt/pow/div away from their singularities). */
function pos(shape: number[], seed: number, dev: string): T.Tensor {
  return to(T.adds(T.abs(randn(shape, seed)), 0.5), dev);
}

testEachDevice('gradcheck: add/sub/mul/div with broadcasting', (dev) => {
  const a = randn([2, 3, 4], 1, dev);
  const b = randn([3, 1], 2, dev);
  const c = pos([4], 3, dev);
  assertGradcheck((a, b) => T.add(a, b), [a, b]);
  assertGradcheck((a, b) => T.sub(b, a), [a, b]);
  assertGradcheck((a, b) => T.mul(a, b), [a, b]);
  assertGradcheck((a, c) => T.div(a, c), [a, c]);
  assertGradcheck((c) => T.div(2, c), [c]);
  assertGradcheck((a) => T.sub(3, T.muls(T.adds(a, 1), 2)), [a]);
});

testEachDevice('gradcheck: exp/log/sqrt/rsqrt/pow (scalar and tensor exponents)', (dev) => {
  const x = randn([3, 4], 4, dev);
  const p = pos([3, 4], 5, dev);
  const e = randn([4], 6, dev);
  assertGradcheck((x) => T.exp(x), [x]);
  assertGradcheck((p) => T.log(p), [p]);
  assertGradcheck((p) => T.sqrt(p), [p]);
  assertGradcheck((p) => T.rsqrt(p), [p]);
  assertGradcheck((p) => T.pow(p, 2.5), [p]);
  assertGradcheck((p) => T.pow(p, -1.5), [p]);
  assertGradcheck((p, e) => T.pow(p, e), [p, e]);
  assertGradcheck((x) => T.square(x), [x]);
  assertGradcheck((x) => T.tanh(x), [x]);
  assertGradcheck((x) => T.abs(x), [x]);
  assertGradcheck((x) => T.neg(T.rsubs(T.muls(T.adds(x, 0.5), -3), 2)), [x]);
});

testEachDevice('cast: values round to the target dtype and the gradient is cast back', (dev) => {
  const x = to(T.tensor([1 + 2 ** -30, -2.5], { dtype: 'f64' }), dev, true);
  const y = T.cast(x, 'f32');
  assert.deepEqual(y.toArray(), [1, -2.5]);
  T.backward(T.sum(T.muls(y, 3)));
  assert.equal(x.grad!.dtype, 'f64');
  assert.deepEqual(x.grad!.toArray(), [3, 3]);
});

testEachDevice('gradcheck: silu/sigmoid/relu, maximum/minimum, where/maskedFill, clamp', (dev) => {
  const x = randn([5, 3], 7, dev);
  const y = randn([3], 8, dev);
  assertGradcheck((x) => T.silu(x), [x]);
  assertGradcheck((x) => T.sigmoid(x), [x]);
  assertGradcheck((x) => T.relu(x), [x]);
  assertGradcheck((x, y) => T.maximum(x, y), [x, y]);
  assertGradcheck((x, y) => T.minimum(x, y), [x, y]);
  const cond = T.gt(randn([5, 1], 9, dev), 0);
  assertGradcheck((x, y) => T.where(cond, x, y), [x, y]);
  assertGradcheck((x) => T.where(cond, x, 2), [x]);
  assertGradcheck((x) => T.maskedFill(x, cond, -5), [x]);
  assertGradcheck((x) => T.clamp(x, -0.5, 0.5), [x]);
});

testEachDevice('maximum sends the gradient of a tie to the first operand', (dev) => {
  const a = to(T.tensor([1, 2, 3], { dtype: 'f64' }), dev, true);
  const b = to(T.tensor([1, 5, 0], { dtype: 'f64' }), dev, true);
  T.backward(T.sum(T.maximum(a, b)));
  assert.deepEqual(a.grad!.toArray(), [1, 0, 1]);
  assert.deepEqual(b.grad!.toArray(), [0, 1, 0]);
});

testEachDevice('gradcheck: sum/mean over dims (keepdim or not), amax/amin', (dev) => {
  const x = randn([2, 3, 4], 10, dev);
  assertGradcheck((x) => T.sum(x), [x]);
  assertGradcheck((x) => T.sum(x, [0, 2]), [x]);
  assertGradcheck((x) => T.mean(x, -1, true), [x]);
  assertGradcheck((x) => T.mean(x, [1]), [x]);
  assertGradcheck((x) => T.amax(x, 1), [x]);
  assertGradcheck((x) => T.amin(x, [0, 2], true), [x]);
});

testEachDevice('amax ties split the gradient evenly (two-way tie passes gradcheck, three-way checked by value)', (dev) => {
  // central differences at a 2-way tie give ½ to each tied element, exactly the even split
  const x2 = to(T.tensor([[1, 3, 3, 0], [2, -1, 0, 1]], { dtype: 'f64' }), dev);
  assertGradcheck((x) => T.amax(x, -1), [x2]);
  const x3 = to(T.tensor([[2, 2, 1, 2]], { dtype: 'f64' }), dev, true);
  T.backward(T.sum(T.amax(x3, -1)));
  assertClose(x3.grad!, [1 / 3, 1 / 3, 0, 1 / 3], 1e-15);
});

testEachDevice('gradcheck: matmul/bmm with transposed operands, broadcast batch, vectors, linear', (dev) => {
  const a = randn([2, 3, 4], 11, dev);
  const b = randn([4, 5], 12, dev); // broadcast over a's batch
  const bt = randn([1, 5, 4], 13, dev); // used transposed, batch dim 1 broadcast
  const v = randn([4], 14, dev);
  assertGradcheck((a, b) => T.matmul(a, b), [a, b]);
  assertGradcheck((a, bt) => T.matmul(a, T.transpose(bt)), [a, bt]);
  assertGradcheck((a, b) => T.matmul(T.transpose(T.matmul(a, b)), a), [a, b]);
  assertGradcheck((a, v) => T.matmul(a, v), [a, v]);
  assertGradcheck((v, b) => T.matmul(v, b), [v, b]);
  const w = randn([5, 4], 15, dev);
  const bias = randn([5], 16, dev);
  assertGradcheck((a, w, bias) => T.linear(a, w, bias), [a, w, bias]);
});

// The backward of softmax is one backend pass (Backend.softmaxBackward: CPU reference, kernels/softmax.cu
// softmax_bwd). Against dx = y ⊙ (g − Σ g⊙y) in f64 from the same y and g, per element within the dtype's
// rounding of |y|·(|g| + Σ|g⊙y|) (the bound of the two products and the difference), at widths that take
// the scalar and vector kernels, one element, and rows wider than a block's threads.
testEachDevice('softmax backward in one pass equals y ⊙ (g − Σ g⊙y) in f64 (f32, bf16, f64; awkward widths)', (dev) => {
  const eps: Record<string, number> = { f32: 2 ** -22, bf16: 2 ** -7, f64: 2 ** -50 };
  let seed = 40;
  for (const dtype of ['f32', 'bf16', 'f64'] as const) {
    for (const D of [1, 3, 8, 64, 1000, 4097]) {
      const rows = 5;
      const x = T.cast(randn([rows, D], seed++, dev), dtype);
      x.requiresGrad = true;
      const y = T.softmax(x);
      const g = T.cast(randn([rows, D], seed++, dev), dtype);
      T.backward(y, g);
      const yv = y.toFloat64();
      const gv = g.toFloat64();
      const dx = x.grad!.toFloat64();
      assert.equal(x.grad!.dtype, dtype);
      for (let r = 0; r < rows; r++) {
        let d = 0;
        let m = 0;
        for (let j = 0; j < D; j++) {
          d += yv[r * D + j]! * gv[r * D + j]!;
          m += Math.abs(yv[r * D + j]! * gv[r * D + j]!);
        }
        for (let j = 0; j < D; j++) {
          const i = r * D + j;
          const want = yv[i]! * (gv[i]! - d);
          const bound = 4 * eps[dtype]! * Math.abs(yv[i]!) * (Math.abs(gv[i]!) + m) + 1e-300;
          assert.ok(Math.abs(dx[i]! - want) <= bound, `${dtype} D ${D} row ${r} col ${j}: got ${dx[i]}, want ${want} (bound ${bound})`);
        }
      }
    }
  }
});

// maskedSoftmax (dense training attention's scale + causal mask + softmax + lse in one backend pass) against
// the f64 formula, a mask repeating over leading dims with a fully masked row (NaN, lse −∞), and its
// gradient by central differences; a mask that does not match x's trailing dims is refused.
testEachDevice('maskedSoftmax: softmax(scale·x, −∞ where masked) and its lse; gradcheck; bad masks named', (dev) => {
  const [B, R, D] = [2, 3, 5];
  const scale = 0.7;
  const m = [1, 1, 0, 1, 0, /**/ 0, 0, 0, 0, 0, /**/ 1, 1, 1, 1, 1];
  const mask = to(T.fromArray(Uint8Array.from(m), [R, D], { dtype: 'bool' }), dev);
  for (const dtype of ['f64', 'f32', 'bf16'] as const) {
    const x = T.cast(randn([B, R, D], 70, dev), dtype);
    const { p, lse } = T.maskedSoftmax(x, scale, mask);
    assert.equal(lse.dtype, dtype === 'f64' ? 'f64' : 'f32');
    assert.deepEqual(lse.shape, [B, R]);
    const xv = x.toFloat64();
    const pv = p.toFloat64();
    const lv = lse.toFloat64();
    const tol = dtype === 'f64' ? 1e-12 : dtype === 'f32' ? 1e-6 : 1e-2;
    for (let b = 0; b < B; b++) for (let r = 0; r < R; r++) {
      const row = b * R + r;
      const z = Array.from({ length: D }, (_, j) => (m[r * D + j] ? scale * xv[row * D + j]! : -Infinity));
      const mx = Math.max(...z);
      const sum = z.reduce((a, v) => a + Math.exp(v - mx), 0);
      if (mx === -Infinity) {
        assert.equal(lv[row], -Infinity, `${dtype} fully masked row: lse`);
        for (let j = 0; j < D; j++) assert.ok(Number.isNaN(pv[row * D + j]!), `${dtype} fully masked row: NaN`);
        continue;
      }
      assert.ok(Math.abs(lv[row]! - (mx + Math.log(sum))) <= tol * 4, `${dtype} lse row ${row}: ${lv[row]} vs ${mx + Math.log(sum)}`);
      for (let j = 0; j < D; j++) assert.ok(Math.abs(pv[row * D + j]! - Math.exp(z[j]! - mx) / sum) <= tol, `${dtype} p[${row}, ${j}]`);
    }
  }
  // gradient (rows with something unmasked; f64)
  const keep = to(T.fromArray(Uint8Array.from([1, 0, 1, 1, 0, 1, 1, 1, 0, 1]), [2, D], { dtype: 'bool' }), dev);
  assertGradcheck((x) => T.maskedSoftmax(x, scale, keep).p, [randn([3, 2, D], 71, dev, 'f64', true)]);
  assertThrowsWith(() => T.maskedSoftmax(randn([2, 4], 72, dev), 1, to(T.fromArray(Uint8Array.from([1, 1, 1]), [3], { dtype: 'bool' }), dev)), ['maskedSoftmax', 'mask', '[3]']);
});

testEachDevice('gradcheck: softmax/logSoftmax over the last and an inner dim', (dev) => {
  const x = randn([3, 4, 5], 17, dev);
  assertGradcheck((x) => T.softmax(x), [x]);
  assertGradcheck((x) => T.logSoftmax(x), [x]);
  assertGradcheck((x) => T.softmax(x, 1), [x]);
  assertGradcheck((x) => T.logSoftmax(x, 0), [x]);
});

testEachDevice('gradcheck: views reshape/permute/transpose/narrow/select/expand/unsqueeze/squeeze/flatten/contiguous', (dev) => {
  const x = randn([2, 3, 4], 18, dev);
  const w = randn([2, 3, 4], 19, dev); // weights so every output element matters differently
  assertGradcheck((x) => T.reshape(x, [4, 6]), [x]);
  assertGradcheck((x) => T.reshape(T.permute(x, [2, 0, 1]), [4, -1]), [x]); // reshape of a non-contiguous view copies
  assertGradcheck((x) => T.mul(T.permute(T.permute(x, [1, 2, 0]), [2, 0, 1]), w), [x]);
  assertGradcheck((x) => T.transpose(x, 0, 2), [x]);
  assertGradcheck((x) => T.narrow(x, 2, 1, 2), [x]);
  assertGradcheck((x) => T.select(x, 1, -1), [x]);
  assertGradcheck((x) => T.expand(T.unsqueeze(T.narrow(x, 0, 1, 1), 0), [3, 1, 3, 4]), [x]);
  assertGradcheck((x) => T.squeeze(T.unsqueeze(x, 1), 1), [x]);
  assertGradcheck((x) => T.flatten(T.transpose(x, 0, 1), 1), [x]);
  assertGradcheck((x) => T.contiguous(T.transpose(x, 1, 2)), [x]);
});

testEachDevice('gradients accumulate over several uses and several backward calls; noGrad and detach cut the graph', (dev) => {
  const x = to(T.tensor([1, 2], { dtype: 'f64' }), dev, true);
  T.backward(T.sum(T.add(T.mul(x, x), x))); // d/dx (x² + x) = 2x + 1
  assert.deepEqual(x.grad!.toArray(), [3, 5]);
  T.backward(T.sum(x));
  assert.deepEqual(x.grad!.toArray(), [4, 6]);
  const y = T.noGrad(() => T.mul(x, 2));
  assert.equal(y.requiresGrad, false);
  assert.equal(T.detach(x).requiresGrad, false);
});

testEachDevice('swiglu is silu(g)·u op by op, bit for bit (f32, bf16, strided halves); gradcheck; bad input', (dev) => {
  for (const dt of ['f32', 'bf16'] as const) {
    const both = T.cast(T.muls(randn([7, 2 * 40], 31, dev, 'f32'), 4), dt);
    const g = T.narrow(both, 1, 0, 40);
    const u = T.narrow(both, 1, 40, 40);
    const want = T.cast(T.mul(T.silu(T.cast(g, 'f32')), T.cast(u, 'f32')), dt);
    const got = T.swiglu(g, u);
    assert.equal(got.dtype, dt);
    assert.deepEqual(Array.from(got.toFloat32()), Array.from(want.toFloat32()), `${dt}`);
  }
  const a = randn([3, 5], 32, dev);
  const b = randn([3, 5], 33, dev);
  assertGradcheck((x, y) => T.swiglu(x, y), [a, b]);
  assertThrowsWith(() => T.swiglu(a, randn([3, 4], 34, dev)), ['swiglu', '[3, 5]', '[3, 4]']);
});
