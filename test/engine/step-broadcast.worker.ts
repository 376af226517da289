// One rank of the step-broadcast tests (step-broadcast.test.ts): rank 0 drives (an engine over a
// BroadcastModel, or raw broadcasts), the others follow; each posts what it saw (errors as messages).
import { parentPort } from 'node:worker_threads';
import '../../src/backend/cpu/index.js';
import { joinThreadRank } from '../../src/dist/thread-collective.js';
import { LLMEngine } from '../../src/engine/engine.js';
import { BroadcastModel, followSteps, HEADER_WORDS, MAGIC, Cmd, type StepModel } from '../../src/engine/step-broadcast.js';
import type { CachePool } from '../../src/model/cache.js';
import { DeepseekV32, mapSource, randomCheckpoint } from '../../src/model/index.js';
import { fromArray } from '../../src/tensor/tensor.js';
import { collect } from './collect.js';
import { cfg, SEED, requests, type Generated, type RankCase } from './step-broadcast-cases.js';
import { caught } from '../dist/thread-ranks.js';

const { collective: c, data } = joinThreadRank<RankCase>();
// every rank holds its share of the weights (tensor + expert parallel): a step all-reduces inside, so a
// follower that missed or garbled a step would also change what rank 0 computes
const model = DeepseekV32.fromSource(cfg, mapSource(randomCheckpoint(cfg, SEED)), { parallel: c });
const bcast = (words: number[]): void => c.broadcast(fromArray(Int32Array.from(words), [words.length], { dtype: 'i32' }), 0);

/** the model, keeping each step's logits (so the test can see that the follower computed rank 0's steps) */
const stepLogits: number[][] = [];
const recording: StepModel<CachePool> = {
  cfg: model.cfg,
  device: model.device,
  newPool: (o) => model.newPool(o),
  step: (b, p, o) => {
    // 'step-error': every rank's step 2 fails before the model runs (an error all ranks raise alike)
    if (data.kind === 'step-error' && stepLogits.length === 2) {
      stepLogits.push([]);
      throw new Error('injected failure of step 2');
    }
    const r = model.step(b, p, o);
    stepLogits.push(r.logits ? Array.from(r.logits.toFloat32()) : []);
    return r;
  },
};

const out: Record<string, unknown> = {};
out.sharded = model.tp.sharded;
if (c.rank !== 0) {
  if (data.kind === 'engine' || data.kind === 'close' || data.kind === 'step-error') {
    const failed: string[] = [];
    out.summary = await followSteps(recording, c, { onStepError: (e, step) => void failed.push(`${step}: ${(e as Error).message}`) });
    out.failed = failed;
    out.stepLogits = stepLogits;
  } else {
    out.error = await followSteps(model, c, { onStepError: () => {} }).then(() => '', (e: Error) => e.message);
  }
} else if (data.kind === 'engine') {
  const bm = new BroadcastModel(recording, c);
  const e = new LLMEngine(bm, { numBlocks: 16, maxBatchTokens: 32, maxNumSeqs: 4 });
  const results = await Promise.all(requests.map((r) => collect(e.generate(r))));
  const gen: Generated[] = [];
  results.forEach((r, i) => r.finish.forEach((f, index) => gen.push({
    id: requests[i]!.id, index, tokens: r.tokens[index] ?? [], logprobs: (r.events[index] ?? []).map((ev) => ev.logprob), finish: f.reason, completionTokens: f.completionTokens,
  })));
  await e.drain();
  e.close();
  bm.close();
  bm.close();
  out.generated = gen;
  out.stepLogits = stepLogits;
  out.afterClose = caught(() => bm.newPool({ blocks: 2 }));
} else if (data.kind === 'step-error') {
  const bm = new BroadcastModel(recording, c);
  const e = new LLMEngine(bm, { numBlocks: 16, maxBatchTokens: 32, maxNumSeqs: 4 });
  const run = (r: (typeof requests)[number]) => collect(e.generate(r)).then((x) => `${r.id}: ${x.tokens[0]?.length ?? 0} tokens`, (err: Error) => `${r.id}: ${err.message}`);
  // 'a' alone: its prefill is step 0, its decodes 1.. (step 2 fails it); then 'b' runs on
  out.first = await run(requests[0]!);
  out.second = await run(requests[1]!);
  await e.drain();
  e.close();
  bm.close();
} else if (data.kind === 'close') {
  const bm = new BroadcastModel(model, c);
  bm.newPool({ blocks: 3, format: 'bf16' });
  bm.close();
  bm.close();
} else if (data.kind === 'garbage-header') {
  bcast([1, 2, 3, 4]);
} else if (data.kind === 'garbage-payload') {
  // a STEP whose chunk claims more blocks than the payload holds
  const payload = [2, 1, -1, 0, 0, 0, 0, 0, 5, 6, 0, 2, 0, 9];
  bcast([MAGIC, Cmd.STEP, payload.length, 0]);
  bcast(payload);
} else {
  // the first command carries sequence number 1: one was lost on the way
  bcast([MAGIC, Cmd.STOP, 0, 1].slice(0, HEADER_WORDS));
}
parentPort!.postMessage(out);
