// Runs the indexer's FP8-GEMM path (kernels/dsa_indexer_gemm.cu: the paged-key gather and the reduce) on
// the CPU, one host thread per CUDA thread, and compares it with the CPU reference ops: the gathered keys
// and scales byte for byte with the cache writer's input, and the reduce's logits with indexerLogitsPaged
// (masks exact, values to f32 rounding: the two sgemm calls differ in width) and bit for bit with
// indexerLogits — the GEMM between them (cuBLASLt on the GPU) is done here as the CPU reference does it (an
// f32 sgemm of the decoded e4m3 values), so any larger difference is the kernels'. Cases:
// contexts not a multiple of 64 or 16, next_n 1 and 2, scattered pages, a block-table entry past the cache,
// query chunks (row0 > 0), and the dense op's start/end ranges. No substitute for a GPU run.
//   npm run build && node scripts/kernel-emu/run-indexer-gemm.mjs
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { build, emulate, mulberry32, pagedIndexerCache, readValues, reporter, setup, writeData } from './emu-runner.mjs';

const { T, dir } = await setup('indexer-gemm');
const emu = build(dir, { cu: 'dsa_indexer_gemm.cu', driver: 'indexer-gemm-emu.cpp', flags: ['-O1', '-ffp-contract=off'] });
const { check, finish } = reporter('indexer-gemm');
const D = 128;
const r = mulberry32(11);
const nrm = () => Math.sqrt(-2 * Math.log(Math.max(r(), 1e-12))) * Math.cos(2 * Math.PI * r());
const i32 = (a, shape = [a.length]) => T.fromArray(Int32Array.from(a), shape, { dtype: 'i32' });
const f32file = (name, a) => writeFileSync(join(dir, name), Buffer.from(Float32Array.from(a).buffer));
const e4m3 = (n, s) => T.cast(T.fromArray(Float32Array.from({ length: n }, () => nrm() * s), [n / D, D]), 'f8e4m3');
/** S [rows·H, cols] = q [rows·H, 128] · kᵀ in f32 (sgemm through the CPU matmul), as the CPU reference forms it. */
const scores = (q8, k8) => T.matmul(T.cast(q8, 'f32'), T.transpose(T.cast(k8, 'f32'), 0, 1));

