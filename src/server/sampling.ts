// From request fields to the engine's SamplingParams, with the checks that need the model's facts
// (context length, vocabulary). Defaults follow the OpenAI API (temperature 1, top_p 1, n 1); a missing
// max_tokens means "up to the context length", as in vLLM.
import type { Engine, SamplingParams } from '../engine/types.js';
import { badField } from './errors.js';
import type { ChatRequest, CompletionRequest } from './schemas.js';

export interface OutputOptions {
  /** number of top logprobs per token; -1 = no logprobs at all */
  logprobs: number;
  returnTokenIds: boolean;
  returnSamplingMask: boolean;
  returnRoutedExperts: boolean;
  returnIndexerTopk: boolean;
  /** logprobs name tokens `token_id:<id>` (vLLM's return_tokens_as_token_ids) */
  tokensAsIds: boolean;
  /** stop strings, which the server also cuts out of the text */
  stop: string[];
}

type Common = ChatRequest | CompletionRequest;

/** Whether a step's tokens carry data the client asked for (so a chunk is sent even with no new text). */
export function wantsTokenData(out: OutputOptions, tokens: number): boolean {
  return tokens > 0 && (out.logprobs >= 0 || out.returnTokenIds || out.returnSamplingMask || out.returnRoutedExperts || out.returnIndexerTopk);
}

export function samplingParams(req: Common, info: Engine['info'], promptTokens: number, maxTokensField: string, maxTokens: number | null | undefined, logprobs: number): Partial<SamplingParams> {
  for (const f of ['presence_penalty', 'frequency_penalty'] as const) {
    const v = req[f];
    if (v != null && v !== 0) throw badField(f, 'is not supported by this server (the engine samples without penalties); send 0 or leave it out', 'unsupported_parameter');
  }
  if (req.repetition_penalty != null && req.repetition_penalty !== 1) throw badField('repetition_penalty', 'is not supported by this server; send 1 or leave it out', 'unsupported_parameter');
  if (req.logit_bias && Object.keys(req.logit_bias).length) throw badField('logit_bias', 'is not supported by this server', 'unsupported_parameter');
  const room = info.maxModelLen - promptTokens;
  if (room < 1) {
    throw badField('messages' in req ? 'messages' : 'prompt', `the prompt has ${promptTokens} tokens, which leaves no room in the model's context of ${info.maxModelLen} tokens`, 'context_length_exceeded');
  }
  if (maxTokens != null && maxTokens > room) {
    throw badField(maxTokensField, `${maxTokens} new tokens plus the prompt's ${promptTokens} exceed the model's context of ${info.maxModelLen} tokens (at most ${room})`, 'context_length_exceeded');
  }
  for (const [i, id] of (req.stop_token_ids ?? []).entries()) {
    if (id >= info.vocabSize) throw badField(`stop_token_ids[${i}]`, `${id} is not a token id (vocabulary size ${info.vocabSize})`);
  }
  const stop = req.stop == null ? [] : typeof req.stop === 'string' ? [req.stop] : req.stop;
  const p: Partial<SamplingParams> = {
    temperature: req.temperature ?? 1,
    topP: req.top_p ?? 1,
    topK: req.top_k ?? 0,
    minP: req.min_p ?? 0,
    maxTokens: maxTokens ?? room,
    stop,
    stopTokenIds: req.stop_token_ids ?? [],
    ignoreEos: req.ignore_eos ?? false,
    n: req.n ?? 1,
    logprobs: Math.max(0, logprobs),
    returnSamplingMask: req.return_sampling_mask ?? false,
    returnRoutedExperts: req.return_routed_experts ?? false,
    returnIndexerTopk: req.return_indexer_topk ?? false,
  };
  if (req.seed != null) p.seed = req.seed;
  return p;
}

export function outputOptions(req: Common, logprobs: number): OutputOptions {
  const stop = req.stop == null ? [] : typeof req.stop === 'string' ? [req.stop] : req.stop;
  return {
    logprobs,
    returnTokenIds: req.return_token_ids ?? false,
    returnSamplingMask: req.return_sampling_mask ?? false,
    returnRoutedExperts: req.return_routed_experts ?? false,
    returnIndexerTopk: req.return_indexer_topk ?? false,
    tokensAsIds: req.return_tokens_as_token_ids ?? false,
    stop,
  };
}
