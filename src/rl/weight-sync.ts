// Giving a rollout server (`dsv32 serve --enable-weight-updates`) the trainer's current policy, so that
// the next rollouts sample from it. Two ways, after SGLang's routes of the same names:
//   tensor  the weights as one safetensors file in the body of POST /update_weights_from_tensor: no
//           file system is shared, the server may be on any machine that can reach the URL;
//   disk    the weights written as a checkpoint directory (config.json + safetensors) that the server
//           reads, named in POST /update_weights_from_disk {"model_path": DIR}: a shared file system.
// Either way the server builds a new engine over the weights and swaps it in once in-flight requests
// finish (src/server/app.ts), so no rollout mixes two policies. The bytes are the same: safetensors of
// the weights as the trainer holds them (f32 masters).
import { resolve } from 'node:path';
import { mkdirSync, rmSync } from 'node:fs';
import { postBody, postJson } from '../agent/http.js';
import type { Tensor } from '../tensor/tensor.js';
import { encodeSafetensors } from '../tensor/safetensors.js';
import { saveModelDir } from '../train/checkpoint.js';
import type { RlConfig } from './config.js';

export type RolloutServer = NonNullable<RlConfig['rollout_server']>;

/**
 * The server serves `weights` when this resolves. `dir` is where the 'disk' transfer writes them (emptied
 * first). Errors name the URL and the policy (`label`, e.g. "step 3") and say how to start the server.
 */
export async function sendPolicy(server: RolloutServer, weights: Map<string, Tensor>, configJson: string, dir: string, label: string): Promise<void> {
  const base = server.base_url.replace(/\/+$/, '').replace(/\/v1$/, '');
  const url = `${base}/update_weights_from_${server.weight_transfer}`;
  const post = { ...(server.api_key ? { apiKey: server.api_key } : {}), ...(server.max_retries !== undefined ? { maxRetries: server.max_retries } : {}) };
  try {
    if (server.weight_transfer === 'tensor') {
      await postBody(url, encodeSafetensors(weights), 'application/octet-stream', post);
    } else {
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir, { recursive: true });
      saveModelDir(dir, { configJson, weights });
      await postJson(url, { model_path: resolve(dir) }, post);
    }
  } catch (e) {
    throw new Error(`${url} did not load the policy of ${label} (${(e as Error).message}); start the server with dsv32 serve --enable-weight-updates`, { cause: e });
  }
}
