// The split column reduction (kernels/reduce.cu: reduce_cols_partial + reduce_cols_finish) against the
// CPU backend at awkward shapes: chunks that do not divide R, a partial last column block, a reduced
// Iter of rank 2 whose inner dim wraps inside a chunk, bf16 and f32, NaN propagation. Both backends sum
// in f64 (only the order differs), so sums must agree within 1 ulp of the output dtype and max/min
// bit for bit. The chunk rule itself (reduceSplit) is checked without a GPU.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../../src/tensor/index.js';
import { reduceSplit } from '../../src/backend/cuda/cuda-backend.js';
import { onGpu, cuda, randn, both, assertBits } from './common.js';

/** Output bits as a signed, ordered integer (adjacent floats differ by 1); f32 and bf16 only. */
function ordered(t: T.Tensor): number[] {
  const b = T.hostBytes(t.toHost());
  const words = t.dtype === 'f32' ? new Uint32Array(b.buffer, b.byteOffset, b.length / 4) : new Uint16Array(b.buffer, b.byteOffset, b.length / 2);
  const sign = t.dtype === 'f32' ? 0x80000000 : 0x8000;
  return [...words].map((w) => (w & sign ? -(w - sign) : w));
}

/** Every element within `ulps` of the reference in the output dtype (NaN positions must agree). */
function assertUlps(got: T.Tensor, want: T.Tensor, ulps: number, what: string): void {
  const g = got.toFloat64();
  const w = want.toFloat64();
  const go = ordered(got);
  const wo = ordered(want);
  let worst = 0;
  for (let i = 0; i < g.length; i++) {
    if (Number.isNaN(w[i]!) || Number.isNaN(g[i]!)) {
      assert.ok(Number.isNaN(w[i]!) && Number.isNaN(g[i]!), `${what}: element ${i} is ${g[i]} on cuda, ${w[i]} on cpu`);
      continue;
    }
    const d = Math.abs(go[i]! - wo[i]!);
    worst = Math.max(worst, d);
    assert.ok(d <= ulps, `${what}: element ${i} is ${g[i]} on cuda, ${w[i]} on cpu (${d} ulps apart)`);
  }
}

const H100_SMS = 132;

test('reduceSplit: chunk rule (no GPU needed)', () => {
  // the RMSNorm weight gradient: 512 columns × 256 chunks of 64 rows = 4 · 132 · 256 threads, rounded
  assert.deepEqual(reduceSplit(512, 16384, H100_SMS), { chunks: 256, chunk: 64 });
  assert.equal(reduceSplit(512, 512, H100_SMS), null, 'short R keeps the single pass');
  assert.equal(reduceSplit(4 * H100_SMS * 256, 100000, H100_SMS), null, 'nout alone fills the GPU');
  for (const [nout, R] of [[257, 1000], [3, 70000], [300, 4257], [2, 1e8], [1, 513], [100000, 513], [512, 16385]]) {
    const s = reduceSplit(nout!, R!, H100_SMS);
    assert.ok(s, `${nout}×${R} splits`);
    assert.ok(s.chunk >= 64 && s.chunks <= 65535 && s.chunks > 1, `${nout}×${R}: ${JSON.stringify(s)}`);
    assert.ok(s.chunks * s.chunk >= R! && (s.chunks - 1) * s.chunk < R!, `${nout}×${R}: chunks cover R exactly once`);
  }
});

