// RL rollouts (issue 14; DeepSeek-V3.2 §3.2, ../shared/docs/rl.md §1.4–1.7): G episodes per task, each a
// multi-turn tool-use episode of the agent runtime (src/agent/loop.ts runAgent, with the environment's tools
// bound to an Episode exactly as `dsv32 eval` attempts run: src/envs/eval/attempt.ts), sampled token by
// token from the policy through a TokenSampler (the in-process Engine, or `dsv32 serve` over HTTP), and
// recorded as RolloutRecords (src/rl/batch.ts) for the loss.
//
// Token-in, token-out. The policy must be trained on exactly the tokens it saw and produced, so the rollout
// keeps each episode's token sequence itself instead of re-tokenizing the conversation at every turn (a BPE
// re-encoding of generated text need not give back the sampled ids). Before each model call the agent's
// conversation is rendered by the chat encoder (src/agent/prompt.ts deepseekPrompt: tools on the system
// message, the V3.2 drop-thinking rule) and compared with the text of the current sequence:
//   - the rendering extends the sequence's text (the usual case while only tool results are appended: the
//     encoder keeps reasoning across tool calls, and a well-formed completion renders back byte-exactly):
//     only the new suffix (`<｜end▁of▁sentence｜>` if the sampler stopped before it, the
//     `<function_results>` block, the `<think>` that opens the next turn) is tokenized and appended, masked
//     out of the loss;
//   - it does not (a new user message made the encoder drop earlier reasoning — the V3.2 context rule,
//     rl.md §1.7 —, a context strategy compacted the history, or a malformed completion renders differently
//     from what was sampled): the current sequence is closed and a new one starts from the full rendering.
//     Each sequence is its own training record; all of an episode's records carry the episode's reward.
// So the drop-thinking rule is the encoder's, not re-implemented here, and every trained token was sampled in
// exactly the context its record holds.
//
// Recorded per sampled token (batch.ts describes the alignment): the token id, trained = 1, the engine's
// sampling logprob, the kept set of the sampling filters (Keep Sampling Mask, CSR), log of the kept
// probability mass when derivable, and the MoE routes (int16, Keep Routing) of the forward that produced it.
// Everything else (prompt, tool outputs, re-rendered history) is trained = 0, but still has routes: each turn's
// request also returns the routes of its prompt rows (the engine's promptRoutedExperts, the server's
// prompt_routed_experts), and a later turn's prompt holds every earlier position, tool outputs included. So
// position p's routes are those of the token p + 1 when that token was sampled (the forward whose logits
// π_old is), else the latest turn's prompt row p; only the sequence's last position has none (no forward
// consumed it), and Keep Routing can force routes at every position the trainer's forward computes.
// With `indexer` (use_indexer_replay) the indexer's key selections are recorded by exactly the same rule
// (each token's indexerTopk, each turn's promptIndexerTopk; indexer-replay.ts), i32 with −1 holes.
import type { ThinkingMode, ToolDefinition } from '../chat/message.js';
import { ChatParseError } from '../chat/errors.js';
import { parseCompletion } from '../chat/parse-strict.js';
import { parseCompletionLenient } from '../chat/parse-lenient.js';
import { type AgentResult, runAgent } from '../agent/loop.js';
import { type AgentAssistantMessage, type AgentMessage, type ModelClient, type ModelRequest, type ModelResponse, newToolCallId } from '../agent/messages.js';
import { deepseekPrompt } from '../agent/prompt.js';
import { type RetryPolicy, checkRetryPolicy, postJson, retryPolicyOf } from '../agent/http.js';
import type { Engine, FinishReason, GenerateRequest } from '../engine/types.js';
import { Episode, type Verdict } from '../envs/episode.js';
import type { Environment } from '../envs/load.js';
import { episodeTools, policySystemPrompt } from '../envs/eval/attempt.js';
import { DsvError } from '../errors.js';
import type { RolloutRecord } from './batch.js';
import type { RecordedRoutes } from './keep-routing.js';
import { type IndexerShape, type RecordedSelections, packSelection } from './indexer-replay.js';
import { type GenerativeRewardModel, type RewardBreakdown, type RewardConfig, type RewardTurn, computeReward } from './rewards.js';

export class RolloutError extends DsvError {}

// ------------------------------------------------------------------------------------------ samplers

export interface RolloutSampling {
  /** τ > 0: RL samples from the policy (greedy decoding is not a policy with logprobs to train) */
  temperature: number;
  topP: number;
  topK: number;
  minP: number;
  /** new tokens per model turn */
  maxTokens: number;
}

export interface SampleRequest {
  id: string;
  promptIds: readonly number[];
  sampling: RolloutSampling;
  stopTokenIds: readonly number[];
  /** top logprobs to ask for (to derive the kept probability mass; 0 = none) */
  topLogprobs: number;
  routes: boolean;
  /** ask for the indexer's selections (prompt rows and tokens), packed to this shape */
  indexer?: IndexerShape;
  seed?: number;
  signal?: AbortSignal;
}

