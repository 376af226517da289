// `dsv32 serve`: load a checkpoint, start the engine and the OpenAI-compatible server (src/server/), and
// serve until SIGTERM/SIGINT, which drains: new requests are refused, in-flight ones finish, then the
// process exits 0 (a second signal exits at once). Flags follow `vllm serve` where it has one.
//
// The tokenizer is the checkpoint's tokenizer.json when the directory has one, else the DeepSeek-V3.2
// tokenizer this package ships; --skip-tokenizer-init serves without one (token ids in and out, as in
// vLLM). Numerics: --dtype f32 or bf16 sets the engine's numerics; fp8 is bf16 numerics with the FP8
// latent cache (656 B/token at full size). The KV cache format defaults to the --dtype's.
//
// Under `dsv32 launch --gpus N` (world size N > 1) every rank loads the model's shard (parallel:
// the collective); rank 0 alone runs the engine, binds the port and serves, its model wrapped in a
// BroadcastModel that sends each step to the other ranks, which only follow (src/engine/step-broadcast.ts)
// and exit 0 when rank 0, drained or exiting, sends STOP. Not offered there: MTP speculative decoding,
// CUDA graphs (a sharded step all-reduces) and weight updates (every rank would have to reload).
import { existsSync } from 'node:fs';
import path from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { DsvError } from '../errors.js';
import { loadDeepSeekV32Tokenizer, loadTokenizer, type DeepSeekTokenizer } from '../chat/tokenizer.js';
import { LLMEngine, type EngineModel } from '../engine/engine.js';
import { BroadcastModel, followSteps } from '../engine/step-broadcast.js';
import { type Collective, openCollective } from '../dist/collective.js';
import { distEnv } from '../dist/rendezvous.js';
import { DeepseekV32, loadConfig, type CachePool, type ModelConfig } from '../model/index.js';
import { createServer, type WeightUpdate } from '../server/index.js';
import { Checkpoint } from '../tensor/safetensors.js';
import { getBackend } from '../tensor/backend.js';
import { resolveDevice } from '../backend/cuda/index.js';
import type { MlaCacheFormat } from '../tensor/ops/sparse-mla.js';
import { intArg } from './args.js';

export class ServeCliError extends DsvError {}

interface ServeOptions extends EngineFlags {
  enableWeightUpdates?: boolean;
  port: number;
  host: string;
  maxWaiting: number;
  bodyLimit: number;
}

function hostArg(v: string): string {
  if (!/^[A-Za-z0-9.:_-]+$/.test(v)) throw new InvalidArgumentError(`--host must be a host name or IP address, got "${v}"`);
  return v;
}

export function register(program: Command): void {
  program
    .command('serve')
    // a bad flag is one line naming it (the program's default prints the help after it)
    .showHelpAfterError(false)
    .description('serve a checkpoint over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions, /v1/models, /health, /metrics)')
    .addOption(modelOption())
    .addOption(deviceOption())
    .addOption(new Option('--dtype <dtype>', 'numerics: f32, bf16, or fp8 (bf16 numerics with the FP8 latent cache)').choices(['f32', 'bf16', 'fp8']).default('bf16'))
    .option('--port <n>', 'TCP port (0: any free port)', intArg('--port', 0, 65535), 8000)
    .option('--host <host>', 'address to bind', hostArg, '127.0.0.1')
    .option('--max-num-seqs <n>', 'sequences generated at once', intArg('--max-num-seqs', 1), 64)
    .option('--max-model-len <n>', "context length (default: the model's max_position_embeddings)", intArg('--max-model-len', 2))
    .option('--num-blocks <n>', 'KV-cache blocks of 64 tokens (default: max-num-seqs sequences of min(max-model-len, 4096) tokens)', intArg('--num-blocks', 1))
    .addOption(new Option('--kv-cache-dtype <dtype>', 'latent KV-cache format (default: that of --dtype)').choices(['fp8', 'bf16', 'f32']))
    .option('--speculative-tokens <n>', 'MTP draft tokens per step, 0 to 3 (needs MTP layers)', intArg('--speculative-tokens', 0, 3), 0)
    .option('--no-cuda-graphs', 'run every decode step eagerly (default on CUDA: plain decode steps replay a CUDA graph per batch-size bucket)')
    .option('--no-device-sampling', 'sample every row on the host (default on CUDA: rows are sampled on the GPU, filters, sampling masks and top logprobs included; tokens and masks the same but at rounding ties, logprobs equal to rounding)')
    .option('--dense-attention', "dense attention: every query attends to every causal key and the lightning indexer does not run (the dense baseline of DSA on the same weights; default: DSA's top-k)")
    .option('--skip-tokenizer-init', 'serve without a tokenizer: prompts and outputs are token ids (/v1/completions only)')
    .option('--served-model-name <name>', 'model name clients send (default: the checkpoint directory name)')
    .option('--max-waiting <n>', 'requests waiting for their first token beyond which new ones get 429', intArg('--max-waiting', 1), 256)
    .option('--enable-weight-updates', 'accept POST /update_weights_from_disk {"model_path": DIR} and POST /update_weights_from_tensor (a safetensors file as an application/octet-stream body): serve other weights of the same architecture (a dsv32 rl rollout server); off by default, the first reads any directory the server can')
    .option('--body-limit <bytes>', 'largest request body; larger ones get 413', intArg('--body-limit', 1024), 8 * 1024 * 1024)
    .action(async (o: ServeOptions) => {
      await serve(o);
    });
}

