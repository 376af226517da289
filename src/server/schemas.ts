// Request bodies of /v1/chat/completions and /v1/completions, checked with zod. Unknown fields are
// dropped (OpenAI clients send fields this server has no use for, e.g. `user`), but a known field with a
// wrong type or range is a 400 that names it. Ranges follow the OpenAI API where it defines one and
// vLLM's extensions otherwise (top_k, min_p, stop_token_ids, ignore_eos, return_token_ids,
// skip_special_tokens); the RL fields are ours (README.md in this folder).
import { z } from 'zod';
import { badField } from './errors.js';

/** Most sequences one request may ask for; each is a full sequence in the engine. */
export const MAX_N = 64;
/** OpenAI's limit on top_logprobs (chat) and logprobs (completions). */
export const MAX_TOP_LOGPROBS = 20;
const MAX_STOP = 16;

const finite = z.number().refine(Number.isFinite, 'must be a finite number');
const int = z.number().int('must be an integer');

const stop = z.union([z.string().min(1, 'must not be empty'), z.array(z.string().min(1, 'must not be empty')).max(MAX_STOP, `at most ${MAX_STOP} stop strings`)]).nullish();

/** Sampling and output fields common to both endpoints. */
const common = {
  model: z.string().nullish(),
  max_tokens: int.min(1, 'must be at least 1').nullish(),
  temperature: finite.min(0, 'must be in [0, 2]').max(2, 'must be in [0, 2]').nullish(),
  top_p: finite.gt(0, 'must be in (0, 1]').max(1, 'must be in (0, 1]').nullish(),
  top_k: int.min(-1, 'must be -1, 0 (all tokens) or a positive integer').nullish(),
  min_p: finite.min(0, 'must be in [0, 1]').max(1, 'must be in [0, 1]').nullish(),
  seed: int.min(-(2 ** 53) + 1).max(2 ** 53 - 1).nullish(),
  n: int.min(1, 'must be at least 1').max(MAX_N, `must be at most ${MAX_N}`).nullish(),
  stop,
  stop_token_ids: z.array(int.min(0, 'token ids are non-negative')).max(64).nullish(),
  ignore_eos: z.boolean().nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().nullish(), continuous_usage_stats: z.boolean().nullish() }).nullish(),
  presence_penalty: finite.min(-2).max(2).nullish(),
  frequency_penalty: finite.min(-2).max(2).nullish(),
  repetition_penalty: finite.gt(0).nullish(),
  logit_bias: z.record(z.string(), finite).nullish(),
  user: z.string().nullish(),
  // RL extensions
  return_token_ids: z.boolean().nullish(),
  return_sampling_mask: z.boolean().nullish(),
  return_routed_experts: z.boolean().nullish(),
  return_indexer_topk: z.boolean().nullish(),
  /** vLLM's: logprobs name every token `token_id:<id>` instead of its text (unambiguous, for RL) */
  return_tokens_as_token_ids: z.boolean().nullish(),
};

const toolFunction = z
  .object({
    name: z.string().min(1, 'must not be empty').max(64).regex(/^[A-Za-z0-9_.:-]+$/, 'may contain only letters, digits, _ . : -'),
    description: z.string().nullish(),
    parameters: z.record(z.string(), z.unknown()).nullish(),
    strict: z.boolean().nullish(),
  })
  .loose();

export const toolSchema = z.object({ type: z.literal('function'), function: toolFunction }).loose();

const toolChoice = z
  .union([
    z.enum(['none', 'auto', 'required']),
    z.object({ type: z.literal('function'), function: z.object({ name: z.string().min(1) }).loose() }).loose(),
  ])
  .nullish();

export const chatRequestSchema = z.object({
  ...common,
  messages: z.array(z.unknown()).min(1, 'must contain at least one message'),
  max_completion_tokens: int.min(1, 'must be at least 1').nullish(),
  tools: z.array(toolSchema).max(128).nullish(),
  tool_choice: toolChoice,
  parallel_tool_calls: z.boolean().nullish(),
  logprobs: z.boolean().nullish(),
  top_logprobs: int.min(0).max(MAX_TOP_LOGPROBS, `must be at most ${MAX_TOP_LOGPROBS}`).nullish(),
  chat_template_kwargs: z.object({ thinking: z.boolean().nullish(), enable_thinking: z.boolean().nullish() }).loose().nullish(),
  thinking: z.object({ type: z.enum(['enabled', 'disabled']) }).loose().nullish(),
  response_format: z
    .discriminatedUnion('type', [
      z.object({ type: z.literal('text') }).loose(),
      z.object({ type: z.literal('json_object') }).loose(),
      z.object({ type: z.literal('json_schema'), json_schema: z.object({ name: z.string().nullish(), schema: z.record(z.string(), z.unknown()).nullish() }).loose() }).loose(),
    ])
    .nullish(),
});
export type ChatRequest = z.infer<typeof chatRequestSchema>;

const tokenIds = z.array(int.min(0, 'token ids are non-negative')).min(1, 'must not be empty');
export const completionRequestSchema = z.object({
  ...common,
  prompt: z.union([z.string(), tokenIds, z.array(z.string()).min(1).max(64), z.array(tokenIds).min(1).max(64)]),
  logprobs: int.min(0).max(MAX_TOP_LOGPROBS, `must be at most ${MAX_TOP_LOGPROBS}`).nullish(),
  echo: z.boolean().nullish(),
  suffix: z.string().nullish(),
  best_of: int.min(1).nullish(),
  skip_special_tokens: z.boolean().nullish(),
});
export type CompletionRequest = z.infer<typeof completionRequestSchema>;

/** `messages[2].content` from zod's path ['messages', 2, 'content']. */
export function fieldPath(path: readonly PropertyKey[], root = ''): string {
  let out = root;
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${String(p)}` : String(p);
  return out || 'body';
}

/** Parse with `schema` or throw a 400 naming the first bad field. */
export function parseRequest<T>(schema: z.ZodType<T>, body: unknown, root = ''): T {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw badField('body', 'the request body must be a JSON object');
  const r = schema.safeParse(body);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  const param = fieldPath(issue.path, root);
  let message = issue.message;
  if (issue.code === 'invalid_type' && message.startsWith('Invalid input')) message = `expected ${issue.expected}`;
  if (issue.code === 'invalid_union') message = 'has the wrong type or shape';
  throw badField(param, message);
}