/** One sampled token with what the sampler recorded about it. */
export interface SampledToken {
  id: number;
  /** log π_old(id) over the full vocabulary at the sampling temperature */
  logprob: number;
  /** ascending ids the sampling filters kept */
  mask: Int32Array;
  /** [id, logprob] of the most likely tokens, when asked for */
  top?: readonly (readonly [number, number])[];
  /** int16 [moeLayers · k] routes of the forward that produced this token, when asked for */
  routes?: Int16Array;
  /** i32 [layers · index_topk] indexer selection of the same forward (−1 holes), when asked for */
  indexerTopk?: Int32Array;
}

export interface SampledTurn {
  tokens: SampledToken[];
  /** int16 [(promptLen − 1) · moeLayers · k]: the routes of the prompt rows 0 .. promptLen − 2 (row p produced prompt token p + 1), when asked for */
  promptRoutes?: Int16Array;
  /** i32 [(promptLen − 1) · layers · index_topk]: the prompt rows' indexer selections (−1 holes), when asked for */
  promptIndexerTopk?: Int32Array;
  finishReason: FinishReason;
}

/** Where rollouts get tokens from: the in-process engine or `dsv32 serve` (the same records either way). */
export interface TokenSampler {
  readonly description: string;
  sample(req: SampleRequest): Promise<SampledTurn>;
}

/** The in-process engine (src/engine/types.ts Engine): one request per model turn, n = 1. */
export class EngineSampler implements TokenSampler {
  readonly description: string;
  constructor(private readonly engine: Engine) {
    this.description = `engine ${engine.info.modelName}`;
  }

  async sample(req: SampleRequest): Promise<SampledTurn> {
    const g: GenerateRequest = {
      id: req.id,
      promptIds: req.promptIds,
      params: {
        temperature: req.sampling.temperature,
        topP: req.sampling.topP,
        topK: req.sampling.topK,
        minP: req.sampling.minP,
        maxTokens: req.sampling.maxTokens,
        stop: [],
        stopTokenIds: [...req.stopTokenIds],
        ignoreEos: false,
        n: 1,
        logprobs: req.topLogprobs,
        returnSamplingMask: true,
        returnRoutedExperts: req.routes,
        returnIndexerTopk: !!req.indexer,
        ...(req.seed !== undefined ? { seed: req.seed } : {}),
      },
    };
    const tokens: SampledToken[] = [];
    let finishReason: FinishReason | undefined;
    let promptRoutes: Int16Array | undefined;
    let promptIndexerTopk: Int32Array | undefined;
    const ix = req.indexer;
    for await (const ev of this.engine.generate(g, req.signal)) {
      if (ev.requestId !== req.id || ev.index !== 0) throw new RolloutError(`engine: event for request ${ev.requestId}#${ev.index}, expected ${req.id}#0`);
      if (ev.type === 'finish') {
        finishReason = ev.reason;
        continue;
      }
      if (!ev.samplingMask) throw new RolloutError(`engine: token ${tokens.length} of ${req.id} came without samplingMask although returnSamplingMask was asked`);
      if (req.routes && !ev.routedExperts) throw new RolloutError(`engine: token ${tokens.length} of ${req.id} came without routedExperts although returnRoutedExperts was asked`);
      if (req.routes && tokens.length === 0) {
        if (!ev.promptRoutedExperts) throw new RolloutError(`engine: the first token of ${req.id} came without promptRoutedExperts although returnRoutedExperts was asked`);
        promptRoutes = ev.promptRoutedExperts;
      }
      if (ix && !ev.indexerTopk) throw new RolloutError(`engine: token ${tokens.length} of ${req.id} came without indexerTopk although returnIndexerTopk was asked`);
      if (ix && tokens.length === 0) {
        if (!ev.promptIndexerTopk) throw new RolloutError(`engine: the first token of ${req.id} came without promptIndexerTopk although returnIndexerTopk was asked`);
        promptIndexerTopk = ev.promptIndexerTopk;
      }
      tokens.push({
        id: ev.tokenId,
        logprob: ev.logprob,
        mask: ev.samplingMask,
        ...(ev.topLogprobs ? { top: ev.topLogprobs } : {}),
        ...(req.routes ? { routes: ev.routedExperts! } : {}),
        ...(ix ? { indexerTopk: packSelection(ev.indexerTopk!, ix, `engine: token ${tokens.length} of ${req.id}`) } : {}),
      });
    }
    if (!finishReason) throw new RolloutError(`engine: request ${req.id} ended without a finish event`);
    return { tokens, finishReason, ...(promptRoutes ? { promptRoutes } : {}), ...(promptIndexerTopk ? { promptIndexerTopk } : {}) };
  }
}