describe('split column reduction vs cpu', onGpu, () => {
  const ops = ['sum', 'max', 'min'] as const;
  const check = (x: T.Tensor, axes: number[], view: (t: T.Tensor) => T.Tensor, what: string): void => {
    const v = view(x);
    const shape = v.shape.filter((_, i) => !axes.includes(i));
    for (const op of ops) {
      const [cpuOut, gpuOut] = [T.getBackend('cpu'), T.getBackend('cuda')].map((b) => {
        const o = T.empty(shape, { dtype: x.dtype, device: b.name });
        b.fill(o, NaN);
        const src = b.name === 'cpu' ? x : T.fromBits(x.toHost(), x.dtype, x.shape, { device: 'cuda' });
        b.reduce(op, o, view(src), axes);
        return o;
      });
      if (op === 'sum') assertUlps(gpuOut!, cpuOut!, 1, `${what} ${op}`);
      else assertBits(gpuOut!, cpuOut!, `${what} ${op}`);
    }
  };

  test('axis 0 of [16384, 512], [1000, 257], [70000, 3] in f32 and bf16 take the split path and match', () => {
    const sms = cuda().rt.info.multiprocessors;
    for (const [R, n] of [[16384, 512], [1000, 257], [70000, 3]] as [number, number][]) {
      assert.ok(reduceSplit(n, R, sms), `[${R}, ${n}] should take the split path`);
      for (const d of ['f32', 'bf16'] as T.DType[]) check(randn([R, n], d), [0], (t) => t, `[${R}, ${n}] ${d} axis 0`);
    }
  });

  test('dims (0, 1) of [33, 129, 300]: contiguous (rank-1 reduced Iter) and narrowed from [33, 130, 300] (rank 2, wraps inside chunks)', () => {
    assert.ok(reduceSplit(300, 33 * 129, cuda().rt.info.multiprocessors));
    for (const d of ['f32', 'bf16'] as T.DType[]) {
      check(randn([33, 129, 300], d), [0, 1], (t) => t, `[33, 129, 300] ${d}`);
      check(randn([33, 130, 300], d), [0, 1], (t) => T.narrow(t, 1, 1, 129), `narrowed [33, 129, 300] ${d}`);
    }
  });

  test('single-pass neighbours still match: R = 512 (reduce_cols) and a transposed input', () => {
    assert.equal(reduceSplit(512, 512, cuda().rt.info.multiprocessors), null);
    check(randn([512, 512]), [0], (t) => t, '[512, 512] axis 0');
    both([randn([700, 2000])], [[[2000], 'f32']], (b, [s], [o]) => b.reduce('sum', o!, T.transpose(s!), [1]), 1e-12, 'sum over axis 1 of a transposed [2000, 700]');
  });

  test('NaN propagates through chunks and the finishing pass; other columns stay exact', () => {
    const R = 16384;
    const n = 512;
    const host = randn([R, n]).toFloat64();
    for (const [r, c] of [[5000, 7], [0, 300], [R - 1, 511], [64, 100], [63, 100]]) host[r! * n + c!] = NaN;
    for (const d of ['f32', 'bf16'] as T.DType[]) {
      const x = T.fromArray(host, [R, n], { dtype: d });
      check(x, [0], (t) => t, `NaN [${R}, ${n}] ${d}`);
      const o = T.empty([n], { dtype: d, device: 'cuda' });
      cuda().reduce('max', o, T.fromBits(x.toHost(), d, [R, n], { device: 'cuda' }), [0]);
      const got = o.toFloat64();
      for (const c of [7, 300, 511, 100]) assert.ok(Number.isNaN(got[c]!), `max column ${c} is NaN`);
      assert.ok(Number.isFinite(got[8]!), 'column 8 stays finite');
    }
  });

  test('exact sums: small integers sum exactly in f64 on both backends', () => {
    const R = 20000;
    const n = 300;
    const host = new Float64Array(R * n);
    for (let i = 0; i < host.length; i++) host[i] = ((i * 2654435761) % 7) - 3;
    const x = T.fromArray(host, [R, n], { dtype: 'f32' });
    const cpu = T.empty([n], { dtype: 'f32' });
    T.getBackend('cpu').reduce('sum', cpu, x, [0]);
    const gpu = T.empty([n], { dtype: 'f32', device: 'cuda' });
    cuda().reduce('sum', gpu, T.fromBits(x.toHost(), 'f32', [R, n], { device: 'cuda' }), [0]);
    assertBits(gpu, cpu, 'integer column sums');
  });
});
