// Dot products of several query heads with one key row, for the CPU training references
// (indexer-train.ts). Each dot is a serial double sum in c order, the order the one-dot loops used, so
// the results are the same bits; the point is speed: a serial sum is bound by the adder's latency, and
// four independent ones advanced in the same loop overlap (and share the key row's loads).

/**
 * out[o + h] = Σ_{c0 ≤ c < c1} q[qa + h·qs + c]·k[kb + c] for h < H (qs: the stride between the heads'
 * rows), each summed from c0 upwards.
 */
export function headDots(q: Float64Array, qa: number, qs: number, H: number, k: Float64Array, kb: number, c0: number, c1: number, out: Float64Array, o: number): void {
  let h = 0;
  for (; h + 4 <= H; h += 4) {
    const a0 = qa + h * qs, a1 = a0 + qs, a2 = a1 + qs, a3 = a2 + qs;
    let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (let c = c0; c < c1; c++) {
      const x = k[kb + c]!;
      s0 += q[a0 + c]! * x;
      s1 += q[a1 + c]! * x;
      s2 += q[a2 + c]! * x;
      s3 += q[a3 + c]! * x;
    }
    out[o + h] = s0;
    out[o + h + 1] = s1;
    out[o + h + 2] = s2;
    out[o + h + 3] = s3;
  }
  for (; h < H; h++) {
    const a = qa + h * qs;
    let s = 0;
    for (let c = c0; c < c1; c++) s += q[a + c]! * k[kb + c]!;
    out[o + h] = s;
  }
}