/** The model `dsv32 serve` and `dsv32 chat` run without --model: dsv32-mini, shipped in the repository. */
export const BUILTIN_MODEL = path.resolve(import.meta.dirname, '../../../models/dsv32-mini');

export function modelOption(): Option {
  return new Option('--model <dir>', 'Hugging Face checkpoint directory (config.json + safetensors; tokenizer.json optional)').default(BUILTIN_MODEL, 'the built-in dsv32-mini');
}

export function deviceOption(): Option {
  return new Option('--device <name>', 'where the model runs (auto: the GPU when a CUDA device is usable, else the CPU)').choices(['auto', 'cpu', 'cuda']).default('auto');
}

function pickTokenizer(dir: string, vocab: number): DeepSeekTokenizer {
  const own = path.join(dir, 'tokenizer.json');
  const tok = existsSync(own) ? loadTokenizer(dir) : loadDeepSeekV32Tokenizer();
  if (tok.vocabSize > vocab) {
    throw new ServeCliError(`--model ${dir}: the tokenizer (${tok.description}) has ${tok.vocabSize} tokens but the model's vocab_size is ${vocab}; use --skip-tokenizer-init to serve token ids`);
  }
  return tok;
}

/** Flags that say which model and engine to run (shared by `dsv32 serve` and `dsv32 chat`). */
export interface EngineFlags {
  model: string;
  device: string;
  dtype: 'f32' | 'bf16' | 'fp8';
  maxNumSeqs: number;
  maxModelLen?: number;
  numBlocks?: number;
  kvCacheDtype?: MlaCacheFormat;
  speculativeTokens: number;
  /** false: no CUDA-graph decode (--no-cuda-graphs) */
  cudaGraphs?: boolean;
  /** false: every row sampled on the host (--no-device-sampling) */
  deviceSampling?: boolean;
  /** every query attends to every causal key, the indexer does not run (--dense-attention) */
  denseAttention?: boolean;
  skipTokenizerInit?: boolean;
  servedModelName?: string;
}

export interface LoadedEngine {
  engine: LLMEngine<{ readonly blocks: number }>;
  codec: DeepSeekTokenizer | null;
  cfg: ModelConfig;
  name: string;
  cacheFormat: MlaCacheFormat;
  /** where the model runs (--device auto resolved) */
  device: string;
}

/** Check the flags against the checkpoint, load it, and start the engine (with `codec`, that tokenizer
 *  instead of the checkpoint's: a weight update keeps the served one). */
export function loadEngine(o: EngineFlags, reuse?: { codec: DeepSeekTokenizer | null }): LoadedEngine {
  const { device, cfg } = checkFlags(o);
  const model = DeepseekV32.load(o.model, { device });
  const codec = reuse ? reuse.codec : o.skipTokenizerInit ? null : pickTokenizer(o.model, cfg.vocabSize);
  const name = o.servedModelName ?? path.basename(path.resolve(o.model));
  const cacheFormat = cacheFormatOf(o);
  return { engine: engineOver(model, o, name, cacheFormat, codec), codec, cfg, name, cacheFormat, device };
}

const cacheFormatOf = (o: EngineFlags): MlaCacheFormat => o.kvCacheDtype ?? (o.dtype === 'fp8' ? 'fp8' : o.dtype);

