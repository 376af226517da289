// One thread rank of `dsv32 golden --tensor-parallel N` (src/cli/golden.ts): runs the golden checks on its
// share of the fixture's weights, in step with the other ranks, and posts its rows.
import { parentPort } from 'node:worker_threads';
import '../backend/cpu/index.js';
import { joinThreadRank } from '../dist/thread-collective.js';
import { runGolden } from './golden.js';

export interface GoldenRankData {
  fixturesDir: string;
  fixture: 'tiny-f32' | 'tiny-bf16' | 'tiny-fp8';
  numerics: 'f32' | 'bf16';
  device: string;
}

const { collective, data } = joinThreadRank<GoldenRankData>();
parentPort!.postMessage(runGolden(data.fixturesDir, data.fixture, data.numerics, data.device, collective));
