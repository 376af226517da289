// The thread collective (N ranks = worker threads of this process): every op at N = 2 and 3 against a
// direct computation of what it must return, in f32, bf16, f64 and i32, with slots so small that each op
// takes many chunks and with the default slots; ranks that disagree, a bad shape, a peer that dies and
// one that stalls past the timeout all fail with the op and the rank named, never hang.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import '../../src/backend/cpu/index.js';
import { runThreadRanks, ThreadRanksError } from '../../src/dist/thread-collective.js';
import type { DType } from '../../src/tensor/dtype.js';
import { fromArray } from '../../src/tensor/tensor.js';
import { input, type RankCase } from './thread-ranks.js';

const WORKER = new URL('./thread-ranks.worker.js', import.meta.url);
type Out = Record<string, unknown>;

/** x as the dtype holds it (inputs are rounded on the way in). */
const held = (v: number[], dt: DType): number[] => Array.from(fromArray(v, [v.length], { dtype: dt }).toFloat64());

/** The reduction the collective promises: f64 over ranks in rank order, rounded to the dtype once (i32 wraps). */
function reduced(parts: number[][], op: 'sum' | 'avg' | 'max', dt: DType): number[] {
  const acc = parts[0]!.map((_, i) => {
    const xs = parts.map((p) => p[i]!);
    const s = op === 'max' ? Math.max(...xs) : xs.reduce((a, b) => a + b, 0);
    return op === 'avg' ? s / parts.length : s;
  });
  return dt === 'i32' ? acc.map((v) => v | 0) : held(acc, dt);
}

for (const N of [2, 3]) {
  for (const [dt, slotBytes] of [['f32', 8], ['bf16', 8], ['f64', 8], ['i32', 8], ['f32', undefined]] as [DType, number | undefined][]) {
    test(`thread collective, ${N} ranks, ${dt}${slotBytes ? `, ${slotBytes}-byte slots` : ''}: every op equals the direct computation on every rank`, async () => {
      const outs = await runThreadRanks<Out>(N, WORKER, { kind: 'ops', dtype: dt } satisfies RankCase, { slotBytes });
      const n = 2 * N * 3;
      const seg = n / N;
      const xs = Array.from({ length: N }, (_, r) => held(input(r, n, dt), dt));
      outs.forEach((o, r) => {
        assert.equal(o.dtype, dt);
        for (const op of dt === 'i32' ? (['sum', 'max'] as const) : (['sum', 'avg', 'max'] as const)) {
          const all = reduced(xs, op, dt);
          assert.deepEqual(o[`allReduce.${op}`], all, `rank ${r} allReduce ${op}`);
          assert.deepEqual(o[`reduceScatter.${op}`], all.slice(r * seg, (r + 1) * seg), `rank ${r} reduceScatter ${op}`);
        }
        assert.deepEqual(o.allGather, { shape: [2 * N * N, 3], v: xs.flat() });
        assert.deepEqual(o.allToAll, xs.flatMap((x) => x.slice(r * seg, (r + 1) * seg)), `rank ${r} allToAll`);
        assert.deepEqual(o.broadcast, xs[N - 1], `rank ${r} broadcast`);
      });
      // with 3 ranks the once-rounded sum is not the pairwise-rounded one for some element, so the
      // comparison above does check the promised rounding
      if (dt === 'bf16' && N === 3) {
        const seq = xs[0]!.map((_, i) => xs.reduce((a, x) => held([a + x[i]!], dt)[0]!, 0));
        assert.notDeepEqual(seq, reduced(xs, 'sum', dt), 'some bf16 element rounds differently when summed in f64 and rounded once');
      }
    });
  }
}

test('thread collective: ranks that pass different element counts all fail, naming both calls', async () => {
  const outs = await runThreadRanks<Out>(2, WORKER, { kind: 'mismatch' } satisfies RankCase);
  assert.match(String(outs[0]!.error), /^allReduce: rank 0 called allReduce of 4 f32, sum but rank 1 called allReduce of 5 f32, sum; every rank must make the same call/);
  assert.match(String(outs[1]!.error), /^allReduce: rank 1 called allReduce of 5 f32, sum but rank 0 called allReduce of 4 f32, sum/);
});

test('thread collective: a first dim not divisible by the world size is the shared argument error', async () => {
  const outs = await runThreadRanks<Out>(3, WORKER, { kind: 'indivisible' } satisfies RankCase);
  for (const o of outs) assert.equal(o.error, 'reduceScatter: the first dim of shape [4] is not divisible by the world size 3');
});

test('thread collective: a peer whose thread dies makes the waiting rank fail at once, naming the op and the rank', async () => {
  await assert.rejects(runThreadRanks<Out>(2, WORKER, { kind: 'die' } satisfies RankCase, { timeoutMs: 60_000 }), (e: unknown) => {
    assert.ok(e instanceof ThreadRanksError);
    assert.match(e.message, /^rank 1 of 2 failed: rank 1 fell over/);
    const r0 = e.results[0] as Out;
    assert.equal(r0.error, 'allReduce: rank 1 exited (its thread ended or threw) while rank 0 waited for it');
    assert.ok((r0.ms as number) < 10_000, `failed after ${String(r0.ms)} ms, not the 60 s timeout`);
    return true;
  });
});

test('thread collective: a peer that stalls past the timeout is named by the waiting rank, then fails itself', async () => {
  const t0 = Date.now();
  const outs = await runThreadRanks<Out>(2, WORKER, { kind: 'stall' } satisfies RankCase, { timeoutMs: 300 });
  assert.match(String(outs[0]!.error), /^allReduce: timed out after 300 ms at rank 0 waiting for rank 1 of 2 \(stuck, or not calling allReduce\)/);
  assert.equal(outs[1]!.error, 'allReduce: rank 0 failed in a collective while rank 1 waited for it');
  assert.ok(Date.now() - t0 < 10_000);
});
