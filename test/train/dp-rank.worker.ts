// One rank of the data-parallel trainer tests (test/train/data-parallel.test.ts): trains with its
// ThreadCollective and posts the log lines it saw, a digest of its weights after every step, and its
// final weights.
import { parentPort } from 'node:worker_threads';
import '../../src/backend/cpu/index.js';
import { joinThreadRank } from '../../src/dist/thread-collective.js';
import type { DeepseekV32 } from '../../src/model/model.js';
import { parseTrainConfig } from '../../src/train/config.js';
import { train } from '../../src/train/trainer.js';
import { type DpRank, type DpResult, weightDigest, weightsOf } from './dp.js';

const { collective, data } = joinThreadRank<DpRank>();
const out: DpResult = { steps: [], digests: [], weights: {}, checkpoint: null };
let model: DeepseekV32 | null = null;
const r = await train(data.stage, parseTrainConfig(data.raw), {
  collective,
  stopAfter: data.stopAfter,
  onStart: (i) => (model = i.model),
  onStep: (l) => {
    out.steps.push(l);
    out.digests.push(weightDigest(model!));
  },
});
out.weights = weightsOf(r.model);
out.checkpoint = r.checkpoint;
parentPort!.postMessage(out);
