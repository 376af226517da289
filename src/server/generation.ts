// Drives one request through the engine and turns its token events into per-choice text steps. Shared
// by both endpoints: the chat endpoint feeds the released text to its parser, the completions endpoint
// sends it as is.
//
// Per choice: tokens → incremental detokenizer → stop-string trimmer → released text. A stop token (EOS,
// stop_token_ids) stays in token_ids but adds no text, as the engine contract says. When every choice
// has met a stop string, the request is aborted in the engine (it would otherwise run to max_tokens if
// it did not see the stop string the way the trimmer does); the choices keep finish_reason "stop".
import type { Engine, EngineEvent, FinishEvent, FinishReason, SamplingParams, TokenEvent } from '../engine/types.js';
import type { TextCodec } from './codec.js';
import { IncrementalDetokenizer } from './detokenizer.js';
import type { ServerMetrics } from './metrics.js';
import { StopTrimmer } from './stop.js';

export interface ChoiceStep {
  index: number;
  /** text released by this step (possibly '') */
  text: string;
  /** the token events of this step (one, or none for a finish step) */
  tokens: TokenEvent[];
  /** set on the step that ends the choice */
  finish?: { reason: FinishReason; stoppedBy?: string | number };
}

interface Choice {
  detok: IncrementalDetokenizer | null;
  stop: StopTrimmer;
  done: boolean;
  lastTokenAt: number;
  tokens: number;
}

export interface GenerationResult {
  promptTokens: number;
  completionTokens: number;
}

export interface GenerationInput {
  engine: Engine;
  codec: TextCodec | null;
  /** where TTFT, TPOT and token counts go (none for the terminal chat) */
  metrics?: ServerMetrics;
  requestId: string;
  promptIds: readonly number[];
  params: Partial<SamplingParams>;
  skipSpecialTokens: boolean;
  /** client-side abort (disconnect) */
  signal: AbortSignal;
  /** when the HTTP request arrived (ms, performance.now) */
  arrivedAt: number;
}

/**
 * Start the request; resolves once the engine produced its first event (so request errors the engine
 * raises at admission surface before any response is sent), then yields steps.
 */
export async function startGeneration(input: GenerationInput): Promise<{ steps: AsyncGenerator<ChoiceStep, GenerationResult>; abort: () => void }> {
  const { engine, params } = input;
  const local = new AbortController();
  const onAbort = () => local.abort(input.signal.reason);
  if (input.signal.aborted) local.abort(input.signal.reason);
  else input.signal.addEventListener('abort', onAbort, { once: true });
  let it: AsyncIterator<EngineEvent>;
  let first: IteratorResult<EngineEvent>;
  try {
    // An engine may reject the request at once (generate throws) or on the first step.
    it = engine.generate({ id: input.requestId, promptIds: input.promptIds, params }, local.signal)[Symbol.asyncIterator]();
    first = await it.next();
  } catch (e) {
    input.signal.removeEventListener('abort', onAbort);
    throw e;
  }
  const cleanup = () => input.signal.removeEventListener('abort', onAbort);
  return { steps: steps(input, it, first, local, cleanup), abort: () => local.abort(new Error('aborted by the server')) };
}

