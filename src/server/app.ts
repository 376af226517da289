// The OpenAI-compatible HTTP server on fastify: routes, body limits, and one error handler that turns
// every failure into the OpenAI error shape. Bad input is always a 4xx: malformed JSON and wrong fields
// are 400, unknown routes and models 404, an oversized body 413, a full queue 429; only a fault of the
// server itself is a 500. Shutdown: `drain()` stops admitting (503), lets in-flight requests finish,
// then drains and closes the engine.
import { constants as bufferConstants } from 'node:buffer';
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify';
import type { Engine } from '../engine/types.js';
import { chatCompletions } from './chat.js';
import type { TextCodec } from './codec.js';
import { completions } from './completions.js';
import { Admission, type ServerContext } from './context.js';
import { ApiError } from './errors.js';
import { ServerMetrics } from './metrics.js';
import type { RouteShape } from './token-data.js';

export interface ServerOptions {
  engine: Engine;
  /** the tokenizer; null serves token ids only (--skip-tokenizer-init) */
  codec: TextCodec | null;
  /** the name clients send as `model` (default: the engine's model name) */
  servedModelName?: string;
  /** requests handed to the engine without a first token yet, beyond which new ones get 429 (default 256) */
  maxWaiting?: number;
  /** largest request body in bytes (default 8 MiB) */
  bodyLimit?: number;
  /** shape of routed_experts per token: MoE layers × experts per token */
  routeShape?: RouteShape;
  logger?: boolean;
  /**
   * Weight updates (an RL trainer's rollout server is given each step's policy so): an engine over new
   * weights of the served architecture, built while the current one serves. From
   * POST /update_weights_from_disk {"model_path": DIR} (SGLang's route): the checkpoint in DIR; from
   * POST /update_weights_from_tensor with an application/octet-stream body: the tensors of one
   * safetensors file in the body (no shared file system needed). Absent (the default), both routes
   * answer 403: one reads any directory the server can, the other replaces the model.
   */
  reloadWeights?: (from: WeightUpdate) => Promise<Engine>;
}

export type WeightUpdate = { modelPath: string } | { safetensors: Uint8Array };

/** Largest /update_weights_from_tensor body: what one Node buffer holds (4 GiB on Node 20). */
const TENSOR_BODY_LIMIT = bufferConstants.MAX_LENGTH;

export interface DsvServer {
  app: FastifyInstance;
  context: ServerContext;
  /** listen; returns the bound address, e.g. http://127.0.0.1:8000 */
  listen(port: number, host: string): Promise<string>;
  /** stop admitting, finish in-flight requests, drain and close the engine */
  drain(): Promise<void>;
}