export interface HttpSamplerOptions extends RetryPolicy {
  /** base URL with the version prefix, e.g. http://127.0.0.1:8000/v1 */
  baseUrl: string;
  model: string;
  apiKey?: string;
  /**
   * The text the server shows for one token id (the rollout tokenizer's decode([id]), as the server's
   * codec does). The legacy completions logprobs key top_logprobs by token text, not id; with it the kept
   * ids' texts are matched back to their logprobs (when no two kept ids share a text) and the kept mass
   * can be derived. Without it the kept mass of filtered tokens is unknown (NaN).
   */
  tokenText?: (id: number) => string;
}

interface WireChoice {
  token_ids?: unknown;
  finish_reason?: unknown;
  logprobs?: { token_logprobs?: unknown; top_logprobs?: unknown } | null;
  sampling_mask?: unknown;
  routed_experts?: unknown;
  prompt_routed_experts?: unknown;
  indexer_topk?: unknown;
  prompt_indexer_topk?: unknown;
}

/**
 * `dsv32 serve` over HTTP (src/server, README there): POST {baseUrl}/completions, not streamed, with the
 * prompt as token ids and the RL extensions (return_token_ids, logprobs, return_sampling_mask,
 * return_routed_experts). Read from choices[0]: token_ids [n], logprobs.token_logprobs [n],
 * logprobs.top_logprobs [n] of {token text: logprob}, sampling_mask [n][kept ids], routed_experts
 * [n][MoE layer][k] (or [n][layers·k] when the server does not know the shape), prompt_routed_experts
 * [prompt length − 1][MoE layer][k] (the same fallback), finish_reason. Time-outs
 * and retries are the agent runtime's (src/agent/http.ts postJson).
 */
export class HttpSampler implements TokenSampler {
  readonly description: string;
  private readonly url: string;
  constructor(private readonly opts: HttpSamplerOptions) {
    let base: URL;
    try {
      base = new URL(opts.baseUrl);
    } catch {
      throw new RolloutError(`rollout server baseUrl ${JSON.stringify(opts.baseUrl)}: not a valid URL (expected e.g. http://127.0.0.1:8000/v1)`);
    }
    checkRetryPolicy(opts);
    this.url = base.href.replace(/\/+$/, '') + '/completions';
    this.description = `http ${this.url} model=${opts.model}`;
  }

  async sample(req: SampleRequest): Promise<SampledTurn> {
    const s = req.sampling;
    const body = {
      model: this.opts.model,
      prompt: [...req.promptIds],
      max_tokens: s.maxTokens,
      temperature: s.temperature,
      top_p: s.topP,
      top_k: s.topK,
      min_p: s.minP,
      stop_token_ids: [...req.stopTokenIds],
      skip_special_tokens: false,
      stream: false,
      n: 1,
      logprobs: req.topLogprobs,
      return_token_ids: true,
      return_sampling_mask: true,
      return_routed_experts: req.routes,
      // top logprobs keyed by id, not text: the kept mass is then exact (vLLM's flag; older servers ignore it)
      return_tokens_as_token_ids: true,
      ...(req.indexer ? { return_indexer_topk: true } : {}),
      ...(req.seed !== undefined ? { seed: req.seed } : {}),
    };
    const res = await postJson(this.url, body, { ...retryPolicyOf(this.opts), apiKey: this.opts.apiKey, signal: req.signal });
    let data: { choices?: WireChoice[] };
    try {
      data = (await res.json()) as { choices?: WireChoice[] };
    } catch (e) {
      throw new RolloutError(`POST ${this.url}: response is not JSON (${(e as Error).message})`);
    }
    return this.read(data.choices?.[0], req);
  }

