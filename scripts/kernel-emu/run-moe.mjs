// Runs kernels/moe.cu on the CPU, one host thread per CUDA thread, and compares it with the CPU reference ops
// (src/tensor/ops/moe.ts): routing (ties, groups with and without bias, forced routes and their errors),
// dispatch, grouped GEMM (empty segments, rows outside every segment, f32/bf16, FP8 weights), its backward
// (dx, dW) and combine (bit for bit).
// For a machine without a GPU: it checks the kernels' own logic (indexing, tile walk, barriers, shuffles,
// __match_any_sync, the error record) before the GPU run. It is no substitute for that run: g++ compiles the
// kernels (no GPU memory model, no real warp scheduling), through textual edits of the __shared__ declarations.
//   npm run build && node scripts/kernel-emu/run-moe.mjs
// Needs g++ with C++20 (std::barrier). Exit code 1 when a case differs. Shared parts: emu-runner.mjs.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { build, emulate, errRecord, headerEdit, mulberry32, normals as normalsOf, readI32, readValues, reporter, same, setup, worstRel, writeData } from './emu-runner.mjs';

const { T, dir } = await setup('moe');
const emu = build(dir, {
  cu: 'moe.cu',
  driver: 'moe-emu.cpp',
  flags: ['-O2', '-ffp-contract=off'],
  edits: [
    headerEdit('segments.cuh'),
    ['extern __shared__ float route_smem[];', 'float* route_smem = (float*)g_smem;'],
    ['extern __shared__ int cnt[];', 'int* cnt = (int*)g_smem;'],
    ['__shared__ float As', 'static float As'], // also As8 (the FP8 kernel)
    ['__shared__ float Bs', 'static float Bs'],
    ['__shared__ int seg_s', 'static int seg_s'],
    ['__shared__ int seg8_s', 'static int seg8_s'],
    ['__shared__ float Gs', 'static float Gs'],
    ['__shared__ float Xs', 'static float Xs'],
    // the tensor-core grouped GEMM (mma.sync, ldmatrix: shim/mma-emu.h; cp.async completes at once there)
    ['extern __shared__ __align__(16) uint16_t tsm[];', 'uint16_t* tsm = (uint16_t*)g_smem;'],
    ['asm volatile("cp.async.commit_group;\\n" ::);', ''],
    ['asm volatile("cp.async.wait_group %0;\\n" ::"n"(TC_ST - 2));', ''],
    ['asm volatile("cp.async.wait_group 0;\\n" ::);', ''],
  ],
});

const rnd = mulberry32(1234);
const normals = (n, s = 1) => normalsOf(n, rnd, s);
let n = 0;
const f = (name, data) => writeData(T, join(dir, `${n++}-${name}.bin`), data);
const out = (name) => join(dir, `${n++}-${name}.out`);
const run = (...args) => errRecord(emulate(emu, args));
const { check, finish } = reporter('moe');

// ---- routing ----
for (const [E, G, TG, k, bias, ties] of [[8, 4, 2, 2, true, true], [16, 4, 3, 6, true, true], [16, 8, 3, 4, false, true], [12, 1, 1, 3, true, false], [64, 8, 4, 8, true, true], [256, 8, 4, 8, true, false], [256, 8, 4, 8, true, true], [33, 1, 1, 5, false, true], [1024, 32, 5, 32, true, false]]) {
  const Tn = 9;
  const s = Float32Array.from({ length: Tn * E }, () => (ties ? Math.round(rnd() * 6) / 8 : 1 / (1 + Math.exp(-normals(1)[0]))));
  const b = bias ? Float32Array.from({ length: E }, () => (ties ? Math.round(rnd() * 2) / 8 : 0.1 * normals(1)[0])) : null;
  const want = T.moeRoute(T.fromArray(s, [Tn, E]), { bias: b ? T.fromArray(b, [E]) : null, groups: G, topkGroups: TG, k }).toHost();
  const o = out('route');
  const e = run('route', Tn, E, k, G, TG, f('s', s), b ? f('b', b) : '-', '-', o);
  check(e.code === 0 && same(readI32(o), want), `route E ${E} G ${G}/${TG} k ${k} bias ${bias} ties ${ties}`);
}
{
  const Tn = 5, E = 16, k = 4;
  const s = Float32Array.from({ length: Tn * E }, () => rnd());
  const forced = Int32Array.from([3, 1, 15, 0, 7, 6, 5, 4, 2, 9, 11, 10, 12, 13, 14, 8, 0, 15, 1, 14]);
  const want = T.moeRoute(T.fromArray(s, [Tn, E]), { groups: 4, topkGroups: 2, k, forced }).toHost();
  let o = out('route');
  let e = run('route', Tn, E, k, 4, 2, f('s', s), '-', f('forced', forced), o);
  check(e.code === 0 && same(readI32(o), want), 'route forced');
  const bad = forced.slice();
  bad[6] = 16;
  e = run('route', Tn, E, k, 4, 2, f('s', s), '-', f('forced', bad), out('route'));
  check(e.code === 1 && e.index === 16 && e.size === E, `route forced id out of range → error record ${JSON.stringify(e)}`);
  const dup = forced.slice();
  dup[9] = 2;
  e = run('route', Tn, E, k, 4, 2, f('s', s), '-', f('forced', dup), out('route'));
  check(e.code === 1 && e.index === 2, `route forced repeated id → error record ${JSON.stringify(e)}`);
}

