// The reward R_i of one RL episode (DeepSeek-V3.2 §3.1/§3.2, ../shared/docs/rl.md §1.1): "a rule-based
// outcome reward, a length penalty and a language-consistency reward" for reasoning and agent tasks, and a
// generative reward model with a per-prompt rubric for general tasks. The paper discloses neither the
// formulas of the length and language terms nor any weight, so ours are defined here and configurable:
//
//   R = w_outcome · outcome + w_format · format + w_language · language − w_length · lengthPenalty
//       + w_genrm · genrm
//
// - outcome ∈ [0, 1]: the environment verifier's score (src/envs/episode.ts Episode.verify; 0 when nothing
//   was submitted or the verifier itself failed — the failure is reported in `verifierError`).
// - format ∈ [0, 1]: the fraction of the episode's model turns that are well formed, where a turn is well
//   formed iff (a) it ended on its own (finish reason `stop`, not cut off at max tokens), (b) the strict
//   V3.2 parser (src/chat/parse-strict.ts, the official `parse_message_from_completion_text` semantics)
//   accepts it: in thinking mode one `</think>` before any content or DSML tool-call block, an exact
//   DSML block, nothing after the end-of-sentence token, no special token inside the text, (c) every
//   `string="false"` tool parameter is valid JSON (the parser's warnings), and (d) in thinking mode the
//   reasoning is not empty (the paper's model thinks before every answer and after every tool result).
// - language ∈ [0, 1]: language consistency, measured by a script proxy (the paper gives no definition):
//   the prompt's language is its dominant writing system, counted in word-like units (a run of letters of
//   one alphabetic script is one unit, each Han/kana character is one unit, so an English word and a
//   Chinese character weigh alike); the score is the share of the units of the episode's reasoning and
//   answers (tool-call blocks removed: code and JSON are not language) written in that system. A prompt
//   without letters, or a response without letters, scores 1 (nothing to be inconsistent with).
//   It cannot tell two languages of one script apart (English vs French) — a proxy for the failure the
//   paper names (mixed-language reasoning), not a language identifier.
// - lengthPenalty ∈ [0, 1]: DAPO's soft overlong penalty (rl.md §3, OpenRLHF's overlong penalty) over the
//   episode's generated tokens L, with budget L_max and soft zone B:
//       0                              if L ≤ L_max − B
//       (L − (L_max − B)) / B          if L_max − B < L ≤ L_max
//       1                              if L > L_max
//   so short and medium answers are not pushed shorter, only those approaching the budget.
// - genrm ∈ [0, 1]: an optional generative reward model's grade of the episode against a rubric (the
//   task's own rubric when it has one, else the configured one), asked over an OpenAI-compatible
//   /chat/completions endpoint through the agent runtime's client (its time-outs and bounded retries).
//
// GRPO centres R within each group (Â = R − mean R), so constant offsets cancel: only the differences the
// terms make between a task's G episodes train the policy.
import { z } from 'zod';
import { parseCompletionChecked } from '../chat/parse-strict.js';
import type { ThinkingMode } from '../chat/message.js';
import { BOS, EOS, THINK_END, THINK_START, TOOL_CALLS_START } from '../chat/tokens.js';
import { DsvError } from '../errors.js';
import { OpenAIChatClient } from '../agent/openai-client.js';
import { MAX_TIMER_MS } from '../agent/http.js';

export class RewardConfigError extends DsvError {}
/** The generative reward model could not be reached or gave no usable grade. */
export class GenRmError extends DsvError {}

const weight = z.number().finite().min(0);

