// A test double of the Engine contract (src/engine/types.ts) for the server's HTTP tests: each request's
// completion is a scripted text (a function of the prompt ids and the choice index), tokenized with the
// real tokenizer and emitted token by token with deterministic per-token data, so the tests can check
// exactly what the server makes of it. It honours maxTokens, n, stop token ids / EOS, the abort signal
// (recording which requests were aborted) and drain/close; `waiting` requests are those not yet started.
import type { Engine, EngineEvent, EngineStats, GenerateRequest, SamplingParams } from '../../src/engine/types.js';
import { EngineRequestError } from '../../src/engine/types.js';
import type { DeepSeekTokenizer } from '../../src/chat/tokenizer.js';

export interface ScriptedEngineOptions {
  tokenizer: DeepSeekTokenizer | null;
  /** the completion for one choice: text (tokenized) or token ids */
  script: (promptIds: readonly number[], index: number) => string | number[];
  /** delay before each token, ms (default 0: one macrotask per token) */
  delayMs?: number;
  /** delay before a request starts (admission), ms */
  startDelayMs?: number;
  /** how many requests run at once; later ones wait */
  maxRunning?: number;
  routeShape?: { layers: number; k: number };
  vocabSize?: number;
  maxModelLen?: number;
  /** throw (an engine fault) after this many steps of a request whose prompt this returns a number for */
  failAfter?: (promptIds: readonly number[]) => number | undefined;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The deterministic logprob the double reports for token `id` at `step`. */
export function scriptedLogprob(id: number, step: number): number {
  return -((id % 97) + step) / 100;
}

export class ScriptedEngine implements Engine {
  readonly info: Engine['info'];
  readonly requests: GenerateRequest[] = [];
  readonly aborted: string[] = [];
  readonly finished: string[] = [];
  private running = 0;
  private waiting = 0;
  private generated = 0;
  private draining = false;
  private closed = false;
  private readonly slots: (() => void)[] = [];

  constructor(private readonly opts: ScriptedEngineOptions) {
    this.info = { modelName: 'scripted', vocabSize: opts.vocabSize ?? 129280, maxModelLen: opts.maxModelLen ?? 4096, eosTokenId: 1 };
  }

  stats(): EngineStats {
    return { waiting: this.waiting, running: this.running, preempted: 0, cacheUsage: this.running / 100, totalBlocks: 100, prefixHitTokens: 0, draftProposed: 0, draftAccepted: 0, generatedTokens: this.generated, deviceSampledSteps: 0 };
  }

  async drain(): Promise<void> {
    this.draining = true;
    while (this.running || this.waiting) await sleep(5);
  }

  close(): void {
    this.closed = true;
  }

  async *generate(req: GenerateRequest, signal?: AbortSignal): AsyncIterable<EngineEvent> {
    if (this.draining || this.closed) throw new EngineRequestError('the engine is draining', 'request');
    if (req.promptIds.length === 0) throw new EngineRequestError('promptIds is empty', 'prompt');
    if (req.promptIds.length > this.info.maxModelLen) throw new EngineRequestError('prompt too long', 'prompt');
    this.requests.push(req);
    const p: SamplingParams = {
      temperature: 1, topP: 1, topK: 0, minP: 0, maxTokens: 16, stop: [], stopTokenIds: [], ignoreEos: false, n: 1, logprobs: 0,
      returnSamplingMask: false, returnRoutedExperts: false, returnIndexerTopk: false, ...req.params,
    };
    this.waiting++;
    try {
      if (this.opts.startDelayMs) await sleep(this.opts.startDelayMs);
      while (this.opts.maxRunning && this.running >= this.opts.maxRunning) await new Promise<void>((r) => this.slots.push(r));
    } finally {
      this.waiting--;
    }
    this.running++;
    try {
      const streams = Array.from({ length: p.n }, (_, i) => {
        const s = this.opts.script(req.promptIds, i);
        const ids = typeof s === 'string' ? this.opts.tokenizer!.encode(s) : [...s];
        return [...ids, this.info.eosTokenId!];
      });
      const pos = new Array<number>(p.n).fill(0);
      const done = new Array<boolean>(p.n).fill(false);
      let left = p.n;
      const failAt = this.opts.failAfter?.(req.promptIds);
      let steps = 0;
      // Round-robin over the choices, one token each per step, as a batched engine interleaves them.
      while (left > 0) {
        await sleep(this.opts.delayMs ?? 0);
        if (failAt !== undefined && steps++ >= failAt) throw new Error('scripted engine fault');
        if (signal?.aborted) {
          this.aborted.push(req.id);
          for (let i = 0; i < p.n; i++) if (!done[i]) yield { type: 'finish', requestId: req.id, index: i, reason: 'abort', promptTokens: req.promptIds.length, completionTokens: pos[i]! };
          return;
        }
        for (let i = 0; i < p.n; i++) {
          if (done[i]) continue;
          const id = streams[i]![pos[i]!]!;
          const step = pos[i]!++;
          this.generated++;
          const top: [number, number][] = Array.from({ length: p.logprobs }, (_, j) => [id + j, scriptedLogprob(id + j, step) - j]);
          yield {
            type: 'token',
            requestId: req.id,
            index: i,
            tokenId: id,
            logprob: scriptedLogprob(id, step),
            ...(p.logprobs ? { topLogprobs: top } : {}),
            ...(p.returnSamplingMask ? { samplingMask: Int32Array.from(new Set([Math.max(0, id - 1), id, id + 1])).sort() } : {}),
            ...(p.returnRoutedExperts ? { routedExperts: this.routes(id) } : {}),
            ...(p.returnIndexerTopk ? { indexerTopk: [Int32Array.from([0, step]), Int32Array.from([step, -1])] } : {}),
          };
          const isStop = (id === this.info.eosTokenId && !p.ignoreEos) || p.stopTokenIds.includes(id);
          if (isStop || pos[i]! >= p.maxTokens || pos[i]! >= streams[i]!.length) {
            done[i] = true;
            left--;
            yield {
              type: 'finish', requestId: req.id, index: i, reason: isStop ? 'stop' : 'length', promptTokens: req.promptIds.length, completionTokens: pos[i]!,
              ...(isStop ? { stoppedBy: id } : {}),
            };
          }
        }
      }
      this.finished.push(req.id);
    } finally {
      this.running--;
      this.slots.shift()?.();
    }
  }

  /** Experts of token `id`: layer l routes to (id + l + j) mod 8, j < k, ascending. */
  routes(id: number): Int16Array {
    const { layers, k } = this.opts.routeShape ?? { layers: 2, k: 2 };
    const r = new Int16Array(layers * k);
    for (let l = 0; l < layers; l++) {
      const row = Array.from({ length: k }, (_, j) => (id + l + j) % 8).sort((a, b) => a - b);
      r.set(row, l * k);
    }
    return r;
  }
}