// ---- dispatch ----
for (const [Tn, k, E] of [[1, 1, 1], [1, 8, 256], [7, 2, 8], [33, 6, 16], [300, 8, 256], [1100, 3, 5], [4000, 8, 256], [500, 4, 1000]]) {
  const ex = new Int32Array(Tn * k);
  for (let i = 0; i < ex.length; i++) ex[i] = Math.floor(rnd() ** 2 * E);
  const d = T.moeDispatch(T.fromArray(ex, [Tn, k], { dtype: 'i32' }), E);
  const [p, r, t, o] = [out('pairs'), out('rows'), out('tokens'), out('offs')];
  const e = run('dispatch', Tn, k, E, f('ex', ex), p, r, t, o);
  check(e.code === 0 && same(readI32(p), d.pairs.toHost()) && same(readI32(r), d.rows.toHost()) && same(readI32(t), d.tokens.toHost()) && same(readI32(o), d.offsets.toHost()),
    `dispatch T ${Tn} k ${k} E ${E}`);
}
{
  const ex = Int32Array.from([0, 1, 5, 2]);
  const e = run('dispatch', 2, 2, 4, f('ex', ex), out('p'), out('r'), out('t'), out('o'));
  check(e.code === 1 && e.index === 5 && e.size === 4, `dispatch bad id → error record ${JSON.stringify(e)}`);
}

// ---- grouped GEMM ----
for (const [M, K, N, offs] of [[37, 40, 24, [2, 2, 9, 9, 30, 35]], [1, 16, 8, [0, 1]], [130, 72, 136, [0, 0, 64, 65, 129, 130, 130]], [5, 3, 2, [0, 5]], [200, 33, 70, [0, 150, 200]]]) {
  const E = offs.length - 1;
  for (const [xdt, wdt] of [['f32', 'f32'], ['bf16', 'bf16'], ['bf16', 'f32'], ['f32', 'bf16']]) {
    const x = T.cast(T.fromArray(normals(M * K), [M, K]), xdt);
    const w = T.cast(T.fromArray(normals(E * N * K, K ** -0.5), [E, N, K]), wdt);
    const want = T.groupedMatmul(x, w, T.fromArray(Int32Array.from(offs), [E + 1], { dtype: 'i32' })).toFloat64();
    const o = out('gmm');
    run('gmm', xdt, wdt, M, N, K, E, f('x', T.hostBytes(x.toHost())), f('w', T.hostBytes(w.toHost())), f('off', Int32Array.from(offs)), o);
    const got = readValues(T, o, xdt, [M, N]);
    const worst = worstRel(got, want); // accumulation order differs from the CPU's GEMM
    const zeros = Array.from(got.subarray(0, offs[0] * N)).every((v) => v === 0) && Array.from(got.subarray(offs[E] * N)).every((v) => v === 0);
    check(worst < (xdt === 'f32' ? 1e-5 : 1e-2) && zeros, `gmm M ${M} K ${K} N ${N} E ${E} ${xdt}·${wdt}: worst |error| / max |y| ${worst.toExponential(2)}`);
  }
}

