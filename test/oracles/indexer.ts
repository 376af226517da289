// Test oracles: the model's former host loops for the lightning indexer, kept as the independent
// reference the DSA operations (src/tensor/ops/dsa-indexer.ts) are checked against bit for bit.
//   indexScores: I[t, s] = fround(fround(Σ_h w[t,h]·relu(q[t,h]·k[s])) · ks[s]) with the dots from
//   one sgemm per block of queries (the CPU backend's GEMM path), −inf after the query's position.
import { fromArray } from '../../src/tensor/tensor.js';
import { matmul } from '../../src/tensor/ops/matmul.js';
import { narrow, transpose } from '../../src/tensor/ops/view.js';
import { selectTopkRow } from '../../src/backend/cpu/topk-select.js';

/** Query rows per score block, bounded so a block's logits stay a few MiB. */
const SCORE_BLOCK_ELEMS = 1 << 22;

/**
 * Index scores of queries q [nq, Hi, Dh] (weights w [nq, Hi]) against keys [T, Dh] (scales ks [T]),
 * for query positions pos0..pos0+nq-1: [nq, T] with −inf at keys after the query (the causal mask).
 */
export function indexScores(q: Float32Array, w: Float32Array, keys: Float32Array, ks: Float32Array, nq: number, Hi: number, Dh: number, T: number, pos0: number): Float32Array {
  const out = new Float32Array(nq * T);
  const K = fromArray(keys.subarray(0, T * Dh), [T, Dh]);
  const rowsPerBlock = Math.max(1, Math.floor(SCORE_BLOCK_ELEMS / Math.max(1, Hi * T)));
  for (let i0 = 0; i0 < nq; i0 += rowsPerBlock) {
    const n = Math.min(rowsPerBlock, nq - i0);
    // keys visible to the block's last query
    const tv = Math.min(T, pos0 + i0 + n);
    const Q = fromArray(q.subarray(i0 * Hi * Dh, (i0 + n) * Hi * Dh), [n * Hi, Dh]);
    const logits = matmul(Q, transpose(narrow(K, 0, 0, tv))).toFloat32(); // [n·Hi, tv]
    for (let i = 0; i < n; i++) {
      const pos = pos0 + i0 + i;
      const row = (i0 + i) * T;
      for (let t = 0; t < T; t++) {
        if (t > pos || t >= tv) {
          out[row + t] = -Infinity;
          continue;
        }
        let acc = 0;
        for (let h = 0; h < Hi; h++) {
          const l = logits[(i * Hi + h) * tv + t]!;
          if (l > 0) acc += l * w[(i0 + i) * Hi + h]!;
        }
        out[row + t] = Math.fround(Math.fround(acc) * ks[t]!);
      }
    }
  }
  return out;
}

export function selectRows(q: Float32Array, w: Float32Array, keys: Float32Array, ks: Float32Array, S: number, Hi: number, Dh: number, start: number, topk: number, out: Int32Array, outOff: number, width: number): void {
  const T = start + S;
  const scratch = new Float32Array(T);
  // score in blocks of queries so the [rows, T] score matrix stays bounded at long context
  const rows = Math.max(1, Math.floor(SCORE_BLOCK_ELEMS / Math.max(1, T)));
  for (let i0 = 0; i0 < S; i0 += rows) {
    const n = Math.min(rows, S - i0);
    const sc = indexScores(q.subarray(i0 * Hi * Dh), w.subarray(i0 * Hi), keys, ks, n, Hi, Dh, T, start + i0);
    for (let i = 0; i < n; i++) {
      const pos = start + i0 + i;
      selectTopkRow(sc, i * T, pos + 1, Math.min(topk, T), out, outOff + (i0 + i) * width, width, scratch);
    }
  }
}

