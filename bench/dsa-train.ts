// DSA training-op benchmark (issue 11 §5, the "Sparse MLA backward" row: TileLang ≈ 115 TFLOPS on H200,
// target ≥ 80), with a PyTorch reference (bench/dsa_train_ref.py: the gathered sparse attention through
// torch autograd) timed in the same command on the same GPU. Ops timed:
//   sparse MLA backward   s_q 4096, s_kv 32K, k 2048, h 128, bf16, dv 512 + rope 64 (the forward's lse saved)
//                         FLOPs = 2·s_q·h·k·(3·576 + 2·512): s and dq and dkv-key over 576 dims, dp and
//                         dkv-value over 512 (the products the backward actually forms)
//   indexer scores        fwd and bwd, sparse (s_q 4096, k 2048) and dense causal (s_q 2048 over 8K keys),
//                         H 64 × D 128, bf16; FLOPs = 2·H·D per entry (fwd), 3× that (bwd: l, dq, dk); sparse
//                         at 16 heads too (the gemm path against the one-pass kernels, indexer_scores_flash.cu)
//   indexer KL loss       sparse, s_q 4096, k 2048, and dense causal (s_q 2048 over 8K keys), against
//                         h 128 × 576 attention: 2·h·576 per entry; sparse at 16 heads too (the gemm path
//                         against the one-pass kernel, kernels/indexer_kl_flash.cu)
//   sparse MLA backward   at 16 heads too: s_q 8192, s_kv 8192, k 2048 (the mid config's layer: B 2 × S 4096)
// Medians of CUDA-event times over bursts (as bench/sparse-mla.ts). The sparse MLA backward is timed on each
// CUDA path: the bf16 gather + cuBLASLt path (kernels/sparse_mla_bwd_gemm.cu, sparseMlaBackwardTune.gemm),
// at 16 heads the one-pass kernel (kernels/sparse_mla_bwd_flash.cu, sparseMlaBackwardTune.flash; with a
// probe row: the kernel without its dkv atomics, whose time is what the atomics cost), and at
// 128 heads the correctness-first CUDA-core kernel (kernels/sparse_mla_bwd.cu, the f32 path; fewer
// repetitions: ~1.8 s a call on an H100). The indexer KL loss is timed on both paths
// (indexerTrainTune.gemm), and so are the indexer scores forward and backward: the bf16 GEMM paths
// (kernels/indexer_train_gemm.cu: the q·kᵀ products through cuBLASLt, gathered rows when sparse, every key
// when dense) and the CUDA-core kernels (kernels/indexer_train.cu; the KL's ~0.4 s a call). The dense
// GEMM paths compute every key of a row (~1.6× the causal entries at the dense shape); FLOPs count the
// entries. The table says what was measured.
//   node dist/bench/dsa-train.js [--no-torch] [--out result.json] [--quick]
//   node dist/bench/dsa-train.js --device cpu      (tiny shapes on the CPU references; says so)
import { writeFileSync } from 'node:fs';
import * as T from '../src/tensor/index.js';
import { cudaBackend } from '../src/backend/cuda/index.js';
import { sparseMlaBackwardTune } from '../src/backend/cuda/sparse-mla-backward.js';
import { indexerTrainTune } from '../src/backend/cuda/indexer-train.js';
import { args, benchDevice, burstMs, distinctRows, machine, opt, printTable, runReference, randDevice } from './harness.js';

const { device, onCpu } = benchDevice('dsa-train bench', 'run with --device cpu for the tiny CPU shapes');
const quick = args.includes('--quick');
const cpuBe = T.getBackend('cpu');
const be = onCpu ? cpuBe : T.getBackend('cuda');

const MLA = onCpu ? { s_q: 4, s_kv: 300, k: 100, h: 16 } : { s_q: quick ? 1024 : 4096, s_kv: 32768, k: 2048, h: 128 };
const MLA16 = onCpu ? null : { s_q: quick ? 2048 : 8192, s_kv: 8192, k: 2048, h: 16 };
const IDX = onCpu ? { s_q: 8, k: 64, dense_q: 8, dense_kv: 200, h: 8 } : { s_q: quick ? 1024 : 4096, k: 2048, dense_q: quick ? 512 : 2048, dense_kv: 8192, h: 64 };
const D = 576;
const DV = 512;
const DI = 128;

