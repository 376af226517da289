// A test double of the Engine interface (src/engine/types.ts) for rollout tests: each request's completion
// text comes from a script (a function of the request), is tokenized with the test tokenizer and streamed
// as token events with deterministic, checkable recordings:
//   logprob of the i-th token of a request  = −0.5 − 0.1 · (i mod 5)  (so the kept pair's mass is < 1)
//   sampling mask                           = {id, (id + 1) mod V} (ascending)
//   top logprobs                            = both kept ids, the other at logprob − 1
//   routed experts of a token produced by the forward at position q (= prompt length + i − 1):
//     layer l, slot j → (q + l + 3j) mod E
//   prompt routes (first token only) of row q of the request of turn t (its id ends in .t<t>):
//     layer l, slot j → (q + l + (4 + t)·j) mod E   (slot 1 tells generated, turn-0 and turn-1 rows apart)
// It records every request it was given.
import type { Engine, EngineEvent, EngineStats, GenerateRequest } from '../../src/engine/types.js';
import type { DeepSeekTokenizer } from '../../src/chat/tokenizer.js';

export const DOUBLE_ROUTES = { layers: 2, k: 2, experts: 8 };

export function doubleLogprob(i: number): number {
  return -0.5 - 0.1 * (i % 5);
}

export function doubleRoutes(q: number): Int16Array {
  const { layers, k, experts } = DOUBLE_ROUTES;
  const r = new Int16Array(layers * k);
  for (let l = 0; l < layers; l++) for (let j = 0; j < k; j++) r[l * k + j] = (q + l + 3 * j) % experts;
  return r;
}

export function doublePromptRoutes(q: number, turn: number): Int16Array {
  const { layers, k, experts } = DOUBLE_ROUTES;
  const r = new Int16Array(layers * k);
  for (let l = 0; l < layers; l++) for (let j = 0; j < k; j++) r[l * k + j] = (q + l + (4 + turn) * j) % experts;
  return r;
}

function promptRoutesOf(req: GenerateRequest): Int16Array {
  const turn = Number(/\.t(\d+)$/.exec(req.id)?.[1] ?? 0);
  const per = DOUBLE_ROUTES.layers * DOUBLE_ROUTES.k;
  const out = new Int16Array((req.promptIds.length - 1) * per);
  for (let q = 0; q + 1 < req.promptIds.length; q++) out.set(doublePromptRoutes(q, turn), q * per);
  return out;
}

export class ScriptedEngine implements Engine {
  readonly requests: GenerateRequest[] = [];
  readonly info: Engine['info'];

  constructor(
    private readonly tok: DeepSeekTokenizer,
    private readonly script: (req: GenerateRequest, prompt: string) => string,
  ) {
    this.info = { modelName: 'scripted', vocabSize: tok.vocabSize, maxModelLen: 1 << 16, eosTokenId: tok.special.eos };
  }

  async *generate(req: GenerateRequest): AsyncIterable<EngineEvent> {
    this.requests.push(req);
    const V = this.info.vocabSize;
    const ids = this.tok.encode(this.script(req, this.tok.decode(req.promptIds)));
    const stops = req.params.stopTokenIds ?? [];
    const max = req.params.maxTokens ?? Infinity;
    let n = 0;
    let reason: 'stop' | 'length' = 'length';
    for (const id of ids) {
      if (n >= max) break;
      await Promise.resolve();
      const lp = doubleLogprob(n);
      const other = (id + 1) % V;
      yield {
        type: 'token',
        requestId: req.id,
        index: 0,
        tokenId: id,
        logprob: lp,
        ...(req.params.logprobs ? { topLogprobs: [[id, lp], [other, lp - 1]] as [number, number][] } : {}),
        ...(req.params.returnSamplingMask ? { samplingMask: Int32Array.from([id, other].sort((a, b) => a - b)) } : {}),
        ...(req.params.returnRoutedExperts ? { routedExperts: doubleRoutes(req.promptIds.length + n - 1) } : {}),
        ...(req.params.returnRoutedExperts && n === 0 ? { promptRoutedExperts: promptRoutesOf(req) } : {}),
      };
      n++;
      if (stops.includes(id)) {
        reason = 'stop';
        break;
      }
    }
    if (n === ids.length && reason !== 'stop') reason = 'stop';
    yield { type: 'finish', requestId: req.id, index: 0, reason, promptTokens: req.promptIds.length, completionTokens: n };
  }

  stats(): EngineStats {
    return { waiting: 0, running: 0, preempted: 0, cacheUsage: 0, totalBlocks: 0, prefixHitTokens: 0, draftProposed: 0, draftAccepted: 0, generatedTokens: 0, deviceSampledSteps: 0 };
  }

  async drain(): Promise<void> {}
  close(): void {}
}