// ---- grouped GEMM backward: dx (the forward kernel reading W[e] transposed) and dW ----
for (const [M, K, N, offs] of [[37, 40, 24, [2, 2, 9, 9, 30, 35]], [130, 72, 136, [0, 0, 64, 65, 129, 130, 130]], [3, 5, 70, [0, 3]]]) {
  const E = offs.length - 1;
  for (const [xdt, wdt] of [['f32', 'f32'], ['bf16', 'bf16'], ['bf16', 'f32']]) {
    const x = T.cast(T.fromArray(normals(M * K), [M, K]), xdt);
    const w = T.cast(T.fromArray(normals(E * N * K, K ** -0.5), [E, N, K]), wdt);
    const g = T.cast(T.fromArray(normals(M * N), [M, N]), xdt);
    x.requiresGrad = true;
    w.requiresGrad = true;
    T.backward(T.groupedMatmul(x, w, T.fromArray(Int32Array.from(offs), [E + 1], { dtype: 'i32' })), g);
    // dx [M, K] = g [M, N] · W[e] [N, K]: the emulator's gmmdx takes W[e] as stored [N(inner), K(out)] with (sc, si) = (1, K)
    const o1 = out('dx');
    run('gmmdx', xdt, wdt, M, K, N, E, f('g', T.hostBytes(g.toHost())), f('w', T.hostBytes(w.toHost())), f('off', Int32Array.from(offs)), o1);
    const e1 = worstRel(readValues(T, o1, xdt, [M, K]), x.grad.toFloat64());
    const o2 = out('dw');
    run('gmmdw', xdt, wdt, M, N, K, E, f('g', T.hostBytes(g.toHost())), f('x', T.hostBytes(x.toHost())), f('off', Int32Array.from(offs)), o2);
    const e2 = worstRel(readValues(T, o2, wdt, [E, N, K]), w.grad.toFloat64());
    check(e1 < (xdt === 'f32' ? 1e-5 : 1e-2) && e2 < (wdt === 'f32' ? 1e-5 : 1e-2), `gmm backward M ${M} K ${K} N ${N} E ${E} ${xdt}·${wdt}: dx ${e1.toExponential(2)}, dW ${e2.toExponential(2)}`);
  }
}

// ---- the tensor-core grouped GEMMs (bf16): forward, dx (W[e] read transposed) and dW. Shapes: tiles of 128
// rows cut by segments, N and K multiples of 8 but not of 128, segments longer than a 32-row stage, empty ones,
// rows outside every segment; an expert with no rows gets dW = 0.
for (const [M, K, N, offs] of [[37, 40, 24, [2, 2, 9, 9, 30, 35]], [300, 136, 72, [0, 0, 129, 130, 290, 300]], [70, 16, 200, [5, 70]]]) {
  const E = offs.length - 1;
  const off = T.fromArray(Int32Array.from(offs), [E + 1], { dtype: 'i32' });
  const x = T.cast(T.fromArray(normals(M * K), [M, K]), 'bf16');
  const w = T.cast(T.fromArray(normals(E * N * K, K ** -0.5), [E, N, K]), 'bf16');
  const g = T.cast(T.fromArray(normals(M * N), [M, N]), 'bf16');
  const y = T.groupedMatmul(x, w, off).toFloat64();
  const o = out('gmmtc');
  run('gmmtc', 'fwd', M, N, K, E, f('x', T.hostBytes(x.toHost())), f('w', T.hostBytes(w.toHost())), f('off', Int32Array.from(offs)), o);
  const got = readValues(T, o, 'bf16', [M, N]);
  const zeros = Array.from(got.subarray(0, offs[0] * N)).every((v) => v === 0) && Array.from(got.subarray(offs[E] * N)).every((v) => v === 0);
  check(worstRel(got, y) < 1e-2 && zeros, `gmm tensor cores M ${M} K ${K} N ${N} E ${E}: worst |error| / max |y| ${worstRel(got, y).toExponential(2)}`);
  x.requiresGrad = true;
  w.requiresGrad = true;
  T.backward(T.groupedMatmul(x, w, off), g);
  const o1 = out('dxtc');
  run('gmmtc', 'dx', M, K, N, E, f('g', T.hostBytes(g.toHost())), f('w', T.hostBytes(w.toHost())), f('off', Int32Array.from(offs)), o1);
  const e1 = worstRel(readValues(T, o1, 'bf16', [M, K]), x.grad.toFloat64());
  // dW in f32: the product of the same bf16 values in f32 (the f32 reference's sum order differs: 1e-5)
  const x32 = T.cast(T.fromArray(x.toFloat64(), [M, K]), 'f32');
  const w32 = T.cast(T.fromArray(w.toFloat64(), [E, N, K]), 'f32');
  w32.requiresGrad = true;
  T.backward(T.groupedMatmul(x32, w32, off), T.cast(g, 'f32'));
  const dws = { bf16: w.grad.toFloat64(), f32: w32.grad.toFloat64() };
  for (const odt of ['bf16', 'f32']) {
    const o2 = out('dwtc');
    run('gmmdwtc', odt, M, N, K, E, f('g', T.hostBytes(g.toHost())), f('x', T.hostBytes(x.toHost())), f('off', Int32Array.from(offs)), o2);
    const got2 = readValues(T, o2, odt, [E, N, K]);
    const e2 = worstRel(got2, dws[odt]);
    const empty = offs.slice(0, E).map((p, e) => offs[e + 1] === p ? e : -1).filter((e) => e >= 0);
    const zeroDw = empty.every((e) => Array.from(got2.subarray(e * N * K, (e + 1) * N * K)).every((v) => v === 0));
    check(e1 < 1e-2 && e2 < (odt === 'f32' ? 1e-5 : 1e-2) && zeroDw, `gmm backward tensor cores M ${M} K ${K} N ${N} E ${E} → dW ${odt}: dx ${e1.toExponential(2)}, dW ${e2.toExponential(2)}, empty experts' dW 0: ${zeroDw}`);
  }
}

