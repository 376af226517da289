// One rank of the data-parallel GRPO test (test/rl/data-parallel.test.ts): runs rlTrain with its
// ThreadCollective and posts the step logs it saw, a digest of its weights after every step, its final
// weights and the checkpoint it wrote (rank 0 only).
import { parentPort } from 'node:worker_threads';
import '../../src/backend/cpu/index.js';
import { joinThreadRank } from '../../src/dist/thread-collective.js';
import type { DeepseekV32 } from '../../src/model/model.js';
import { parseRlConfig, type RlConfigInput } from '../../src/rl/config.js';
import { rlTrain, type RlStepLog } from '../../src/rl/trainer.js';
import { weightDigest, weightsOf } from '../train/dp.js';

export interface RlRank {
  cfg: RlConfigInput;
  stopAfter?: number;
}

export interface RlRankResult {
  steps: RlStepLog[];
  digests: string[];
  weights: Record<string, Float64Array>;
  checkpoint: string | null;
}

const { collective, data } = joinThreadRank<RlRank>();
const out: RlRankResult = { steps: [], digests: [], weights: {}, checkpoint: null };
let model: DeepseekV32 | null = null;
const r = await rlTrain(parseRlConfig(data.cfg), {
  collective,
  ...(data.stopAfter !== undefined ? { stopAfter: data.stopAfter } : {}),
  onStart: (i) => (model = i.model),
  onStep: (l) => {
    out.steps.push(l);
    out.digests.push(weightDigest(model!));
  },
});
out.weights = weightsOf(r.model);
out.checkpoint = r.checkpoint;
parentPort!.postMessage(out);