  private read(c: WireChoice | undefined, req: SampleRequest): SampledTurn {
    const bad = (field: string, want: string) => new RolloutError(`POST ${this.url}: choices[0].${field} ${want}`);
    if (!c) throw bad('', 'is missing');
    const ids = c.token_ids;
    if (!Array.isArray(ids) || !ids.every((t) => Number.isInteger(t))) throw bad('token_ids', 'must be an array of token ids (ask with return_token_ids)');
    const n = ids.length;
    const lps = c.logprobs?.token_logprobs;
    if (!Array.isArray(lps) || lps.length !== n || !lps.every((x) => typeof x === 'number')) throw bad('logprobs.token_logprobs', `must be ${n} numbers`);
    const masks = c.sampling_mask;
    if (!Array.isArray(masks) || masks.length !== n) throw bad('sampling_mask', `must be ${n} lists of kept token ids`);
    const routes = c.routed_experts;
    if (req.routes && (!Array.isArray(routes) || routes.length !== n)) throw bad('routed_experts', `must be ${n} lists of expert ids`);
    let promptRoutes: Int16Array | undefined;
    if (req.routes && n > 0) {
      const pr = c.prompt_routed_experts;
      const P = req.promptIds.length;
      if (!Array.isArray(pr) || pr.length !== P - 1) throw bad('prompt_routed_experts', `must be ${P - 1} lists of expert ids (one per prompt position but the last)`);
      promptRoutes = Int16Array.from(pr.flatMap((r: unknown, p: number) => {
        if (!Array.isArray(r)) throw bad(`prompt_routed_experts[${p}]`, 'must be a list of expert ids per MoE layer');
        return (r as unknown[]).flat() as number[];
      }));
    }
    // indexer selections: [n][layer][positions] per token, [P − 1][layer][positions] for the prompt rows
    const ix = req.indexer;
    const sel = c.indexer_topk;
    if (ix && (!Array.isArray(sel) || sel.length !== n)) throw bad('indexer_topk', `must be ${n} lists of per-layer key positions`);
    const pack = (v: unknown, field: string): Int32Array => {
      if (!Array.isArray(v) || !v.every((l) => Array.isArray(l))) throw bad(field, 'must be a list of key positions per layer');
      return packSelection(v as number[][], ix!, `POST ${this.url}: choices[0].${field}`);
    };
    let promptIndexerTopk: Int32Array | undefined;
    if (ix && n > 0) {
      const pt = c.prompt_indexer_topk;
      const P = req.promptIds.length;
      if (!Array.isArray(pt) || pt.length !== P - 1) throw bad('prompt_indexer_topk', `must be ${P - 1} lists (one per prompt position but the last)`);
      promptIndexerTopk = new Int32Array((P - 1) * ix.layers * ix.topk);
      pt.forEach((r: unknown, p: number) => promptIndexerTopk!.set(pack(r, `prompt_indexer_topk[${p}]`), p * ix.layers * ix.topk));
    }
    const tops = c.logprobs?.top_logprobs;
    const fr = c.finish_reason;
    if (fr !== 'stop' && fr !== 'length' && fr !== 'abort') throw bad('finish_reason', `must be stop, length or abort, got ${JSON.stringify(fr)}`);
    const tokens: SampledToken[] = ids.map((id: number, i: number) => {
      const m = masks[i];
      if (!Array.isArray(m)) throw bad(`sampling_mask[${i}]`, 'must be a list of token ids');
      const t: SampledToken = { id, logprob: lps[i] as number, mask: Int32Array.from(m as number[]) };
      const top = Array.isArray(tops) ? (tops[i] as Record<string, number> | null | undefined) : undefined;
      if (top && typeof top === 'object') {
        const kept = this.keptTop(t.mask, top);
        if (kept) t.top = kept;
      }
      if (req.routes) {
        const r = (routes as unknown[])[i];
        if (!Array.isArray(r)) throw bad(`routed_experts[${i}]`, 'must be a list of expert ids per MoE layer');
        t.routes = Int16Array.from((r as unknown[]).flat() as number[]);
      }
      if (ix) t.indexerTopk = pack((sel as unknown[])[i], `indexer_topk[${i}]`);
      return t;
    });
    return { tokens, finishReason: fr, ...(promptRoutes ? { promptRoutes } : {}), ...(promptIndexerTopk ? { promptIndexerTopk } : {}) };
  }

  /**
   * The kept ids' [id, logprob] from a top list keyed `token_id:<id>` (asked for with
   * return_tokens_as_token_ids), or else by text through tokenText; undefined when a text key is ambiguous
   * (two kept ids share it) or there is no tokenText to read it.
   */
  private keptTop(mask: Int32Array, top: Record<string, number>): [number, number][] | undefined {
    const keys = Object.keys(top);
    if (keys.length && keys.every((k) => /^token_id:\d+$/.test(k))) {
      const kept = new Set(mask);
      return Object.entries(top).map(([k, lp]) => [Number(k.slice(9)), lp] as [number, number]).filter(([id, lp]) => kept.has(id) && typeof lp === 'number');
    }
    if (!this.opts.tokenText) return undefined;
    const idOf = new Map<string, number>();
    for (const id of mask) {
      const text = this.opts.tokenText!(id);
      if (idOf.has(text)) return undefined;
      idOf.set(text, id);
    }
    const out: [number, number][] = [];
    for (const [text, lp] of Object.entries(top)) {
      const id = idOf.get(text);
      if (id !== undefined && typeof lp === 'number') out.push([id, lp]);
    }
    return out;
  }
}

// ------------------------------------------------------------------------------------------ one episode's tokens

/** Text ↔ ids; DeepSeekTokenizer (src/chat/tokenizer.ts) is one. */
export interface RolloutTokenizer {
  encode(text: string): number[];
  decode(ids: readonly number[]): string;
}

/** The shape of a token's recorded routes: MoE layers × experts per token. */
export interface RouteShape {
  layers: number;
  k: number;
}

/** One training sequence under construction: its text (for the prefix test) and per-token recordings. */
export interface RolloutSequence {
  text: string;
  tokens: number[];
  trained: number[];
  logprobs: number[];
  keptLogMass: number[];
  masks: (Int32Array | null)[];
  routes: (Int16Array | null)[];
  /** the indexer selection of the forward that consumed each token (i32 [layers · index_topk]), when recorded */
  selections: (Int32Array | null)[];
}