// ---- grouped GEMM, FP8 weights ----
for (const [M, K, N, offs] of [[37, 200, 136, [2, 2, 9, 9, 30, 35]], [1, 128, 64, [0, 1]], [70, 300, 24, [0, 0, 64, 65, 70]]]) {
  const E = offs.length - 1;
  const nbN = Math.ceil(N / 128), nbK = Math.ceil(K / 128);
  const w8 = T.cast(T.fromArray(normals(E * N * K, 60), [E, N, K]), 'f8e4m3'); // below e4m3's 448 (no NaN codes)
  const sw = T.fromArray(Float32Array.from({ length: E * nbN * nbK }, () => 2 ** -(7 + Math.floor(rnd() * 4))), [E, nbN, nbK]);
  for (const odt of ['f32', 'bf16']) {
    const x = T.cast(T.fromArray(normals(M * K), [M, K]), odt);
    const off = T.fromArray(Int32Array.from(offs), [E + 1], { dtype: 'i32' });
    const want = T.groupedMatmulFp8(x, w8, sw, off).toFloat64();
    const { q, s } = T.actQuant(x, 128, { ue8m0: true });
    const o = out('gmm8');
    run('gmm8', odt, M, N, K, E, f('q', T.hostBytes(q.toHost())), f('sq', s.toHost()), f('w8', T.hostBytes(w8.toHost())), f('sw', sw.toHost()), f('off', Int32Array.from(offs)), o);
    const got = readValues(T, o, odt, [M, N]);
    const worst = worstRel(got, want);
    const zeros = Array.from(got.subarray(0, offs[0] * N)).every((v) => v === 0) && Array.from(got.subarray(offs[E] * N)).every((v) => v === 0);
    check(worst < (odt === 'f32' ? 1e-5 : 1e-2) && zeros, `gmm8 M ${M} K ${K} N ${N} E ${E} → ${odt}: worst |error| / max |y| ${worst.toExponential(2)}`);
  }
}

// ---- combine ----
for (const [Tn, k, D, ydt, odt, withShared] of [[1, 1, 8, 'f32', 'f32', true], [7, 2, 33, 'bf16', 'bf16', true], [33, 6, 64, 'f32', 'bf16', false], [5, 8, 300, 'bf16', 'f32', true]]) {
  const ex = new Int32Array(Tn * k);
  for (let t = 0; t < Tn; t++) {
    const perm = Array.from({ length: 16 }, (_, i) => i).sort(() => rnd() - 0.5).slice(0, k).sort((a, b) => a - b);
    ex.set(perm, t * k);
  }
  const d = T.moeDispatch(T.fromArray(ex, [Tn, k], { dtype: 'i32' }), 16);
  const ys = T.cast(T.fromArray(normals(Tn * k * D), [Tn * k, D]), ydt);
  const w = T.fromArray(Float32Array.from({ length: Tn * k }, () => rnd()), [Tn, k]);
  const sh = withShared ? T.cast(T.fromArray(normals(Tn * D), [Tn, D]), ydt) : null;
  const want = T.moeCombine(ys, w, d.rows, { shared: sh, dtype: odt });
  const code = (dt) => (dt === 'bf16' ? 2 : 0);
  const o = out('comb');
  run('combine', Tn, k, D, code(odt), code(ydt), code(ydt), f('ys', T.hostBytes(ys.toHost())), f('w', w.toHost()), f('rows', d.rows.toHost()), sh ? f('sh', T.hostBytes(sh.toHost())) : '-', o);
  const got = new Uint8Array(readFileSync(o));
  check(same(got, T.hostBytes(want.toHost())), `combine T ${Tn} k ${k} D ${D} ${ydt}→${odt} shared ${withShared} (bit for bit)`);
}

finish();