const timeMs = (fn: () => void, reps = onCpu ? 3 : 10, burst = onCpu ? 1 : 3): number => burstMs(fn, reps, burst, 1, onCpu);
const rand = (shape: number[], dtype: T.DType, seed: number, s = 1): T.Tensor => randDevice(shape, dtype, seed, device, s);
const tflops = (flop: number, ms: number): number => flop / (ms * 1e-3) / 1e12;

const rows: string[][] = [];
const out: Record<string, unknown>[] = [];
function add(op: string, shape: string, ms: number, flop: number, ref?: number): void {
  const tf = tflops(flop, ms);
  rows.push([op, shape, ms.toFixed(onCpu ? 1 : 3), onCpu ? tf.toExponential(2) : tf.toFixed(2), ref === undefined ? '—' : ref.toFixed(3)]);
  out.push({ op, shape, ms, tflops: tf, torch_ms: ref ?? null });
}

// ---- the torch reference, same command ---------------------------------------------------------------
let torch: Record<string, number> | null = null;
let torchNote = '';
if (onCpu || args.includes('--no-torch')) torchNote = onCpu ? 'no torch reference on the CPU run' : 'torch reference skipped (--no-torch)';
else {
  const r = runReference('dsa_train_ref.py', { mla: MLA, mla16: MLA16, idx: IDX }, process.env.DSV32_PYTHON ?? 'python3');
  if (r.error || r.status !== 0) torchNote = `torch reference failed: ${r.error?.message ?? r.stderr.trim().split('\n').slice(-2).join(' / ')}`;
  else torch = JSON.parse(r.stdout);
}

// ---- sparse MLA backward -----------------------------------------------------------------------------
function mlaBackward(m: { s_q: number; s_kv: number; k: number; h: number }, ref: number | undefined): void {
  const { s_q, s_kv, k, h } = m;
  const scale = D ** -0.5;
  const q = rand([s_q, h, D], 'bf16', 1);
  const kv = rand([s_kv, D], 'bf16', 2);
  const idx = T.fromArray(distinctRows(s_q, k, s_kv, 3), [s_q, k], { dtype: 'i32', device });
  const { out: o, lse } = T.sparseMlaPrefill(q, kv, idx, scale, { dv: DV });
  const g = rand([s_q, h, DV], 'bf16', 4);
  const dq = T.empty([s_q, h, D], { dtype: 'bf16', device });
  const dkv = T.empty([s_kv, D], { dtype: 'f32', device });
  const call = (): void => be.sparseMlaBackward!(dq, dkv, g, q, kv, o, lse, idx, DV, scale);
  const shape = `s_q ${s_q} s_kv ${s_kv} k ${k} h ${h}`;
  const flop = 2 * s_q * h * k * (3 * D + 2 * DV);
  if (onCpu) {
    add('sparse MLA backward', shape, timeMs(call), flop, ref);
    return;
  }
  const keep = { ...sparseMlaBackwardTune };
  try {
    Object.assign(sparseMlaBackwardTune, { gemm: true, flash: false });
    add('sparse MLA backward, gemm', shape, timeMs(call), flop, ref);
    if (h <= keep.flashMaxHeads) {
      Object.assign(sparseMlaBackwardTune, { flash: true });
      add('sparse MLA backward, one pass', shape, timeMs(call), flop, ref);
      // probe: the same kernel without its dkv atomics (a wrong dkv; only its time is read)
      Object.assign(sparseMlaBackwardTune, { probeNoAtomics: true });
      add('  probe: one pass without the dkv atomics', shape, timeMs(call), flop);
    } else {
      Object.assign(sparseMlaBackwardTune, { gemm: false });
      add('sparse MLA backward, CUDA cores', shape, timeMs(call, 3, 1), flop, ref);
    }
  } finally {
    Object.assign(sparseMlaBackwardTune, keep);
  }
  T.freeNow(q, kv, idx, o, lse, g, dq, dkv);
}
mlaBackward(MLA, torch?.mla_bwd_ms);
if (MLA16) mlaBackward(MLA16, torch?.mla16_bwd_ms);