function newSequence(): RolloutSequence {
  return { text: '', tokens: [], trained: [], logprobs: [], keptLogMass: [], masks: [], routes: [], selections: [] };
}

/**
 * log Σ_{v∈K} p_v from the token's top logprobs: 0 when K is the whole vocabulary (nothing filtered),
 * NaN when some kept id is missing from the top list (the mass cannot be derived).
 */
export function keptLogMass(t: SampledToken, vocabSize: number): number {
  if (t.mask.length >= vocabSize) return 0;
  if (!t.top) return NaN;
  const lp = new Map<number, number>(t.top.map(([id, l]) => [id, l]));
  let m = -Infinity;
  const vals: number[] = [];
  for (const id of t.mask) {
    const l = lp.get(id);
    if (l === undefined) return NaN;
    vals.push(l);
    m = Math.max(m, l);
  }
  let s = 0;
  for (const l of vals) s += Math.exp(l - m);
  return Math.min(0, m + Math.log(s));
}

export interface EpisodeClientOptions {
  sampler: TokenSampler;
  tokenizer: RolloutTokenizer;
  mode: ThinkingMode;
  sampling: RolloutSampling;
  /** ids that end a turn (the end-of-sentence token) */
  stopTokenIds: readonly number[];
  vocabSize: number;
  /** longest sequence (prompt + generation) the policy may see */
  maxContextTokens: number;
  routes?: RouteShape;
  /** record the indexer's selections (indexer replay, use_indexer_replay) */
  indexer?: IndexerShape;
  topLogprobs?: number;
  /** per-turn seeds are derived from it (reproducible rollouts) */
  seed?: number;
  /** request id prefix */
  id: string;
}

/**
 * The agent loop's ModelClient for one episode: renders the conversation with the chat encoder, keeps the
 * episode's token sequences (header), samples through the TokenSampler and parses the completion with the
 * chat parsers (strict, then lenient recovery with malformed calls reported to the loop, as the completion
 * client does).
 */
export class EpisodeClient implements ModelClient {
  readonly description: string;
  readonly sequences: RolloutSequence[] = [];
  readonly turns: RewardTurn[] = [];
  /** set when the sampler threw: the episode is void, not a policy failure */
  samplerFailure: unknown;
  private cur: RolloutSequence | null = null;
  private step = 0;

  constructor(private readonly o: EpisodeClientOptions) {
    if (!(o.sampling.temperature > 0)) throw new RolloutError(`rollout sampling.temperature must be > 0 (RL samples from the policy), got ${o.sampling.temperature}`);
    this.description = `rollout ${o.sampler.description} mode=${o.mode}`;
  }

  promptText(messages: readonly AgentMessage[], tools: readonly ToolDefinition[]): string {
    return deepseekPrompt(messages, tools, this.o.mode);
  }

  /** Extend the current sequence with the rendering's new suffix, or start a new sequence (header). */
  private context(full: string): RolloutSequence {
    const cur = this.cur;
    if (cur && full.startsWith(cur.text)) {
      const suffix = full.slice(cur.text.length);
      if (suffix) this.push(cur, this.o.tokenizer.encode(suffix), suffix);
      return cur;
    }
    const s = newSequence();
    this.sequences.push(s);
    this.cur = s;
    this.push(s, this.o.tokenizer.encode(full), full);
    return s;
  }

  private push(s: RolloutSequence, ids: number[], text: string): void {
    for (const id of ids) {
      s.tokens.push(id);
      s.trained.push(0);
      s.logprobs.push(0);
      s.keptLogMass.push(0);
      s.masks.push(null);
      s.routes.push(null);
      s.selections.push(null);
    }
    s.text += text;
  }

