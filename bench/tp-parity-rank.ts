// One rank of bench/tp-parity.ts: builds the same random weights, keeps its share, runs the forced and the
// free forward with the other ranks, and posts the logits (every rank holds the gathered ones) and choices.
import { parentPort } from 'node:worker_threads';
import '../src/backend/cpu/index.js';
import { joinThreadRank } from '../src/dist/thread-collective.js';
import { DeepseekV32, mapSource, randomCheckpoint, randomConfig, type Numerics, type RandomConfigOverrides, selectionIndices } from '../src/model/index.js';

export interface ParityRank {
  overrides: RandomConfigOverrides;
  seed: number;
  device: string;
  numerics: Numerics;
  tokens: number[][];
  forcedTopk: Int32Array[];
  forcedRoutes: (Int32Array | null)[];
}
export interface ParityOut {
  logits: Float32Array;
  routes: (Int32Array | null)[];
  topk: Int32Array[];
}

if (parentPort) {
  const { collective, data } = joinThreadRank<ParityRank>();
  if (data.device === 'cuda') await import('../src/backend/cuda/index.js');
  const cfg = randomConfig(data.overrides);
  const m = DeepseekV32.fromSource(cfg, mapSource(randomCheckpoint(cfg, data.seed)), { device: data.device, parallel: collective });
  const forced = m.forward(data.tokens, { numerics: data.numerics, forcedTopk: data.forcedTopk, forcedRoutes: data.forcedRoutes });
  const free = m.forward(data.tokens, { numerics: data.numerics });
  const out: ParityOut = {
    logits: forced.logits!.toFloat32(),
    routes: free.routes.map((r) => (r ? (r.toHost() as Int32Array) : null)),
    topk: free.topk.map(selectionIndices),
  };
  parentPort.postMessage(out);
}
