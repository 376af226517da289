// Passkey retrieval scored by teacher forcing (bench/passkey.ts is its command line). A trial is one
// document of src/data/synthetic/passkey.ts sized to a target length in tokens, with the needle at a
// given depth: one forward over BOS + prompt + answer, and the trial is right when the model's argmax at
// every answer position is the answer's token (exact match of the whole key; no sampling). One forward
// per trial, so it runs on a CPU.
//
// The pieces are separate so that each can be tested without the others: `buildPasskeyCase` (text →
// token ids, needle position), `scoreAnswer` (the rule, a pure function of logit rows), `runPasskeyEval`
// (the grid, over any `LogitsFn`), and `modelLogits` (a DeepseekV32 forward with dense or sparse
// attention).
import { DsvError } from '../errors.js';
import { hashString, Rng } from '../envs/rng.js';
import { passkeyLayout, randomPasskey } from '../data/synthetic/passkey.js';
import type { DeepseekV32 } from '../model/model.js';
import { noGrad } from '../tensor/autograd.js';
import { releaseDeadTensors } from '../tensor/memory.js';
import { narrow } from '../tensor/ops/view.js';

export class PasskeyEvalError extends DsvError {}

export type Tokenize = (text: string) => number[];

/** Next-token logits of `ids` at each position of `rows` (row r predicts ids[r + 1]). */
export type LogitsFn = (ids: Int32Array, rows: readonly number[]) => ArrayLike<number>[] | Promise<ArrayLike<number>[]>;

export interface PasskeyCase {
  /** target length (tokens) and the needle's relative depth asked for */
  length: number;
  depth: number;
  key: string;
  fillerLines: number;
  /** BOS (when given) + prompt + answer: what the forward runs over; ids.length ≤ length */
  ids: number[];
  /** position of the answer's first token in ids */
  answerStart: number;
  answerIds: number[];
  /** token offset of the needle line's first token, and of the question line's */
  needleToken: number;
  questionToken: number;
  /** tokens before the first filler line (1 with BOS) */
  start: number;
}

/**
 * The passkey document with `key` at `depth`, with as many filler lines as fit in `length` tokens
 * (BOS + prompt + answer ≤ length). Throws when even no filler does not fit.
 */
export function buildPasskeyCase(tokenize: Tokenize, o: { length: number; depth: number; key: string; bos?: number }): PasskeyCase {
  const pre = o.bos === undefined ? [] : [o.bos];
  const count = (n: number): number => pre.length + tokenize(passkeyLayout({ key: o.key, fillerLines: n, depth: o.depth }).prompt + ` ${o.key}`).length;
  if (count(0) > o.length) throw new PasskeyEvalError(`a passkey prompt needs at least ${count(0)} tokens; length ${o.length} is too short`);
  // the token count grows with the filler lines: the largest n that fits, by doubling then bisection
  let lo = 0;
  let hi = 1;
  while (count(hi) <= o.length) {
    lo = hi;
    hi *= 2;
  }
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (count(mid) <= o.length) lo = mid;
    else hi = mid;
  }
  const lay = passkeyLayout({ key: o.key, fillerLines: lo, depth: o.depth });
  const promptIds = tokenize(lay.prompt);
  const full = tokenize(lay.prompt + lay.answer);
  // the answer as the whole text tokenizes (what training saw), when the prompt's tokens are a prefix of it
  const prefix = full.length > promptIds.length && promptIds.every((t, i) => full[i] === t);
  const answerIds = prefix ? full.slice(promptIds.length) : tokenize(lay.answer);
  const ids = [...pre, ...promptIds, ...answerIds];
  return {
    length: o.length,
    depth: o.depth,
    key: o.key,
    fillerLines: lo,
    ids,
    answerStart: pre.length + promptIds.length,
    answerIds,
    needleToken: pre.length + tokenize(lay.prompt.slice(0, lay.needleChar)).length,
    questionToken: pre.length + tokenize(lay.prompt.slice(0, lay.questionChar)).length,
    start: pre.length,
  };
}

export function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  return best;
}

/** −log softmax(row)[t], computed stably. */
export function nllOf(row: ArrayLike<number>, t: number): number {
  let m = -Infinity;
  for (let i = 0; i < row.length; i++) if (row[i]! > m) m = row[i]!;
  let z = 0;
  for (let i = 0; i < row.length; i++) z += Math.exp(row[i]! - m);
  return m + Math.log(z) - row[t]!;
}

/**
 * The scoring rule. logitRows[i] are the logits at the position before answer token i (so they predict
 * answerIds[i]); the trial is correct when every row's argmax is its answer token. tokensRight counts
 * the rows that are; nll is the mean −log p of the answer tokens (a graded signal where none is right).
 */