export const genRmConfigSchema = z.strictObject({
  /** Base URL with the version prefix, e.g. http://127.0.0.1:8000/v1 */
  baseUrl: z.string().url(),
  model: z.string().min(1),
  /** Default rubric when the task carries none. */
  rubric: z.string().min(1),
  weight: weight.default(1),
  /** Bearer key; default $DSV32_GENRM_API_KEY when set. */
  apiKey: z.string().optional(),
  /** Per-try limit on the judge's silence (ms). */
  requestTimeoutMs: z.number().int().min(1).max(MAX_TIMER_MS).default(60_000),
  /** Further tries after a connection error, time-out, 429 or 5xx. */
  maxRetries: z.number().int().min(0).max(10).default(1),
  retryBackoffMs: z.number().int().min(0).max(60_000).default(500),
  maxTokens: z.number().int().positive().default(1024),
});

export const rewardConfigSchema = z.strictObject({
  outcome: weight.default(1),
  format: weight.default(0.1),
  language: weight.default(0.1),
  length: z
    .strictObject({
      weight: weight.default(0.1),
      /** L_max: generated tokens of the whole episode before the full penalty */
      maxTokens: z.number().int().positive().default(16384),
      /** B: the soft zone below L_max where the penalty ramps from 0 to 1 */
      buffer: z.number().int().positive().default(4096),
    })
    .prefault({})
    .refine((l) => l.buffer <= l.maxTokens, { message: 'length.buffer must be ≤ length.maxTokens' }),
  genrm: genRmConfigSchema.optional(),
});
export type RewardConfig = z.output<typeof rewardConfigSchema>;
export type RewardConfigInput = z.input<typeof rewardConfigSchema>;
export type GenRmConfig = z.output<typeof genRmConfigSchema>;

/** Validates a reward config (weights ≥ 0; defaults filled in); errors name the field. */
export function parseRewardConfig(raw: unknown): RewardConfig {
  const r = rewardConfigSchema.safeParse(raw ?? {});
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw new RewardConfigError(`reward config: ${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`);
  }
  return r.data;
}

/** One model turn of the episode as generated: the decoded completion text (special tokens kept). */
export interface RewardTurn {
  text: string;
  finishReason: 'stop' | 'length' | 'abort';
  /** generated tokens of this turn */
  tokens: number;
}

export interface RewardInput {
  /** the task prompt (the user message the episode answers) */
  prompt: string;
  mode: ThinkingMode;
  turns: readonly RewardTurn[];
  /** the verifier's verdict */
  verdict: { score: number; reason?: string; error?: string };
  /** the task's own rubric for the GenRM (rl.md §1.1: "a rubric per prompt") */
  rubric?: string;
}

export interface RewardBreakdown {
  reward: number;
  outcome: number;
  format: number;
  language: number;
  lengthPenalty: number;
  /** present when a GenRM is configured */
  genrm?: number;
  generatedTokens: number;
  verifierError?: string;
}

// ------------------------------------------------------------------------------------------ format

/** Whether one turn is well formed (the header's rules a–d). */
export function turnWellFormed(turn: RewardTurn, mode: ThinkingMode): boolean {
  if (turn.finishReason !== 'stop') return false;
  try {
    const r = parseCompletionChecked(turn.text, mode);
    if (r.warnings.length) return false;
    return mode !== 'thinking' || r.message.reasoning_content.trim().length > 0;
  } catch {
    return false;
  }
}

export function formatScore(turns: readonly RewardTurn[], mode: ThinkingMode): number {
  if (!turns.length) return 0;
  return turns.filter((t) => turnWellFormed(t, mode)).length / turns.length;
}

// ------------------------------------------------------------------------------------------ language

/** Writing systems the proxy tells apart; everything else that is a letter is `other`. */
const SCRIPTS: readonly [string, RegExp, 'char' | 'run'][] = [
  ['latin', /\p{Script=Latin}/u, 'run'],
  ['cjk', /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Bopomofo}]/u, 'char'],
  ['hangul', /\p{Script=Hangul}/u, 'run'],
  ['cyrillic', /\p{Script=Cyrillic}/u, 'run'],
  ['greek', /\p{Script=Greek}/u, 'run'],
  ['arabic', /\p{Script=Arabic}/u, 'run'],
  ['hebrew', /\p{Script=Hebrew}/u, 'run'],
  ['devanagari', /\p{Script=Devanagari}/u, 'run'],
  ['thai', /\p{Script=Thai}/u, 'char'],
];
const LETTER = /[\p{L}\p{M}]/u;

