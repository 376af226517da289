// The engine's public contract (issue 13): what a request asks for and what comes back, token by token.
// The server (src/server/) and RL rollouts (src/rl/rollout.ts) use only these types and the Engine
// interface; the implementation is src/engine/engine.ts.
import { DsvError } from '../errors.js';

export interface SamplingParams {
  /** 0 = greedy (argmax, ties → lowest id); default 1 */
  temperature: number;
  /** nucleus mass in (0, 1]; default 1 */
  topP: number;
  /** keep the k most likely tokens; 0 or −1 = all; default 0 */
  topK: number;
  /** drop tokens with p < minP · p_max; default 0 */
  minP: number;
  /** per-request seed: the same seed, prompt and parameters give the same tokens */
  seed?: number;
  /** most new tokens per sequence */
  maxTokens: number;
  /** generation stops when one of these strings appears in the decoded text (not included in the output) */
  stop: string[];
  /** generation stops after one of these token ids (included in token_ids, not in the text) */
  stopTokenIds: number[];
  /** ignore the end-of-sequence token (benchmarks) */
  ignoreEos: boolean;
  /** sequences per request (n > 1 shares the prompt's cache blocks) */
  n: number;
  /** number of top logprobs to return per token (0 = only the sampled token's logprob) */
  logprobs: number;
  /** return each sampled token's sampling mask (the token ids the top-k/top-p/min-p filter kept) */
  returnSamplingMask: boolean;
  /** return each generated token's routed experts, int16 [layers(MoE), k], and the prompt rows' (TokenEvent.promptRoutedExperts) */
  returnRoutedExperts: boolean;
  /** return each generated token's indexer top-k positions per layer, and the prompt rows' (TokenEvent.promptIndexerTopk) */
  returnIndexerTopk: boolean;
}

export interface GenerateRequest {
  /** caller's id (echoed in events); unique among running requests */
  id: string;
  promptIds: readonly number[];
  params: Partial<SamplingParams>;
}

export type FinishReason = 'stop' | 'length' | 'abort';

/** One generated token of one of the request's n sequences. */
export interface TokenEvent {
  type: 'token';
  requestId: string;
  /** which of the n sequences */
  index: number;
  tokenId: number;
  /** natural-log probability of the token under the distribution it was sampled from (temperature applied, before filtering);
   *  at temperature 0 (greedy) the temperature-1 distribution, the model's own */
  logprob: number;
  /** the `logprobs` most likely tokens [id, logprob], descending */
  topLogprobs?: [number, number][];
  /** ascending token ids the filters kept (the support sampled from); present when asked for */
  samplingMask?: Int32Array;
  /** int16 [moeLayers · k]: the experts the token used, per MoE layer, ascending; when asked for. "Used" = the routes of
   *  the forward row whose logits produced this token (the token one position before it), as src/rl/rollout.ts reads them */
  routedExperts?: Int16Array;
  /**
   * int16 [(promptLen − 1) · moeLayers · k]: the routes of the prompt's rows, on the first TokenEvent of each
   * of the n sequences when returnRoutedExperts was asked (absent on later ones). Row p (p = 0 .. promptLen − 2)
   * is the forward at position p, the one that produced prompt token p + 1; within a row the layout is that
   * of routedExperts (MoE layers in order, k ascending ids each). Row promptLen − 1 is the first generated
   * token's routedExperts, so prompt rows + generated tokens' rows cover every input position of a forward
   * over prompt + completion (vLLM's routed_experts [seq_len − 1, layers, k]). Recorded by the request's own
   * forwards: such a request takes no prefix-cache hits over prompt rows it has not computed.
   */
  promptRoutedExperts?: Int16Array;
  /** per layer, the indexer's selected positions for this token (−1 dropped); when asked for; the same row as routedExperts */
  indexerTopk?: Int32Array[];
  /**
   * int32 [(promptLen − 1) · layers · index_topk]: the indexer selections of the prompt's rows, on the first
   * TokenEvent of each of the n sequences when returnIndexerTopk was asked (absent on later ones). Row p is
   * the forward at position p (as promptRoutedExperts); within a row, layer l (every layer, in order) holds
   * index_topk slots: the selected key positions (in the step's order) followed by −1 holes (row p sees only
   * p + 1 keys, so rows p < index_topk − 1 always have holes). Row promptLen − 1 is the first generated
   * token's indexerTopk. Same prefix-cache rule as promptRoutedExperts.
   */
  promptIndexerTopk?: Int32Array;
}

export interface FinishEvent {
  type: 'finish';
  requestId: string;
  index: number;
  reason: FinishReason;
  /** the stop string or token that ended it, if any */
  stoppedBy?: string | number;
  promptTokens: number;
  completionTokens: number;
}

export type EngineEvent = TokenEvent | FinishEvent;

export interface EngineStats {
  /** requests waiting for admission */
  waiting: number;
  /** sequences being generated */
  running: number;
  /** preemptions so far */
  preempted: number;
  /** fraction of cache blocks in use, 0..1 */
  cacheUsage: number;
  totalBlocks: number;
  /** prompt tokens served from the prefix cache so far */
  prefixHitTokens: number;
  /** MTP draft tokens proposed and accepted so far */
  draftProposed: number;
  draftAccepted: number;
  /** tokens generated so far */
  generatedTokens: number;
  /** steps whose tokens were sampled on the model's device so far (EngineOptions.deviceSampling) */
  deviceSampledSteps: number;
}

export interface Engine {
  /** Queue a request; events stream until every one of its n sequences has finished. Abort with the signal. */
  generate(req: GenerateRequest, signal?: AbortSignal): AsyncIterable<EngineEvent>;
  stats(): EngineStats;
  /** model facts the server needs */
  readonly info: { modelName: string; vocabSize: number; maxModelLen: number; eosTokenId: number | null; /** the model's index_topk: the slots per (row, layer) of promptIndexerTopk */ indexTopk?: number };
  /** stop admitting, finish the running requests, then resolve */
  drain(): Promise<void>;
  /** stop now: abort everything, free the caches */
  close(): void;
}

/** A request the engine cannot run (bad field, prompt too long); the server maps it to HTTP 400. */
export class EngineRequestError extends DsvError {
  constructor(message: string, readonly field: string) {
    super(message);
  }
}