export function createServer(opts: ServerOptions): DsvServer {
  const context: ServerContext = {
    engine: opts.engine,
    codec: opts.codec,
    metrics: new ServerMetrics(() => context.engine),
    modelName: opts.servedModelName ?? opts.engine.info.modelName,
    admission: new Admission(opts.maxWaiting ?? 256),
    ...(opts.routeShape ? { routeShape: opts.routeShape } : {}),
  };
  const app = Fastify({
    logger: opts.logger ?? false,
    bodyLimit: opts.bodyLimit ?? 8 * 1024 * 1024,
    // while closing, requests still reach the handlers, which answer 503 in the OpenAI error shape
    return503OnClosing: false,
    forceCloseConnections: 'idle',
  });

  // Bodies are JSON whatever the content type says (curl -d sends form encoding); the body limit applies.
  // The one exception: /update_weights_from_tensor takes its application/octet-stream body as bytes.
  const TENSOR_ROUTE = '/update_weights_from_tensor';
  const json = (text: string, done: (err: Error | null, body?: unknown) => void): void => {
    if (!text.trim()) return done(null, undefined);
    try {
      done(null, JSON.parse(text));
    } catch (e) {
      done(new ApiError(400, `the request body is not valid JSON: ${(e as Error).message}`, 'body', 'invalid_json'), undefined);
    }
  };
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer' }, (req, body, done) => {
    if (req.routeOptions.url === TENSOR_ROUTE) return done(null, body);
    json((body as Buffer).toString('utf8'), done);
  });
  app.addContentTypeParser('*', { parseAs: 'string' }, (_req, body, done) => json(body as string, done));

  app.setErrorHandler((err: FastifyError | ApiError | Error, request, reply) => {
    const api = toApiError(err);
    if (api.status >= 500) request.log.error(err);
    void reply.code(api.status).send(api.body());
  });
  app.setNotFoundHandler((request, reply) => {
    const e = new ApiError(404, `no route ${request.method} ${request.url.split('?')[0]}`, null, 'not_found');
    void reply.code(404).send(e.body());
  });
  app.addHook('onResponse', (request, reply, done) => {
    const route = request.routeOptions.url ?? 'unknown';
    context.metrics.requests.inc({ endpoint: route, status: String(reply.statusCode) });
    done();
  });

  app.post('/v1/chat/completions', (request, reply) => chatCompletions(context, request, reply));
  app.post('/v1/completions', (request, reply) => completions(context, request, reply));
  app.get('/v1/models', async () => ({
    object: 'list',
    data: [{ id: context.modelName, object: 'model', created: 0, owned_by: 'dsv32', root: context.engine.info.modelName, max_model_len: context.engine.info.maxModelLen }],
  }));
  app.get<{ Params: { id: string } }>('/v1/models/:id', async (request) => {
    if (request.params.id !== context.modelName) throw new ApiError(404, `model "${request.params.id}" does not exist; this server serves "${context.modelName}"`, 'model', 'model_not_found');
    return { id: context.modelName, object: 'model', created: 0, owned_by: 'dsv32', root: context.engine.info.modelName, max_model_len: context.engine.info.maxModelLen };
  });
  // One update at a time. The new engine is built first (bad weights leave the old one serving); then
  // new requests wait (503 'updating', which clients retry), in-flight ones finish on the old weights,
  // and the engines swap: no response mixes two policies.
  let updating = false;
  const update = async (from: WeightUpdate, shown: string, field: string | null): Promise<{ success: true; message: string; seconds: number }> => {
    if (updating) throw new ApiError(409, 'another weight update is in progress', null, 'update_in_progress');
    const t = performance.now();
    updating = true;
    try {
      let fresh: Engine;
      try {
        fresh = await opts.reloadWeights!(from);
      } catch (e) {
        throw new ApiError(400, `${field ? field + ': ' : ''}cannot load ${shown}: ${(e as Error).message}`, field, 'invalid_value');
      }
      const old = context.engine;
      context.admission.updating = true;
      try {
        await old.drain();
        context.engine = fresh;
        old.close();
      } finally {
        context.admission.updating = false;
      }
    } finally {
      updating = false;
    }
    return { success: true, message: `serving the weights of ${shown}`, seconds: (performance.now() - t) / 1000 };
  };
  const updatesOff = (): ApiError => new ApiError(403, 'weight updates are off; start dsv32 serve with --enable-weight-updates', null, 'weight_updates_disabled');
  app.post('/update_weights_from_disk', async (request) => {
    if (!opts.reloadWeights) throw updatesOff();
    const body = request.body as { model_path?: unknown } | undefined;
    const dir = body?.model_path;
    if (typeof dir !== 'string' || !dir) throw new ApiError(400, 'model_path: expected the directory of a checkpoint (config.json and safetensors)', 'model_path', 'invalid_value');
    return update({ modelPath: dir }, dir, 'model_path');
  });
  // the body limit is raised only where updates are on: with them off, a large upload gets the usual 413
  app.post(TENSOR_ROUTE, opts.reloadWeights ? { bodyLimit: TENSOR_BODY_LIMIT } : {}, async (request) => {
    if (!opts.reloadWeights) throw updatesOff();
    const body = request.body;
    // bytes come only from the application/octet-stream parser on this route; any other body was JSON
    if (!(body instanceof Uint8Array)) {
      throw new ApiError(400, 'expected the weights as one safetensors file in an application/octet-stream body', 'body', 'invalid_value');
    }
    return update({ safetensors: body }, `the request body (${body.byteLength} bytes)`, null);
  });
  app.get('/health', async (_request, reply) => {
    if (context.admission.draining) return reply.code(503).send({ status: 'draining' });
    return { status: 'ok' };
  });
  app.get('/metrics', async (_request, reply) => {
    reply.header('content-type', context.metrics.registry.contentType);
    return context.metrics.registry.metrics();
  });

  let drained: Promise<void> | undefined;
  return {
    app,
    context,
    async listen(port, host) {
      return app.listen({ port, host });
    },
    drain() {
      drained ??= (async () => {
        context.admission.draining = true;
        await app.close(); // waits for in-flight requests (streams included) to finish
        await context.engine.drain();
        context.engine.close();
      })();
      return drained;
    },
  };
}

function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  const e = err as FastifyError;
  const status = typeof e.statusCode === 'number' ? e.statusCode : 500;
  if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE' || status === 413) return new ApiError(413, `the request body is larger than the server's limit (${e.message})`, 'body', 'body_too_large');
  if (status === 404) return new ApiError(404, e.message, null, 'not_found');
  if (status === 429) return new ApiError(429, e.message, null, 'rate_limited');
  if (status === 503) return new ApiError(503, e.message, null, 'unavailable');
  // Everything else fastify rejects before a handler runs (bad content length, bad media type,
  // malformed JSON, a body on a GET) is the client's doing.
  if (status >= 400 && status < 500) return new ApiError(400, e.message, 'body', e.code ?? 'bad_request');
  return new ApiError(500, `internal error: ${e.message}`, null, 'internal_error');
}