function scriptOf(ch: string): [string, 'char' | 'run'] | null {
  if (!LETTER.test(ch)) return null;
  for (const [name, re, unit] of SCRIPTS) if (re.test(ch)) return [name, unit];
  return ['other', 'run'];
}

/** Word-like units per writing system (see the header). Combining marks continue the current run. */
export function scriptUnits(text: string): Map<string, number> {
  const out = new Map<string, number>();
  let prev: string | null = null;
  for (const ch of text) {
    const s = scriptOf(ch);
    if (!s) {
      prev = null;
      continue;
    }
    let [name, unit] = s;
    if (/\p{M}/u.test(ch) && prev) name = prev; // a mark belongs to the letter before it
    else if (unit === 'char' || name !== prev) out.set(name, (out.get(name) ?? 0) + 1);
    prev = name;
  }
  return out;
}

/** The dominant writing system of `text` (most units; ties → the earlier in SCRIPTS), or null without letters. */
export function dominantScript(text: string): string | null {
  const u = scriptUnits(text);
  let best: string | null = null;
  let n = 0;
  for (const [name] of [...SCRIPTS, ['other']] as const) {
    const c = u.get(name) ?? 0;
    if (c > n) {
      best = name;
      n = c;
    }
  }
  return best;
}

/** Share of the response's units in the prompt's dominant writing system (1 when either has no letters). */
export function languageConsistency(prompt: string, response: string): number {
  const lang = dominantScript(prompt);
  if (!lang) return 1;
  const u = scriptUnits(response);
  let total = 0;
  for (const c of u.values()) total += c;
  if (total === 0) return 1;
  return (u.get(lang) ?? 0) / total;
}

/**
 * The natural-language part of a turn: reasoning and answer, without the DSML tool-call block and the
 * chat format's special tokens (the text need not be well formed).
 */
export function turnProse(text: string): string {
  let t = text;
  const calls = t.indexOf(TOOL_CALLS_START);
  if (calls >= 0) t = t.slice(0, calls);
  for (const s of [BOS, EOS, THINK_START, THINK_END]) t = t.split(s).join(' ');
  return t;
}

// ------------------------------------------------------------------------------------------ length

/** DAPO's soft overlong penalty in [0, 1] (formula in the header). */
export function lengthPenalty(tokens: number, maxTokens: number, buffer: number): number {
  if (!(Number.isInteger(tokens) && tokens >= 0)) throw new RewardConfigError(`lengthPenalty: tokens must be a non-negative integer, got ${tokens}`);
  if (!(buffer > 0 && buffer <= maxTokens)) throw new RewardConfigError(`lengthPenalty: buffer must be in (0, maxTokens = ${maxTokens}], got ${buffer}`);
  const start = maxTokens - buffer;
  if (tokens <= start) return 0;
  if (tokens > maxTokens) return 1;
  return (tokens - start) / buffer;
}

// ------------------------------------------------------------------------------------------ GenRM

export const GENRM_SYSTEM =
  'You are a strict, impartial grader. You are given a task, a grading rubric and a response. Judge the response ' +
  'only by the rubric. Explain briefly, then end with a final line of the form "SCORE: x" where x is a number ' +
  'from 0 (fails the rubric) to 1 (fully meets it).';

