// One rank of the tensor-parallel model tests (test/dist/tensor-parallel.test.ts): opens its share of the
// model named in its data over the thread collective and posts what the case asks for.
import { parentPort } from 'node:worker_threads';
import '../../src/backend/cpu/index.js';
import { runGolden } from '../../src/cli/golden.js';
import { joinThreadRank } from '../../src/dist/thread-collective.js';
import { DeepseekV32 } from '../../src/model/index.js';
import { fixturesDir } from '../model/golden-data.js';
import { type TpCase, tpModel } from './tensor-parallel-cases.js';
import { caught } from './thread-ranks.js';

const { collective: c, data } = joinThreadRank<TpCase>();
if (data.device === 'cuda') await import('../../src/backend/cuda/index.js');
let out: unknown;
if (data.kind === 'golden') {
  out = runGolden(fixturesDir, data.set, data.numerics, data.device, c);
} else if (data.kind === 'forward') {
  const m = tpModel(data.model, c, data.device);
  const fwd = (forced: boolean) => m.forward(data.tokens, { numerics: data.numerics, ...(forced ? { forcedTopk: data.forcedTopk, forcedRoutes: data.forcedRoutes } : {}) });
  const f = fwd(true);
  const free = fwd(false);
  out = {
    forced: f.logits!.toFloat32(),
    routes: free.routes.map((r) => (r ? (r.toHost() as Int32Array) : null)),
    topk: free.topk.map((s) => s.idx.toHost() as Int32Array),
  };
} else {
  out = {
    fp8: caught(() => DeepseekV32.load(`${fixturesDir}/tiny-fp8`, { parallel: c })),
    train: caught(() => tpModel(data.model, c).trainForward(new Int32Array(4), 1, 4)),
    state: caught(() => tpModel(data.model, c).weights.stateTensors()),
  };
}
parentPort!.postMessage(out);