async function* steps(
  input: GenerationInput,
  it: AsyncIterator<EngineEvent>,
  first: IteratorResult<EngineEvent>,
  local: AbortController,
  cleanup: () => void,
): AsyncGenerator<ChoiceStep, GenerationResult> {
  const { codec, params, metrics } = input;
  const n = params.n ?? 1;
  const stopIds = new Set<number>(params.stopTokenIds ?? []);
  const eos = input.engine.info.eosTokenId;
  if (eos !== null && !params.ignoreEos) stopIds.add(eos);
  const choices: Choice[] = Array.from({ length: n }, () => ({
    detok: codec ? new IncrementalDetokenizer(codec, input.skipSpecialTokens) : null,
    stop: new StopTrimmer(params.stop ?? []),
    done: false,
    lastTokenAt: 0,
    tokens: 0,
  }));
  let firstToken = true;
  let promptTokens = input.promptIds.length;
  // completion tokens per choice: the engine's count from its finish event, else the tokens seen
  const counted: (number | undefined)[] = new Array(n).fill(undefined);
  let finished = 0;
  try {
    for (let r = first; !r.done; r = await it.next()) {
      const ev = r.value;
      const c = choices[ev.index];
      if (!c) throw new Error(`engine event for choice ${ev.index} of a request with n=${n}`);
      if (ev.type === 'token') {
        const now = performance.now();
        if (firstToken) {
          metrics?.ttft.observe((now - input.arrivedAt) / 1000);
          firstToken = false;
        }
        if (c.tokens > 0) metrics?.tpot.observe((now - c.lastTokenAt) / 1000);
        c.lastTokenAt = now;
        c.tokens++;
        metrics?.tokenGenerated();
        if (c.done) continue;
        const raw = c.detok && !stopIds.has(ev.tokenId) ? c.detok.push(ev.tokenId) : '';
        const text = c.stop.push(raw);
        if (c.stop.done) {
          c.done = true;
          finished++;
          yield { index: ev.index, text, tokens: [ev], finish: { reason: 'stop' } };
          if (finished === n) local.abort(new Error('every choice met a stop string'));
        } else yield { index: ev.index, text, tokens: [ev] };
      } else {
        promptTokens = ev.promptTokens;
        counted[ev.index] = ev.completionTokens;
        if (c.done) continue;
        c.done = true;
        finished++;
        yield finishStep(c, ev);
      }
    }
  } finally {
    cleanup();
    if (!choices.every((c) => c.done)) local.abort(new Error('response ended early'));
    // Release the engine's iterator too (a generator-based engine runs its cleanup on return).
    await it.return?.();
  }
  const completionTokens = choices.reduce((s, c, i) => s + (counted[i] ?? c.tokens), 0);
  return { promptTokens, completionTokens };
}

function finishStep(c: Choice, ev: FinishEvent): ChoiceStep {
  let text = c.stop.push(c.detok ? c.detok.flush() : '');
  const stoppedByString = c.stop.done;
  text += c.stop.flush();
  const finish: ChoiceStep['finish'] = { reason: stoppedByString ? 'stop' : ev.reason };
  if (ev.stoppedBy !== undefined) finish.stoppedBy = ev.stoppedBy;
  return { index: ev.index, text, tokens: [], finish };
}

/**
 * Interleave several generations (a batch of prompts) in the order their steps become ready; returns
 * each one's result in input order.
 */
export async function* mergeGenerations<T, R>(gens: AsyncGenerator<T, R>[], abortAll: () => void): AsyncGenerator<{ source: number; value: T }, R[]> {
  const results: R[] = new Array(gens.length);
  // Settled, never rejected: a generation that fails while another is awaited must not become an
  // unhandled rejection; its error is rethrown when its turn comes.
  type Next = { i: number; r: IteratorResult<T, R>; error?: undefined } | { i: number; r?: undefined; error: unknown };
  const next = (i: number): Promise<Next> => gens[i]!.next().then((r) => ({ i, r }), (error: unknown) => ({ i, error }));
  const pending = new Map<number, Promise<Next>>();
  gens.forEach((_, i) => pending.set(i, next(i)));
  try {
    while (pending.size) {
      const { i, r, error } = await Promise.race(pending.values());
      if (!r) {
        pending.delete(i);
        throw error;
      }
      if (r.done) {
        results[i] = r.value;
        pending.delete(i);
      } else {
        pending.set(i, next(i));
        yield { source: i, value: r.value };
      }
    }
  } finally {
    // An early exit (client gone, one generation failed) aborts the others' engine requests first, so
    // their pending steps settle and `return` can run.
    if (pending.size) abortAll();
    await Promise.all(gens.map((g) => g.return(undefined as R).catch(() => undefined)));
  }
  return results;
}