/** The flags checked against the checkpoint's config (before any weight loads), and the resolved device. */
function checkFlags(o: EngineFlags): { device: string; cfg: ModelConfig } {
  if (!existsSync(path.join(o.model, 'config.json'))) {
    if (path.resolve(o.model) === BUILTIN_MODEL) {
      throw new ServeCliError(`the built-in dsv32-mini is not in this checkout (${BUILTIN_MODEL} has no config.json): train it with \`bash scripts/train-mini.sh\` (models/dsv32-mini/README.md), or pass --model DIR`);
    }
    throw new ServeCliError(`--model ${o.model}: no config.json there (expected a Hugging Face checkpoint directory)`);
  }
  let device: string;
  try {
    device = resolveDevice(o.device);
    getBackend(device);
  } catch (e) {
    throw new ServeCliError(`--device ${o.device}: ${(e as Error).message}`, { cause: e });
  }
  // Flags that depend on the model are checked against its config before the weights load.
  const cfg = loadConfig(path.join(o.model, 'config.json'));
  if (o.maxModelLen !== undefined && o.maxModelLen > cfg.maxPositions) {
    throw new ServeCliError(`--max-model-len ${o.maxModelLen}: the model's max_position_embeddings is ${cfg.maxPositions}`);
  }
  if (o.speculativeTokens > 0 && cfg.nMtpLayers < 1) throw new ServeCliError(`--speculative-tokens ${o.speculativeTokens}: the checkpoint has no MTP layers (num_nextn_predict_layers is 0)`);
  return { device, cfg };
}

function engineOver(model: EngineModel<CachePool>, o: EngineFlags, name: string, cacheFormat: MlaCacheFormat, codec: DeepSeekTokenizer | null): LLMEngine<{ readonly blocks: number }> {
  return new LLMEngine(model, {
    numerics: o.dtype === 'f32' ? 'f32' : 'bf16',
    cacheFormat,
    maxNumSeqs: o.maxNumSeqs,
    speculativeTokens: o.speculativeTokens,
    modelName: name,
    ...(o.maxModelLen !== undefined ? { maxModelLen: o.maxModelLen } : {}),
    ...(o.numBlocks !== undefined ? { numBlocks: o.numBlocks } : {}),
    ...(o.cudaGraphs === false ? { cudaGraphs: false } : {}),
    ...(o.deviceSampling === false ? { deviceSampling: false } : {}),
    ...(o.denseAttention ? { denseAttention: true } : {}),
    ...(codec ? { detokenize: (ids: readonly number[]) => codec.decode(ids) } : {}),
  });
}

/**
 * The served engine's flags over new weights of the served architecture (the routes, the cache and the
 * tokenizer stay: the new engine detokenizes stop strings with the served codec): another checkpoint's
 * directory, whose config must agree, or the tensors of one safetensors file sent in a request, read
 * with the served config (their names, shapes and dtypes are checked as a checkpoint's are).
 */
function reloadEngine(o: ServeOptions, served: LoadedEngine, from: WeightUpdate): LLMEngine<{ readonly blocks: number }> {
  if ('modelPath' in from) {
    const dir = from.modelPath;
    const next = loadConfig(path.join(dir, 'config.json'));
    for (const k of ['vocabSize', 'dim', 'nLayers', 'nDenseLayers', 'nRoutedExperts', 'nActivatedExperts', 'nMtpLayers', 'indexTopk'] as const) {
      if (next[k] !== served.cfg[k]) throw new ServeCliError(`${dir}: ${k} is ${next[k]}, the served model's is ${served.cfg[k]} (expected the same architecture)`);
    }
    return loadEngine({ ...o, model: dir }, { codec: served.codec }).engine;
  }
  const model = DeepseekV32.fromSource(served.cfg, Checkpoint.fromBytes(from.safetensors, 'the request body'), { device: served.device });
  return engineOver(model, o, served.name, served.cacheFormat, served.codec);
}

/** Rank 0's engine under `dsv32 launch`: the model's shard wrapped so that every step reaches the other ranks. */
interface RankEngine {
  loaded: LoadedEngine;
  /** sends STOP to the other ranks (idempotent) */
  stop: () => void;
  worldSize: number;
}