export function scoreAnswer(logitRows: readonly ArrayLike<number>[], answerIds: readonly number[]): { correct: boolean; tokensRight: number; nll: number } {
  if (logitRows.length !== answerIds.length || answerIds.length === 0) throw new PasskeyEvalError(`scoreAnswer: ${logitRows.length} logit rows for ${answerIds.length} answer tokens`);
  let tokensRight = 0;
  let nll = 0;
  answerIds.forEach((t, i) => {
    if (argmax(logitRows[i]!) === t) tokensRight++;
    nll += nllOf(logitRows[i]!, t);
  });
  return { correct: tokensRight === answerIds.length, tokensRight, nll: nll / answerIds.length };
}

export interface PasskeyEvalOptions {
  lengths: readonly number[];
  depths: readonly number[];
  trials: number;
  seed: number;
  /** digits of the key; default 5 */
  digits?: number;
  bos?: number;
}

export interface PasskeyTrial {
  length: number;
  depth: number;
  trial: number;
  key: string;
  tokens: number;
  needleToken: number;
  correct: boolean;
  tokensRight: number;
  answerTokens: number;
  /** mean −log p of the answer tokens */
  nll: number;
}

export interface PasskeyTable {
  lengths: number[];
  depths: number[];
  trials: number;
  /** [length][depth]: the fraction of trials right */
  accuracy: number[][];
  /** [length][depth]: the fraction of answer tokens right (a softer signal at toy scale) */
  tokenAccuracy: number[][];
  /** [length][depth]: the mean −log p (nats) of the answer tokens */
  answerNll: number[][];
  /** per length: the mean over depths */
  perLength: number[];
  mean: number;
  rows: PasskeyTrial[];
}

/** The key of one trial: a function of the seed and the trial's coordinates only (the same for every model). */
export function trialKey(seed: number, length: number, depth: number, trial: number, digits = 5): string {
  return randomPasskey(new Rng(hashString(`passkey/${seed}/${length}/${depth}/${trial}`)), digits);
}

/** The grid lengths × depths × trials, one forward per trial through `logits`. */
export async function runPasskeyEval(tokenize: Tokenize, logits: LogitsFn, o: PasskeyEvalOptions, onTrial?: (t: PasskeyTrial) => void): Promise<PasskeyTable> {
  if (!(Number.isInteger(o.trials) && o.trials >= 1)) throw new PasskeyEvalError(`trials must be an integer ≥ 1, got ${o.trials}`);
  const rows: PasskeyTrial[] = [];
  const accuracy: number[][] = [];
  const tokenAccuracy: number[][] = [];
  const answerNll: number[][] = [];
  for (const length of o.lengths) {
    const acc: number[] = [];
    const tacc: number[] = [];
    const nlls: number[] = [];
    for (const depth of o.depths) {
      let right = 0;
      let tokRight = 0;
      let tokAll = 0;
      let nll = 0;
      for (let trial = 0; trial < o.trials; trial++) {
        const c = buildPasskeyCase(tokenize, { length, depth, key: trialKey(o.seed, length, depth, trial, o.digits), bos: o.bos });
        const want = c.answerIds.map((_, i) => c.answerStart - 1 + i);
        const got = await logits(Int32Array.from(c.ids), want);
        const s = scoreAnswer(got, c.answerIds);
        const r: PasskeyTrial = { length, depth, trial, key: c.key, tokens: c.ids.length, needleToken: c.needleToken, correct: s.correct, tokensRight: s.tokensRight, answerTokens: c.answerIds.length, nll: s.nll };
        rows.push(r);
        onTrial?.(r);
        if (s.correct) right++;
        tokRight += s.tokensRight;
        tokAll += c.answerIds.length;
        nll += s.nll;
      }
      acc.push(right / o.trials);
      tacc.push(tokRight / tokAll);
      nlls.push(nll / o.trials);
    }
    accuracy.push(acc);
    tokenAccuracy.push(tacc);
    answerNll.push(nlls);
  }
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
  const perLength = accuracy.map(mean);
  return { lengths: [...o.lengths], depths: [...o.depths], trials: o.trials, accuracy, tokenAccuracy, answerNll, perLength, mean: mean(perLength), rows };
}

/**
 * A LogitsFn over `model`: the training forward (one row, no cache, no tape, no MTP) with dense
 * attention (every causal key) or sparse (the lightning indexer's top-k, DSA), as the trainer's stages
 * run it. Only the asked rows come back to the host.
 */
export function modelLogits(model: DeepseekV32, attention: 'dense' | 'sparse'): LogitsFn {
  return async (ids, rows) => {
    const out = noGrad(() => {
      const r = model.trainForward(ids, 1, ids.length, { attention, mtp: false });
      const lo = Math.min(...rows);
      const hi = Math.max(...rows);
      const V = model.cfg.vocabSize;
      const host = narrow(r.logits, 0, lo, hi - lo + 1).toFloat32();
      return rows.map((p) => host.slice((p - lo) * V, (p - lo + 1) * V));
    });
    // the forward's device memory comes back between trials (a no-op on the CPU; src/tensor/memory.ts)
    await releaseDeadTensors(model.device);
    return out;
  };
}
