// What every endpoint handler shares: the engine, the tokenizer (or none), metrics, the served model
// name, and admission control. Admission counts the requests this server has handed to the engine that
// have not produced a first event yet (queued or in prefill): past `maxWaiting` of them a new request is
// answered 429 at once instead of queueing without bound. While draining (SIGTERM) new requests get 503.
import type { FastifyReply } from 'fastify';
import { EngineRequestError, type Engine } from '../engine/types.js';
import type { TextCodec } from './codec.js';
import { ApiError } from './errors.js';
import { EngineClosedError } from '../engine/engine.js';
import type { ServerMetrics } from './metrics.js';
import type { RouteShape } from './token-data.js';

export interface ServerContext {
  engine: Engine;
  codec: TextCodec | null;
  metrics: ServerMetrics;
  modelName: string;
  routeShape?: RouteShape;
  admission: Admission;
}

export class Admission {
  private waiting = 0;
  draining = false;
  /** while a weight update swaps the engine */
  updating = false;

  constructor(readonly maxWaiting: number) {}

  get pending(): number {
    return this.waiting;
  }

  /** Admit one request or throw 429/503; call the returned function once it has its first event. */
  enter(): () => void {
    if (this.draining) throw new ApiError(503, 'the server is shutting down and accepts no new requests', null, 'draining');
    if (this.updating) throw new ApiError(503, 'the server is loading new weights; retry in a moment', null, 'updating_weights');
    if (this.waiting >= this.maxWaiting) {
      throw new ApiError(429, `too many requests waiting (${this.waiting}, limit ${this.maxWaiting}); retry later`, null, 'too_many_waiting_requests');
    }
    this.waiting++;
    let left = false;
    return () => {
      if (left) return;
      left = true;
      this.waiting--;
    };
  }
}

export function checkModel(ctx: ServerContext, model: string | null | undefined): void {
  if (model != null && model !== ctx.modelName) {
    throw new ApiError(404, `model "${model}" does not exist; this server serves "${ctx.modelName}"`, 'model', 'model_not_found');
  }
}

// The engine names SamplingParams fields; clients know the request's.
const REQUEST_FIELD: Record<string, string> = {
  promptIds: 'prompt', maxTokens: 'max_tokens', topK: 'top_k', topP: 'top_p', minP: 'min_p', stopTokenIds: 'stop_token_ids',
  ignoreEos: 'ignore_eos', returnSamplingMask: 'return_sampling_mask', returnRoutedExperts: 'return_routed_experts', returnIndexerTopk: 'return_indexer_topk',
};

/**
 * An engine rejection of the request as a 400 naming the request field (`promptIds` is the prompt,
 * `messages` for chat); an engine that takes no requests any more (closing) as a 503.
 */
export function engineError(e: unknown, promptField: 'prompt' | 'messages'): unknown {
  if (e instanceof EngineRequestError) {
    const field = e.field === 'promptIds' ? promptField : (REQUEST_FIELD[e.field] ?? e.field);
    const code = e.field === 'promptIds' && /fit/.test(e.message) ? 'context_length_exceeded' : 'invalid_value';
    return new ApiError(400, `${field}: ${e.message}`, field, code);
  }
  if (e instanceof EngineClosedError) return new ApiError(503, `the engine takes no requests: ${e.message}`, null, 'draining');
  return e;
}

/**
 * An AbortSignal that fires when the client goes away before the response is complete (the socket
 * closes while the response is still being written or not yet started).
 */
export function disconnectSignal(reply: FastifyReply): AbortSignal {
  const ctl = new AbortController();
  // A ServerResponse emits 'close' when it is done or when its connection closes first.
  reply.raw.on('close', () => {
    if (!reply.raw.writableFinished) ctl.abort(new Error('client disconnected'));
  });
  return ctl.signal;
}
