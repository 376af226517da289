// The CPU ops whose row loops split across the worker pool (src/backend/cpu/pool.ts parallelRows) give the
// serial loop's bits whatever the split: each op at awkward shapes (rows not a multiple of the ranges,
// odd widths, ragged quantisation blocks, uneven causal ranges), once forced serial and once forced into
// ranges over three threads (so both workers and this thread take ranges).
import { test } from 'node:test';
import assert from 'node:assert/strict';
process.env.DSV32_CPU_THREADS = '3'; // before the pool starts: two workers
const T = await import('../../src/tensor/index.js');
const { rowTune, warmCpuPool } = await import('../../src/backend/cpu/pool.js');

const bytes = (t: InstanceType<typeof T.Tensor>): Buffer => {
  const h = t.toHost();
  return Buffer.from(h.buffer, h.byteOffset, h.byteLength);
};

/** f's tensors computed serial and split; every one must match bit for bit. */
function sameSplit(what: string, f: () => Array<InstanceType<typeof T.Tensor>>): void {
  const keep = { ...rowTune };
  try {
    rowTune.force = false;
    rowTune.minNs = Infinity;
    const serial = f().map(bytes);
    rowTune.force = true;
    const split = f().map(bytes);
    assert.equal(split.length, serial.length);
    for (let i = 0; i < serial.length; i++) assert.ok(split[i]!.equals(serial[i]!), `${what}: output ${i} differs when split across threads`);
  } finally {
    Object.assign(rowTune, keep);
  }
}

test('parallel rows: the worker threads start', () => {
  assert.ok(warmCpuPool(20_000), 'the CPU pool\'s workers did not start within 20 s');
});

test('parallel rows: SwiGLU (f32 and f64), RMSNorm, add + RMSNorm and the Hadamard transform give the serial bits', () => {
  const rng = new T.Rng(3);
  for (const dtype of ['f32', 'f64'] as const) {
    const g = T.randn([13, 37], rng, { dtype, std: 3 });
    const u = T.randn([13, 37], rng, { dtype });
    sameSplit(`swiglu ${dtype}`, () => [T.swiglu(g, u)]);
    const x = T.randn([13, 33], rng, { dtype });
    const w = T.randn([33], rng, { dtype });
    sameSplit(`rmsNorm ${dtype} D 33`, () => [T.rmsNorm(x, w, 1e-6)]);
  }
  const x = T.randn([11, 40], rng);
  const r = T.randn([11, 40], rng);
  const w = T.randn([40], rng);
  sameSplit('addRmsNorm', () => {
    const o = T.addRmsNorm(x, r, w, 1e-6, 'f32');
    return [o.out, o.residual];
  });
  const h = T.randn([9, 64], rng);
  sameSplit('hadamard n 64', () => [T.hadamard(h, 0.125)]);
  sameSplit('hadamard n 128', () => [T.hadamard(T.randn([5, 128], new T.Rng(9)), 1)]);
});

test('parallel rows: FP8 activation quantisation, ragged last block and ue8m0 scales, gives the serial bits', () => {
  const rng = new T.Rng(4);
  const x = T.randn([7, 300], rng, { std: 5 });
  sameSplit('actQuant block 128', () => {
    const { q, s } = T.actQuant(x, 128);
    return [q, s];
  });
  sameSplit('actQuant ue8m0', () => {
    const { q, s } = T.actQuant(x, 128, { ue8m0: true });
    return [q, s];
  });
});

test('parallel rows: indexer logits (uneven ranges, empty rows) and the DSA top-k give the serial bits', () => {
  const rng = new T.Rng(5);
  const [Tq, H, D, Tk] = [13, 3, 32, 29];
  const q = T.actQuant(T.randn([Tq, H, D], rng), D).q;
  const kq = T.actQuant(T.randn([Tk, D], rng), D);
  const kScale = T.reshape(kq.s, [Tk]);
  const w = T.randn([Tq, H], rng);
  const start = T.fromArray(Int32Array.from({ length: Tq }, (_, i) => (i * 5) % 7), [Tq], { dtype: 'i32' });
  const end = T.fromArray(Int32Array.from({ length: Tq }, (_, i) => (i === 4 ? 0 : Math.min(Tk, 9 + 2 * i))), [Tq], { dtype: 'i32' });
  let logits: InstanceType<typeof T.Tensor> | undefined;
  sameSplit('indexerLogits', () => [(logits = T.indexerLogits(q, kq.q, kScale, w, start, end))]);
  sameSplit('topkSelect k 8 with ranges', () => [T.topkSelect(logits!, 8, { start, end })]);
  sameSplit('topkSelect k 40 (more than any row holds)', () => [T.topkSelect(logits!, 40)]);
});

test('parallel rows: a bad DSV32_CPU_THREADS is reported by the first small op, naming the variable', () => {
  const keep = process.env.DSV32_CPU_THREADS;
  const g = T.randn([2, 3], new T.Rng(6));
  try {
    for (const bad of ['two', '0', '1.5']) {
      process.env.DSV32_CPU_THREADS = bad;
      assert.throws(() => T.swiglu(g, g), (e: unknown) => e instanceof Error && e.message === `DSV32_CPU_THREADS=${bad}: expected an integer from 1 to 256`);
    }
  } finally {
    process.env.DSV32_CPU_THREADS = keep;
  }
  assert.equal(T.swiglu(g, g).shape.join(','), '2,3');
});