// ---- indexer scores and KL ---------------------------------------------------------------------------
{
  const { s_q, k, h } = IDX;
  /** Both CUDA paths (the CPU has one); the CUDA-core kernel with fewer repetitions. */
  const bothPaths = (name: string, shape: string, call: () => void, flop: number, ref?: number): void => {
    if (onCpu) return add(name, shape, timeMs(call), flop, ref);
    const dflt = indexerTrainTune.gemm;
    try {
      indexerTrainTune.gemm = true;
      add(`${name}, gemm`, shape, timeMs(call), flop, ref);
      indexerTrainTune.gemm = false;
      add(`${name}, CUDA cores`, shape, timeMs(call, 3, 1), flop, ref);
    } finally {
      indexerTrainTune.gemm = dflt;
    }
  };
  const q = rand([s_q, h, DI], 'bf16', 5);
  const kk = rand([IDX.dense_kv, DI], 'bf16', 6);
  const w = rand([s_q, h], 'f32', 7, 0.1);
  const idx = T.fromArray(distinctRows(s_q, k, IDX.dense_kv, 8), [s_q, k], { dtype: 'i32', device });
  const sc = T.empty([s_q, k], { dtype: 'f32', device });
  bothPaths('indexer scores fwd, sparse', `s_q ${s_q} k ${k} H ${h}`, () => be.indexerScores!(sc, q, kk, w, null, null, idx), 2 * s_q * k * h * DI,
    torch?.idx_sparse_fwd_ms);
  const dq = T.empty([s_q, h, DI], { dtype: 'bf16', device });
  const dk = T.empty([IDX.dense_kv, DI], { dtype: 'f32', device });
  const dw = T.empty([s_q, h], { dtype: 'f32', device });
  const g = rand([s_q, k], 'f32', 9);
  bothPaths('indexer scores bwd, sparse', `s_q ${s_q} k ${k} H ${h}`, () => be.indexerScoresBackward!(dq, dk, dw, g, q, kk, w, null, null, idx),
    3 * 2 * s_q * k * h * DI, torch?.idx_sparse_bwd_ms);
  // and at the mid config's indexer (16 heads): the gemm path against the one-pass kernels (kernels/indexer_scores_flash.cu)
  if (!onCpu) {
    const q16 = rand([s_q, 16, DI], 'bf16', 14);
    const w16 = rand([s_q, 16], 'f32', 15, 0.1);
    const dq16 = T.empty([s_q, 16, DI], { dtype: 'bf16', device });
    const dw16 = T.empty([s_q, 16], { dtype: 'f32', device });
    const keep = { ...indexerTrainTune };
    try {
      for (const scoresFlash of [false, true]) {
        Object.assign(indexerTrainTune, { gemm: true, scoresFlash });
        const how = scoresFlash ? 'one pass' : 'gemm';
        add(`indexer scores fwd, sparse, ${how}`, `s_q ${s_q} k ${k} H 16`, timeMs(() => be.indexerScores!(sc, q16, kk, w16, null, null, idx)), 2 * s_q * k * 16 * DI);
        add(`indexer scores bwd, sparse, ${how}`, `s_q ${s_q} k ${k} H 16`, timeMs(() => be.indexerScoresBackward!(dq16, dk, dw16, g, q16, kk, w16, null, null, idx)),
          3 * 2 * s_q * k * 16 * DI);
      }
    } finally {
      Object.assign(indexerTrainTune, keep);
    }
    T.freeNow(q16, w16, dq16, dw16);
  }
  // dense causal: query i of the last dense_q positions sees [0, dense_kv − dense_q + i + 1)
  const nq = IDX.dense_q;
  const T0 = IDX.dense_kv - nq;
  const start = T.zeros([nq], { dtype: 'i32', device });
  const end = T.fromArray(Int32Array.from({ length: nq }, (_, i) => T0 + i + 1), [nq], { dtype: 'i32', device });
  const qd = T.narrow(q, 0, 0, nq).isContiguous() ? T.narrow(q, 0, 0, nq) : T.contiguous(T.narrow(q, 0, 0, nq));
  const wd = T.contiguous(T.narrow(w, 0, 0, nq));
  const sd = T.empty([nq, IDX.dense_kv], { dtype: 'f32', device });
  const entries = nq * T0 + (nq * (nq + 1)) / 2;
  bothPaths('indexer scores fwd, dense causal', `s_q ${nq} s_kv ${IDX.dense_kv} H ${h}`, () => be.indexerScores!(sd, qd, kk, wd, start, end, null),
    2 * entries * h * DI, torch?.idx_dense_fwd_ms);
  const gd = rand([nq, IDX.dense_kv], 'f32', 10);
  const dqd = T.empty([nq, h, DI], { dtype: 'bf16', device });
  const dwd = T.narrow(dw, 0, 0, nq);
  bothPaths('indexer scores bwd, dense causal', `s_q ${nq} s_kv ${IDX.dense_kv} H ${h}`,
    () => be.indexerScoresBackward!(dqd, dk, dwd, gd, qd, kk, wd, start, end, null), 3 * 2 * entries * h * DI, torch?.idx_dense_bwd_ms);
  // KL against the main attention (h_main heads × 576 over the same selected keys)
  const hm = MLA.h;
  const qm = rand([s_q, hm, D], 'bf16', 11);
  const kvm = rand([IDX.dense_kv, D], 'bf16', 12);
  const { lse } = T.sparseMlaPrefill(qm, kvm, idx, D ** -0.5, { dv: DV });
  const L = T.empty([s_q], { dtype: 'f32', device });
  const G = T.empty([s_q, k], { dtype: 'f32', device });
  bothPaths('indexer KL loss, sparse', `s_q ${s_q} k ${k} h ${hm}`, () => be.indexerKlLoss!(L, G, sc, qm, kvm, lse, null, null, idx, DV, D ** -0.5),
    2 * s_q * k * hm * D, torch?.kl_sparse_ms);
  // and at the mid config's 16 heads: the gemm path against the one-pass kernel (kernels/indexer_kl_flash.cu)
  if (!onCpu) {
    const qm16 = rand([s_q, 16, D], 'bf16', 13);
    const { lse: lse16 } = T.sparseMlaPrefill(qm16, kvm, idx, D ** -0.5, { dv: DV });
    const call16 = (): void => be.indexerKlLoss!(L, G, sc, qm16, kvm, lse16, null, null, idx, DV, D ** -0.5);
    const keep = { ...indexerTrainTune };
    try {
      for (const flash of [false, true]) {
        Object.assign(indexerTrainTune, { gemm: true, flash });
        add(`indexer KL loss, sparse, ${flash ? 'one pass' : 'gemm'}`, `s_q ${s_q} k ${k} h 16`, timeMs(call16), 2 * s_q * k * 16 * D);
      }
    } finally {
      Object.assign(indexerTrainTune, keep);
    }
    T.freeNow(qm16, lse16);
  }
  // dense causal over the indexer's dense ranges; the lse of any finite forward serves for timing (the
  // model's dense lse comes from causalMlaPrefillTrain, whose Tq = Tk shape this is not)
  const qmd = T.contiguous(T.narrow(qm, 0, 0, nq));
  const lsed = T.contiguous(T.narrow(lse, 0, 0, nq));
  const Ld = T.empty([nq], { dtype: 'f32', device });
  const Gd = T.empty([nq, IDX.dense_kv], { dtype: 'f32', device });
  bothPaths('indexer KL loss, dense causal', `s_q ${nq} s_kv ${IDX.dense_kv} h ${hm}`, () => be.indexerKlLoss!(Ld, Gd, sd, qmd, kvm, lsed, start, end, null, DV, D ** -0.5),
    2 * entries * hm * D, torch?.kl_dense_ms);
}

console.log(`DSA training ops — ${onCpu ? 'CPU reference at TINY shapes (not the issue\'s shapes; no GPU here)' : cudaBackend().rt.info.name}; ${machine()}${torchNote ? `; ${torchNote}` : ''}`);
printTable(['op', 'shape', 'ms (median)', 'TFLOPS', 'torch ms'], rows);
const path = opt('--out');
if (path) writeFileSync(path, JSON.stringify({ date: new Date().toISOString().slice(0, 10), machine: machine(), device: onCpu ? 'cpu (tiny shapes)' : cudaBackend().rt.info.name, torch: torch ?? torchNote, rows: out }, null, 2));
