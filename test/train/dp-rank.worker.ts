// One rank of the data-parallel trainer tests (test/train/data-parallel.test.ts): trains with its
// ThreadCollective and posts the log lines it saw, a digest of its weights after every step, and its
// final weights.
import { parentPort } from 'node:worker_threads';
import '../../src/backend/cpu/index.js';
import { joinThreadRank } from '../../src/dist/thread-collective.js';
import { parseTrainConfig } from '../../src/train/config.js';
import { train } from '../../src/train/trainer.js';
import { type DpRank, recordRank } from './dp.js';

const { collective, data } = joinThreadRank<DpRank>();
parentPort!.postMessage(await recordRank((hooks) => train(data.stage, parseTrainConfig(data.raw), { collective, stopAfter: data.stopAfter, ...hooks })));
