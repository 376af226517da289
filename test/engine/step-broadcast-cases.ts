// What the step-broadcast test and its rank worker (step-broadcast.worker.ts) share: the tiny model, the
// requests, and the cases a rank can run.
import { randomConfig } from '../../src/model/random-weights.js';
import type { GenerateRequest } from '../../src/engine/types.js';

/** 2 layers (dense + MoE), DSA top-k 8: prompts past 8 tokens attend sparsely; 75 tokens span 2 blocks */
export const cfg = randomConfig({ num_hidden_layers: 2, vocab_size: 128, index_topk: 8 });
export const SEED = 11;

const prompt = (n: number, seed: number): number[] => Array.from({ length: n }, (_, i) => 2 + ((i * 17 + seed * 29) % 120));

/** sampled (seeded, τ = 1: the reported logprob is the plain log-softmax), greedy, and n = 2 sharing a prompt */
export const requests: GenerateRequest[] = [
  { id: 'a', promptIds: prompt(9, 1), params: { temperature: 1, seed: 3, maxTokens: 7, ignoreEos: true, logprobs: 2 } },
  { id: 'b', promptIds: prompt(75, 2), params: { temperature: 0, maxTokens: 6, ignoreEos: true, logprobs: 2 } },
  { id: 'c', promptIds: prompt(30, 3), params: { temperature: 1, seed: 5, n: 2, maxTokens: 8, ignoreEos: true, logprobs: 2 } },
];

export interface RankCase {
  kind: 'engine' | 'close' | 'step-error' | 'garbage-header' | 'garbage-payload' | 'lost-command';
}

/** One generated sequence as rank 0 reports it. */
export interface Generated {
  id: string;
  index: number;
  tokens: number[];
  logprobs: number[];
  finish: string;
  completionTokens: number;
}