  async complete(req: ModelRequest): Promise<ModelResponse> {
    const full = this.promptText(req.messages, req.tools);
    const seq = this.context(full);
    const room = this.o.maxContextTokens - seq.tokens.length;
    if (room < 1) throw new RolloutError(`rollout ${this.o.id}: the context is ${seq.tokens.length} tokens, no room left under maxContextTokens ${this.o.maxContextTokens}`);
    const step = this.step++;
    let turn: SampledTurn;
    try {
      turn = await this.o.sampler.sample({
        id: `${this.o.id}.t${step}`,
        promptIds: [...seq.tokens],
        sampling: { ...this.o.sampling, maxTokens: Math.min(this.o.sampling.maxTokens, room) },
        stopTokenIds: this.o.stopTokenIds,
        topLogprobs: this.o.topLogprobs ?? 0,
        routes: !!this.o.routes,
        ...(this.o.indexer ? { indexer: this.o.indexer } : {}),
        ...(this.o.seed !== undefined ? { seed: (this.o.seed + 7919 * step) % 2147483647 } : {}),
        ...(req.signal ? { signal: req.signal } : {}),
      });
      this.checkTurn(turn, seq.tokens.length);
    } catch (e) {
      // the sampler (engine or server) failed or answered nonsense, not the policy: the episode is void
      this.samplerFailure = e;
      throw e;
    }
    if (this.o.routes && turn.promptRoutes) {
      // prompt row p of this turn is position p of the sequence (the prompt IS seq.tokens); rows whose next
      // token was sampled keep that token's routes (the forward π_old came from), the others take this,
      // the latest, turn's (an earlier turn's prompt rows are rewritten: the policy's newest view of them)
      const per = this.o.routes.layers * this.o.routes.k;
      for (let p = 0; p + 1 < seq.tokens.length; p++) if (!seq.trained[p + 1]) seq.routes[p] = turn.promptRoutes.slice(p * per, (p + 1) * per);
    }
    if (this.o.indexer && turn.promptIndexerTopk) {
      // the same rule as the routes above
      const per = this.o.indexer.layers * this.o.indexer.topk;
      for (let p = 0; p + 1 < seq.tokens.length; p++) if (!seq.trained[p + 1]) seq.selections[p] = turn.promptIndexerTopk.slice(p * per, (p + 1) * per);
    }
    const ids: number[] = [];
    for (const t of turn.tokens) {
      // the forward that produced this token consumed the token before it (batch.ts alignment)
      if (this.o.routes) seq.routes[seq.tokens.length - 1] = t.routes!;
      if (this.o.indexer) seq.selections[seq.tokens.length - 1] = t.indexerTopk!;
      seq.tokens.push(t.id);
      seq.trained.push(1);
      seq.logprobs.push(t.logprob);
      seq.keptLogMass.push(keptLogMass(t, this.o.vocabSize));
      seq.masks.push(t.mask);
      seq.routes.push(null);
      seq.selections.push(null);
      ids.push(t.id);
    }
    const text = ids.length ? this.o.tokenizer.decode(ids) : '';
    seq.text += text;
    this.turns.push({ text, finishReason: turn.finishReason, tokens: ids.length });
    return this.parse(text, turn.finishReason, req);
  }

  private checkTurn(turn: SampledTurn, promptLen: number): void {
    if (this.o.routes && turn.promptRoutes) {
      const want = (promptLen - 1) * this.o.routes.layers * this.o.routes.k;
      if (turn.promptRoutes.length !== want) throw new RolloutError(`rollout ${this.o.id}: prompt routes have ${turn.promptRoutes.length} ids, expected (prompt − 1)·layers·k = ${promptLen - 1}·${this.o.routes.layers}·${this.o.routes.k}`);
    }
    if (this.o.indexer) {
      const per = this.o.indexer.layers * this.o.indexer.topk;
      if (turn.promptIndexerTopk && turn.promptIndexerTopk.length !== (promptLen - 1) * per) throw new RolloutError(`rollout ${this.o.id}: prompt indexer selections have ${turn.promptIndexerTopk.length} entries, expected (prompt − 1)·layers·topk = ${promptLen - 1}·${per}`);
      turn.tokens.forEach((t, i) => {
        if (t.indexerTopk?.length !== per) throw new RolloutError(`rollout ${this.o.id}: indexer selection of token ${i} has ${t.indexerTopk?.length ?? 0} entries, expected layers·topk = ${per}`);
      });
    }
    turn.tokens.forEach((t, i) => {
      if (!(Number.isInteger(t.id) && t.id >= 0 && t.id < this.o.vocabSize)) throw new RolloutError(`rollout ${this.o.id}: sampled token ${t.id} is not an id in [0, ${this.o.vocabSize})`);
      if (!(t.logprob <= 0)) throw new RolloutError(`rollout ${this.o.id}: token ${i} has logprob ${t.logprob}, expected a log-probability ≤ 0`);
      if (!t.mask.includes(t.id)) throw new RolloutError(`rollout ${this.o.id}: token ${i} (${t.id}) is outside its own sampling mask of ${t.mask.length} ids`);
      if (this.o.routes && t.routes?.length !== this.o.routes.layers * this.o.routes.k) {
        throw new RolloutError(`rollout ${this.o.id}: routes of token ${i} have ${t.routes?.length ?? 0} ids, expected layers·k = ${this.o.routes.layers}·${this.o.routes.k}`);
      }
    });
  }

