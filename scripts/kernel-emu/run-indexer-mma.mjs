// Runs the fused indexer kernels (kernels/dsa_indexer_mma.cu) on the CPU, one host thread per CUDA thread,
// with wgmma, cp.async and the named barriers emulated as the driver's header says (indexer-mma-emu.cpp),
// and compares the logits with the CPU reference ops: the −∞ pattern exactly (ranges, causal bounds, tiles
// skipped without an MMA, chunk edges), the values to f32 rounding (the emulated MMA sums each k step in f32,
// the head sum is f32 in fragment order; the reference sums heads in double). Every element must be written
// (the output starts as NaN). Cases: every head count and B-tile width the launcher picks (H 4 … 128, NT 64
// and 256), keys not a multiple of 64, chunks of 128 … 2048 keys, start > 0, empty and clamped ranges,
// causal rows, next_n 1 … 37, scattered pages and a block-table entry past the cache. What it checks is this
// code's own logic — tile and range bookkeeping, the swizzled stores against the swizzle rule, the fragment
// walk of the epilogue — under this code's reading of the hardware; it is no substitute for a GPU run.
//   npm run build && node scripts/kernel-emu/run-indexer-mma.mjs
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { build, emulate, mulberry32, wgmmaHeaderEdit, pagedIndexerCache, readValues, reporter, root, setup, writeData } from './emu-runner.mjs';

const { T, dir } = await setup('indexer-mma');
const src = readFileSync(join(root, 'kernels', 'dsa_indexer_mma.cu'), 'utf8');
const cut = (from, to) => {
  const a = src.indexOf(from);
  const b = src.indexOf(to, a);
  if (a < 0 || b < 0) throw new Error(`indexer-mma-emu: kernels/dsa_indexer_mma.cu no longer has '${from}' … '${to}'; update the runner`);
  return [src.slice(a, b), ''];
};
const emu = build(dir, {
  cu: 'dsa_indexer_mma.cu',
  driver: 'indexer-mma-emu.cpp',
  flags: ['-O2'],
  edits: [
    // the sm_90a section: the driver defines these (wgmma, cp.async, fences, named barriers)
    cut('// ---- wgmma, fp8 (sm_90a)', 'template <int NT>\n__device__ __forceinline__ void mma_tile'),
    wgmmaHeaderEdit(),
    ['extern __shared__ uint8_t smem_raw[];', 'uint8_t* smem_raw = (uint8_t*)g_smem;'],
    ['__launch_bounds__(MMA_THREADS, 1)', ''],
  ],
});
const { check, finish } = reporter('indexer-mma');
const D = 128;
const r = mulberry32(23);
const nrm = () => Math.sqrt(-2 * Math.log(Math.max(r(), 1e-12))) * Math.cos(2 * Math.PI * r());
const i32 = (a, shape = [a.length]) => T.fromArray(Int32Array.from(a), shape, { dtype: 'i32' });
const e4m3 = (n, s) => T.cast(T.fromArray(Float32Array.from({ length: n }, () => nrm() * s), [n / D, D]), 'f8e4m3');
const file = (n) => join(dir, n);
// the launcher's B-tile width (src/backend/cuda/dsa-indexer.ts; the chunk is each case's own, to cover the edges)
const { mmaColumns: ntFor } = await import(join(root, 'dist', 'src', 'backend', 'cuda', 'dsa-indexer.js'));

/** −∞ pattern equal, no element left unwritten, worst relative difference of the finite ones. */
function compare(got, want) {
  let masks = 0;
  let unwritten = 0;
  let worst = 0;
  let scale = 1e-30;
  for (const v of want) if (Number.isFinite(v)) scale = Math.max(scale, Math.abs(v));
  for (let i = 0; i < want.length; i++) {
    if (Number.isNaN(got[i])) unwritten++;
    else if ((got[i] === -Infinity) !== (want[i] === -Infinity)) masks++;
    else if (want[i] !== -Infinity) worst = Math.max(worst, Math.abs(got[i] - want[i]) / scale);
  }
  return { masks, unwritten, worst, ok: masks === 0 && unwritten === 0 && worst <= 1e-5 };
}