/** The judge's grade: the number on its last `SCORE:` line, which must be in [0, 1]. */
export function parseGenRmScore(text: string, url: string): number {
  const matches = [...text.matchAll(/SCORE:\s*\**\s*([-+]?\d+(?:\.\d+)?)/gi)];
  const m = matches.at(-1);
  if (!m) throw new GenRmError(`GenRM at ${url}: the reply has no "SCORE: x" line; it ends ${JSON.stringify(text.slice(-200))}`);
  const x = Number(m[1]);
  if (!(x >= 0 && x <= 1)) throw new GenRmError(`GenRM at ${url}: SCORE ${m[1]} is outside [0, 1]`);
  return x;
}

export class GenerativeRewardModel {
  private readonly client: OpenAIChatClient;
  readonly url: string;

  constructor(readonly cfg: GenRmConfig) {
    const apiKey = cfg.apiKey ?? process.env.DSV32_GENRM_API_KEY;
    this.client = new OpenAIChatClient({
      baseUrl: cfg.baseUrl,
      model: cfg.model,
      stream: false,
      temperature: 0,
      maxTokens: cfg.maxTokens,
      requestTimeoutMs: cfg.requestTimeoutMs,
      maxRetries: cfg.maxRetries,
      retryBackoffMs: cfg.retryBackoffMs,
      ...(apiKey ? { apiKey } : {}),
    });
    this.url = cfg.baseUrl.replace(/\/+$/, '') + '/chat/completions';
  }

  /** Grade `response` to `prompt` against `rubric` (default: the configured one). */
  async grade(prompt: string, response: string, rubric?: string, signal?: AbortSignal): Promise<number> {
    const user = `## Rubric\n\n${rubric ?? this.cfg.rubric}\n\n## Task\n\n${prompt}\n\n## Response\n\n${response}`;
    let text: string;
    try {
      const res = await this.client.complete({
        messages: [
          { role: 'system', content: GENRM_SYSTEM },
          { role: 'user', content: user },
        ],
        tools: [],
        ...(signal ? { signal } : {}),
      });
      text = res.message.content ?? '';
    } catch (e) {
      throw new GenRmError(`GenRM (genrm.baseUrl ${this.cfg.baseUrl}, model ${this.cfg.model}) failed: ${(e as Error).message}`, { cause: e });
    }
    return parseGenRmScore(text, this.url);
  }
}

// ------------------------------------------------------------------------------------------ total

/** What the GenRM reads: each turn's prose (reasoning and answer), without markup. */
export function episodeResponseText(turns: readonly RewardTurn[]): string {
  return turns.map((t) => turnProse(t.text).trim()).filter(Boolean).join('\n\n');
}

/** The episode's reward and each term (the header's formula). */
export async function computeReward(input: RewardInput, cfg: RewardConfig, genrm?: GenerativeRewardModel, signal?: AbortSignal): Promise<RewardBreakdown> {
  const score = input.verdict.score;
  if (!(typeof score === 'number' && score >= 0 && score <= 1)) throw new RewardConfigError(`computeReward: verdict.score must be in [0, 1], got ${String(score)}`);
  const outcome = input.verdict.error ? 0 : score;
  const format = formatScore(input.turns, input.mode);
  const prose = episodeResponseText(input.turns);
  const language = languageConsistency(input.prompt, prose);
  const generatedTokens = input.turns.reduce((n, t) => n + t.tokens, 0);
  const lp = lengthPenalty(generatedTokens, cfg.length.maxTokens, cfg.length.buffer);
  let reward = cfg.outcome * outcome + cfg.format * format + cfg.language * language - cfg.length.weight * lp;
  let g: number | undefined;
  if (cfg.genrm) {
    if (!genrm) throw new RewardConfigError('computeReward: genrm is configured but no GenerativeRewardModel was given');
    g = await genrm.grade(input.prompt, prose, input.rubric, signal);
    reward += cfg.genrm.weight * g;
  }
  return {
    reward,
    outcome,
    format,
    language,
    lengthPenalty: lp,
    ...(g !== undefined ? { genrm: g } : {}),
    generatedTokens,
    ...(input.verdict.error ? { verifierError: input.verdict.error } : {}),
  };
}