  private parse(text: string, finish: FinishReason, req: ModelRequest): ModelResponse {
    const finishReason = finish === 'length' ? 'length' : 'stop';
    try {
      const p = parseCompletion(text, this.o.mode);
      const message: AgentAssistantMessage = { role: 'assistant', content: p.content };
      if (p.reasoning_content) message.reasoning_content = p.reasoning_content;
      if (p.tool_calls.length) message.tool_calls = p.tool_calls.map((c) => ({ id: newToolCallId(), type: 'function', function: { ...c.function } }));
      return { message, finishReason: message.tool_calls ? 'tool_calls' : finishReason };
    } catch (e) {
      if (!(e instanceof ChatParseError)) throw e;
      const r = parseCompletionLenient(text, this.o.mode, { tools: req.tools });
      const message: AgentAssistantMessage = { role: 'assistant', content: r.message.content };
      if (r.message.reasoning_content) message.reasoning_content = r.message.reasoning_content;
      if (r.message.tool_calls.length) message.tool_calls = r.message.tool_calls.map((c) => ({ id: newToolCallId(), type: 'function', function: { ...c.function } }));
      return {
        message,
        finishReason: message.tool_calls || r.errors.length ? 'tool_calls' : finishReason,
        warnings: [`exact parse failed (${e.message}); used the lenient parser`, ...r.repairs],
        ...(r.errors.length ? { malformedToolCalls: r.errors.map((x) => ({ ...(x.name ? { name: x.name } : {}), reason: x.reason, raw: x.raw })) } : {}),
      };
    }
  }

  /** The episode's training records (sequences with at least one sampled token). */
  records(group: string, episode: number, reward: number): RolloutRecord[] {
    const out: RolloutRecord[] = [];
    for (const s of this.sequences) {
      if (!s.trained.some((t) => t)) continue;
      const n = s.tokens.length;
      const indptr = new Int32Array(n + 1);
      let nnz = 0;
      s.masks.forEach((m, p) => (indptr[p + 1] = nnz += m ? m.length : 0));
      const indices = new Int32Array(nnz);
      s.masks.forEach((m, p) => m && indices.set(m, indptr[p]!));
      const rec: RolloutRecord = {
        group,
        episode,
        segment: out.length,
        tokens: Int32Array.from(s.tokens),
        trained: Uint8Array.from(s.trained),
        logprobs: Float32Array.from(s.logprobs),
        keptLogMass: Float32Array.from(s.keptLogMass),
        samplingMask: { indptr, indices },
        reward,
      };
      if (this.o.routes) {
        const { layers, k } = this.o.routes;
        const per = layers * k;
        const data = new Int16Array(n * per);
        const routed = new Uint8Array(n);
        s.routes.forEach((r, p) => {
          if (r) {
            data.set(r, p * per);
            routed[p] = 1;
          } else for (let l = 0; l < layers; l++) for (let q = 0; q < k; q++) data[(p * layers + l) * k + q] = q;
        });
        const routes: RecordedRoutes = { data, tokens: n, layers, k };
        rec.routes = routes;
        rec.routed = routed;
      }
      if (this.o.indexer) {
        const { layers, topk } = this.o.indexer;
        const per = layers * topk;
        const data = new Int32Array(n * per).fill(-1);
        const selected = new Uint8Array(n);
        s.selections.forEach((x, p) => {
          if (!x) return;
          data.set(x, p * per);
          selected[p] = 1;
        });
        const sel: RecordedSelections = { data, tokens: n, layers, topk };
        rec.indexerTopk = sel;
        rec.selected = selected;
      }
      out.push(rec);
    }
    return out;
  }
}

// ------------------------------------------------------------------------------------------ episodes and groups

export interface RolloutOptions extends Omit<EpisodeClientOptions, 'id' | 'seed'> {
  /** G: episodes per task */
  groupSize: number;
  /** model calls per episode at most */
  maxSteps: number;
  reward: RewardConfig;
  genrm?: GenerativeRewardModel;
  /**
   * Base of the per-turn sampling seeds (each turn's seed mixes it with the group, the episode and the
   * turn), so a rollout can be repeated exactly; a trainer passes a different one at every RL step.
   * Absent: the sampler's own randomness.
   */
  seed?: number;
  signal?: AbortSignal;
}

/** FNV-1a of a string, for mixing the group into the seeds. */
function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

export interface EpisodeRollout {
  group: string;
  episode: number;
  status: AgentResult['status'];
  agentError?: string;
  verdict: Verdict;
  reward: RewardBreakdown;
  steps: number;
  toolCalls: number;
  /** the episode's training sequences (usually one; more when the context was re-rendered) */
  records: RolloutRecord[];
}

export interface GroupRollout {
  group: string;
  envId: string;
  taskId: string;
  episodes: EpisodeRollout[];
}