async function serve(o: ServeOptions): Promise<void> {
  const err = process.stderr;
  const t0 = performance.now();
  const worldSize = distEnv().worldSize;
  let ranks: RankEngine | null = null;
  if (worldSize > 1) {
    ranks = await rankEngine(o, worldSize);
    if (!ranks) return;
  }
  const loaded = ranks?.loaded ?? loadEngine(o);
  const { engine, codec, cfg, name, cacheFormat, device } = loaded;
  // STOP before any exit of rank 0 (between two engine steps: a signal handler never runs inside one)
  const stopRanks = (): void => {
    try {
      ranks?.stop();
    } catch (e) {
      err.write(`dsv32 serve: could not send STOP to the other ranks: ${(e as Error).message}\n`);
    }
  };
  const server = createServer({
    engine,
    codec,
    servedModelName: name,
    maxWaiting: o.maxWaiting,
    bodyLimit: o.bodyLimit,
    routeShape: { layers: cfg.nLayers - cfg.nDenseLayers, k: cfg.nActivatedExperts },
    ...(o.enableWeightUpdates ? { reloadWeights: async (from: WeightUpdate) => reloadEngine(o, loaded, from) } : {}),
  });
  const url = await server.listen(o.port, o.host);
  err.write(
    `dsv32 serve: ${name} on ${url} (device ${device}${ranks ? `, rank 0 of ${ranks.worldSize} (the others follow its steps)` : ''}, dtype ${o.dtype}, kv cache ${cacheFormat}${o.denseAttention ? ', dense attention' : ''}, max-num-seqs ${o.maxNumSeqs}, ` +
      `context ${engine.info.maxModelLen}${engine.graphStats() ? ', CUDA-graph decode' : ''}, ${codec ? 'tokenizer ' + codec.description : 'no tokenizer'}; loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s)\n`,
  );

  await new Promise<void>((resolve) => {
    let draining = false;
    const onSignal = (sig: NodeJS.Signals) => {
      if (draining) {
        err.write(`dsv32 serve: ${sig} again, exiting without draining\n`);
        stopRanks();
        process.exit(1);
      }
      draining = true;
      err.write(`dsv32 serve: ${sig}: draining in-flight requests\n`);
      server.drain().then(
        () => {
          err.write('dsv32 serve: drained, exiting\n');
          resolve();
        },
        (e: unknown) => {
          err.write(`dsv32 serve: drain failed: ${(e as Error).message}\n`);
          stopRanks();
          process.exit(1);
        },
      );
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  // the engine is drained and closed: the other ranks may stop
  stopRanks();
  // Drained and closed; exit even if some library left a handle open (an unref'd timer fires only then).
  setTimeout(() => process.exit(0), 200).unref();
}

/**
 * World size > 1: every rank loads its shard; rank 0 gets its engine over a BroadcastModel, the others
 * follow rank 0's steps here and exit 0 on STOP (null returned: nothing to serve).
 */
async function rankEngine(o: ServeOptions, worldSize: number): Promise<RankEngine | null> {
  const under = `under dsv32 launch (world size ${worldSize})`;
  if (o.speculativeTokens > 0) throw new ServeCliError(`--speculative-tokens ${o.speculativeTokens}: MTP speculative decoding is not supported ${under}; use 0`);
  if (o.enableWeightUpdates) throw new ServeCliError(`--enable-weight-updates: weight updates are not supported ${under}`);
  const { device, cfg } = checkFlags(o);
  let collective: Collective;
  try {
    collective = await openCollective(getBackend(device));
  } catch (e) {
    throw new ServeCliError(`--device ${o.device}: ${(e as Error).message}`, { cause: e });
  }
  // this rank's share of the weights; its steps all-reduce with the other ranks'
  const model = DeepseekV32.load(o.model, { device, parallel: collective });
  if (collective.rank !== 0) {
    // rank 0 decides when this rank stops (STOP after its drain): the launcher's forwarded signals are
    // for rank 0; a rank 0 that dies without STOP is cleaned up by the launcher (SIGKILL after its grace)
    for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => {});
    const s = await followSteps(model, collective);
    process.stderr.write(`dsv32 serve: rank ${collective.rank}: STOP from rank 0 after ${s.steps} steps${s.failedSteps ? ` (${s.failedSteps} failed)` : ''}, exiting\n`);
    collective.close();
    setTimeout(() => process.exit(0), 200).unref();
    return null;
  }
  const bm = new BroadcastModel(model, collective);
  let codec: DeepSeekTokenizer | null;
  let engine: LLMEngine<{ readonly blocks: number }>;
  const name = o.servedModelName ?? path.basename(path.resolve(o.model));
  const cacheFormat = cacheFormatOf(o);
  try {
    codec = o.skipTokenizerInit ? null : pickTokenizer(o.model, cfg.vocabSize);
    engine = engineOver(bm, o, name, cacheFormat, codec);
  } catch (e) {
    // the followers are waiting for a command: release them before this rank fails
    bm.close();
    throw e;
  }
  return {
    loaded: { engine, codec, cfg, name, cacheFormat, device },
    stop: () => {
      bm.close();
      collective.close();
    },
    worldSize,
  };
}