// ---- paged: gather, then per sequence (and query chunk) the reduce ----------------------------------------
for (const [H, N, ctx, qc] of [[16, 1, [1, 64, 200], 1], [64, 2, [65, 2, 130], 1], [8, 3, [70, 17], 2]]) {
  // an entry past the cache (never inside a context here): must read as zeros
  const { B, maxCtx, maxBlocks, pool, table, cache } = pagedIndexerCache(T, ctx, nrm);
  const ctxPad = Math.ceil(maxCtx / 16) * 16;
  const q = T.reshape(e4m3(B * N * H * D, 30), [B, N, H, D]);
  const w = T.fromArray(Float32Array.from({ length: B * N * H }, () => nrm()), [B, N, H]);
  const want = T.indexerLogitsPaged(q, cache, w, i32(table, [B, maxBlocks]), i32(ctx), maxCtx).toFloat32();
  writeData(T, join(dir, 'cache.bin'), cache);
  writeData(T, join(dir, 'table.bin'), i32(table));
  writeData(T, join(dir, 'ctx.bin'), i32(ctx));
  emulate(emu, ['gather', B, ctxPad, maxBlocks, pool, 'cache.bin', 'table.bin', 'ctx.bin', 'K.bin', 'KS.bin'], { cwd: dir });
  const K = readValues(T, join(dir, 'K.bin'), 'u8', [B * ctxPad * D]);
  const KS = readValues(T, join(dir, 'KS.bin'), 'f32', [B * ctxPad]);
  // gathered keys: position p of sequence b is what the writer stored there; past the context zeros
  let bad = 0;
  const cb = cache.toHost();
  for (let b = 0; b < B; b++) for (let p = 0; p < ctxPad; p++) {
    const inCtx = p < ctx[b];
    const blk = table[b * maxBlocks + (p >> 6)];
    for (let d = 0; d < D; d++) {
      const got = K[(b * ctxPad + p) * D + d];
      const exp = inCtx ? cb[blk * 64 * (D + 4) + (p & 63) * D + d] : 0;
      if (got !== exp) bad++;
    }
  }
  check(bad === 0, `paged H=${H} N=${N} ctx=${ctx}: gathered key bytes (${bad} differ)`);
  writeFileSync(join(dir, 'out.bin'), Buffer.alloc(B * N * maxCtx * 4, 0x55));
  writeData(T, join(dir, 'w.bin'), w);
  for (let b = 0; b < B; b++) {
    const kb = T.fromBits(Uint8Array.from(K.subarray(b * ctxPad * D, (b + 1) * ctxPad * D)), 'f8e4m3', [ctxPad, D]);
    f32file('ks.bin', KS.subarray(b * ctxPad, (b + 1) * ctxPad));
    for (let j0 = 0; j0 < N; j0 += qc) {
      const n = Math.min(qc, N - j0);
      const qrows = T.reshape(T.contiguous(T.narrow(T.reshape(q, [B * N, H, D]), 0, b * N + j0, n)), [n * H, D]);
      writeData(T, join(dir, 'S.bin'), scores(qrows, kb));
      emulate(emu, ['reduce', n, H, maxCtx, ctxPad, b * N + j0, maxCtx, b, N, 'S.bin', 'w.bin', 'ks.bin', 'ctx.bin', '-', '-', 'out.bin', B * N], { cwd: dir });
    }
  }
  const got = readValues(T, join(dir, 'out.bin'), 'f32', [B * N * maxCtx]);
  // the masked (−∞) pattern exactly; values to f32 rounding: the CPU op's sgemm spans each row's own keys,
  // this S spans the padded context, and OpenBLAS may sum a dot in another order at another width
  let masks = 0;
  let diff = 0;
  let worst = 0;
  for (let i = 0; i < want.length; i++) {
    if ((got[i] === -Infinity) !== (want[i] === -Infinity)) masks++;
    else if (!Object.is(got[i], want[i])) {
      diff++;
      worst = Math.max(worst, Math.abs(got[i] - want[i]) / Math.max(1e-30, Math.abs(want[i])));
    }
  }
  check(masks === 0 && worst <= 1e-6, `paged H=${H} N=${N} ctx=${ctx} chunk=${qc}: logits vs indexerLogitsPaged: masks equal (${masks} differ), ${diff}/${want.length} values not bit-equal, worst relative ${worst.toExponential(2)}`);
}

// ---- dense: the reduce with start/end ranges against indexerLogits ----------------------------------------
for (const [Tq, H, Tk] of [[7, 16, 80], [9, 64, 336]]) {
  const q = T.reshape(e4m3(Tq * H * D, 30), [Tq, H, D]);
  const k = e4m3(Tk * D, 30);
  const ks = T.fromArray(Float32Array.from({ length: Tk }, () => Math.abs(nrm()) + 0.01), [Tk]);
  const w = T.fromArray(Float32Array.from({ length: Tq * H }, () => nrm()), [Tq, H]);
  const st = Array.from({ length: Tq }, (_, i) => [0, 3, Tk, 40, 0][i % 5]);
  const en = Array.from({ length: Tq }, (_, i) => [Tk, 3, Tk, 39, i + 1][i % 5]);
  const want = T.indexerLogits(q, k, ks, w, i32(st), i32(en)).toFloat32();
  writeData(T, join(dir, 'S.bin'), scores(T.reshape(q, [Tq * H, D]), k));
  writeData(T, join(dir, 'w.bin'), w);
  writeData(T, join(dir, 'ks.bin'), ks);
  writeData(T, join(dir, 'st.bin'), i32(st));
  writeData(T, join(dir, 'en.bin'), i32(en));
  writeFileSync(join(dir, 'out.bin'), Buffer.alloc(Tq * Tk * 4, 0x55));
  emulate(emu, ['reduce', Tq, H, Tk, Tk, 0, Tk, 0, 0, 'S.bin', 'w.bin', 'ks.bin', '-', 'st.bin', 'en.bin', 'out.bin', Tq], { cwd: dir });
  const got = readValues(T, join(dir, 'out.bin'), 'f32', [Tq * Tk]);
  let diff = 0;
  for (let i = 0; i < want.length; i++) if (!Object.is(got[i], want[i])) diff++;
  check(diff === 0, `dense Tq=${Tq} H=${H} Tk=${Tk}: logits bit-equal to indexerLogits (${diff}/${want.length} differ)`);
}
finish();