// ---- dense --------------------------------------------------------------------------------------------------
for (const [Tq, H, Tk, chunk, causal] of [[37, 4, 200, 128], [19, 8, 65, 2048], [11, 32, 130, 64], [5, 128, 333, 192], [21, 64, 700, 256], [45, 16, 300, 128], [3, 16, 1, 2048], [24, 64, 900, 320, true]]) {
  const q = T.reshape(e4m3(Tq * H * D, 30), [Tq, H, D]);
  const k = e4m3(Tk * D, 30);
  const ks = T.fromArray(Float32Array.from({ length: Tk }, () => Math.abs(nrm()) + 0.01), [Tk]);
  const w = T.fromArray(Float32Array.from({ length: Tq * H }, () => nrm()), [Tq, H]);
  const st = Array.from({ length: Tq }, (_, i) => (causal ? 0 : [0, 3, Tk, 40, -5, 0][i % 6]));
  const en = Array.from({ length: Tq }, (_, i) => (causal ? 37 * i + 1 : [Tk, 3, Tk + 9, 39, 64, i + 1][i % 6]));
  const want = T.indexerLogits(q, k, ks, w, i32(st), i32(en)).toFloat32();
  const nt = ntFor(H, Tq);
  const qb = nt / H;
  for (const [n, t] of [['q.bin', q], ['w.bin', w], ['k.bin', k], ['ks.bin', ks], ['st.bin', i32(st)], ['en.bin', i32(en)]]) writeData(T, file(n), t);
  emulate(emu, ['dense', H, nt, Tq, Tk, chunk, Math.ceil(Tk / chunk), Math.ceil(Tq / qb), file('q.bin'), file('w.bin'), file('k.bin'), file('ks.bin'), file('st.bin'), file('en.bin'), file('out.bin')]);
  const c = compare(readValues(T, file('out.bin'), 'f32', [Tq * Tk]), want);
  check(c.ok, `dense Tq=${Tq} H=${H} NT=${nt} Tk=${Tk} chunk=${chunk}${causal ? ' causal' : ''}: masks ${c.masks} differ, ${c.unwritten} unwritten, worst ${c.worst.toExponential(2)}`);
}

// ---- paged --------------------------------------------------------------------------------------------------
for (const [H, N, ctx, chunk] of [[16, 1, [1, 64, 200], 128], [64, 2, [65, 2, 130], 64], [16, 37, [70, 150], 2048], [4, 3, [70, 17], 128], [128, 1, [129, 3], 64], [8, 9, [40, 90], 192]]) {
  // one block-table entry points past the cache, outside every context: it must read as zeros
  const { B, maxCtx, maxBlocks, pool, table, cache } = pagedIndexerCache(T, ctx, nrm);
  const q = T.reshape(e4m3(B * N * H * D, 30), [B, N, H, D]);
  const w = T.fromArray(Float32Array.from({ length: B * N * H }, () => nrm()), [B, N, H]);
  const want = T.indexerLogitsPaged(q, cache, w, i32(table, [B, maxBlocks]), i32(ctx), maxCtx).toFloat32();
  const nt = ntFor(H, N);
  const qb = nt / H;
  for (const [n, t] of [['q.bin', q], ['w.bin', w], ['cache.bin', cache], ['table.bin', i32(table)], ['ctx.bin', i32(ctx)]]) writeData(T, file(n), t);
  emulate(emu, ['paged', H, nt, B * N, maxCtx, chunk, N, maxBlocks, pool, Math.ceil(maxCtx / chunk), B * Math.ceil(N / qb), file('q.bin'), file('w.bin'), file('cache.bin'), file('table.bin'), file('ctx.bin'), file('out.bin')]);
  const c = compare(readValues(T, file('out.bin'), 'f32', [B * N * maxCtx]), want);
  check(c.ok, `paged H=${H} NT=${nt} N=${N} ctx=${ctx} chunk=${chunk}: masks ${c.masks} differ, ${c.unwritten} unwritten, worst ${c.worst.toExponential(2)}`);
}
finish();