function checkOptions(o: RolloutOptions): void {
  if (!(Number.isInteger(o.groupSize) && o.groupSize >= 1)) throw new RolloutError(`rollout groupSize must be an integer ≥ 1, got ${o.groupSize}`);
  if (!(Number.isInteger(o.maxSteps) && o.maxSteps >= 1)) throw new RolloutError(`rollout maxSteps must be an integer ≥ 1, got ${o.maxSteps}`);
  if (!(Number.isInteger(o.sampling.maxTokens) && o.sampling.maxTokens >= 1)) throw new RolloutError(`rollout sampling.maxTokens must be an integer ≥ 1, got ${o.sampling.maxTokens}`);
  if (!(Number.isInteger(o.maxContextTokens) && o.maxContextTokens >= 2)) throw new RolloutError(`rollout maxContextTokens must be an integer ≥ 2, got ${o.maxContextTokens}`);
  if (!o.stopTokenIds.length) throw new RolloutError('rollout stopTokenIds must hold the end-of-sentence id (a turn would never end on its own)');
  if (o.routes && !(o.routes.layers >= 1 && o.routes.k >= 1)) throw new RolloutError(`rollout routes must be {layers ≥ 1, k ≥ 1}, got ${JSON.stringify(o.routes)}`);
  if (o.indexer && !(o.indexer.layers >= 1 && o.indexer.topk >= 1)) throw new RolloutError(`rollout indexer must be {layers ≥ 1, topk ≥ 1}, got ${JSON.stringify(o.indexer)}`);
}

/** One episode of `taskId`: the agent loop over a fresh Episode, verified, rewarded, recorded. */
export async function rolloutEpisode(env: Environment, taskId: string, episode: number, o: RolloutOptions, group = `${env.manifest.id}/${taskId}`): Promise<EpisodeRollout> {
  checkOptions(o);
  const ep = Episode.open(env, taskId);
  try {
    const client = new EpisodeClient({ ...o, id: `${group}#${episode}`, ...(o.seed !== undefined ? { seed: (((o.seed * 1000003 + hash32(group)) % 2147483647) + episode * 104729) % 2147483647 } : {}) });
    const res = await runAgent({
      client,
      system: policySystemPrompt(env),
      task: ep.task!.prompt,
      tools: episodeTools(ep),
      maxSteps: o.maxSteps,
      runId: `${group}#${episode}`,
      ...(o.signal ? { signal: o.signal } : {}),
      // the submit tool ends the episode, as in evaluation
      hooks: { beforeStep: () => (ep.submitted ? { stop: true } : undefined) },
    });
    if (o.signal?.aborted) throw new RolloutError(`rollout ${group}#${episode} was aborted`);
    if (client.samplerFailure !== undefined) {
      const why = client.samplerFailure instanceof Error ? client.samplerFailure.message : String(client.samplerFailure);
      throw new RolloutError(`rollout ${group}#${episode}: sampling from ${o.sampler.description} failed: ${why}`, { cause: client.samplerFailure });
    }
    await ep.submitFinalText(res.finalAnswer); // a reply is the submission where the manifest says so
    const verdict = await ep.verify();
    // a task may carry its own GenRM rubric (params.rubric; rl.md §1.1 "a rubric per prompt")
    const rubric = typeof ep.task!.params?.rubric === 'string' ? (ep.task!.params.rubric as string) : undefined;
    const reward = await computeReward({ prompt: ep.task!.prompt, mode: o.mode, turns: client.turns, verdict, ...(rubric ? { rubric } : {}) }, o.reward, o.genrm, o.signal);
    return {
      group,
      episode,
      status: res.status,
      ...(res.error ? { agentError: res.error } : {}),
      verdict,
      reward,
      steps: res.steps,
      toolCalls: ep.trace.length,
      records: client.records(group, episode, reward.reward),
    };
  } finally {
    ep.close();
  }
}

/**
 * G episodes of one task, run concurrently (the engine batches their turns). A group is used whole or not
 * at all (its advantages are centred over all G), so the first episode that fails aborts its siblings, and
 * that failure is what is thrown once all have stopped.
 */
export async function rolloutGroup(env: Environment, taskId: string, o: RolloutOptions): Promise<GroupRollout> {
  checkOptions(o);
  if (!env.taskById.has(taskId)) throw new RolloutError(`rollout: environment ${env.manifest.id} has no task "${taskId}"`);
  const group = `${env.manifest.id}/${taskId}`;
  const ctl = new AbortController();
  const onAbort = () => ctl.abort(o.signal!.reason);
  if (o.signal?.aborted) onAbort();
  o.signal?.addEventListener('abort', onAbort, { once: true });
  let first: { error: unknown } | undefined;
  try {
    const runs = await Promise.allSettled(
      Array.from({ length: o.groupSize }, (_, i) =>
        rolloutEpisode(env, taskId, i, { ...o, signal: ctl.signal }, group).catch((e: unknown) => {
          if (!first) {
            first = { error: e };
            ctl.abort(e);
          }
          throw e;
        }),
      ),
    );
    if (first) throw first.error;
    return { group, envId: env.manifest.id, taskId, episodes: runs.map((r) => (r as PromiseFulfilledResult<EpisodeRollout>).value) };
  } finally {
    o.signal?.removeEventListener('abort', onAbort);
  }
}

/** All records of some groups, in group then episode order (collateRollouts's input). */
export function groupRecords(groups: readonly GroupRollout[]): RolloutRecord[] {
  return groups.flatMap((g) => g.episodes.flatMap((e) => e.records));
}
