// One rank of the data-parallel GRPO test (test/rl/data-parallel.test.ts): runs rlTrain with its
// ThreadCollective and posts the step logs it saw, a digest of its weights after every step, its final
// weights and the checkpoint it wrote (rank 0 only).
import { parentPort } from 'node:worker_threads';
import '../../src/backend/cpu/index.js';
import { joinThreadRank } from '../../src/dist/thread-collective.js';
import { parseRlConfig, type RlConfigInput } from '../../src/rl/config.js';
import { rlTrain, type RlStepLog } from '../../src/rl/trainer.js';
import { type DpResult, recordRank } from '../train/dp.js';

export interface RlRank {
  cfg: RlConfigInput;
  stopAfter?: number;
}

export type RlRankResult = DpResult<RlStepLog>;

const { collective, data } = joinThreadRank<RlRank>();
parentPort!.postMessage(await recordRank<RlStepLog>((hooks) => rlTrain(parseRlConfig(data.cfg), { collective, ...(data.stopAfter !== undefined ? { stopAfter: data.stopAfter } : {}), ...hooks })));
