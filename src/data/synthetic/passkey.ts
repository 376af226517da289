// Passkey retrieval (needle in a haystack), one definition for the training documents and the evaluation
// (bench/passkey.ts, src/train/passkey-eval.ts). The classic test (Mohtashami & Jaggi 2023, "Landmark
// Attention"): a neutral filler line repeated, one needle line with a random number inserted at a chosen
// relative depth, then the question; the answer is the number.
//
//   The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.   ← filler
//   …                                                                                            ← ⌊depth·n⌉ of them
//   The pass key is 48213. Remember it. 48213 is the pass key.                                  ← needle
//   …                                                                                            ← the rest
//   What is the pass key? The pass key is 48213.                                                 ← question, answer
//
// Lines are joined by "\n". `depth` is relative to the haystack (the n filler lines): 0 puts the needle
// first, 1 right before the question, and the needle goes after round(depth·n) filler lines.
//
// As a corpus source (`dsv32 data build --sources …,passkey`) it is opt-in: a build without --sources or
// --require naming it does not read it, so default corpora are unchanged. Its documents are spread over
// lengths log-uniformly in [minChars, maxChars] (default 512–8192 characters, about 130–2000 tokens of the
// dsv32-mini tokenizer), at uniform depths, so pretraining can include retrieval practice at several
// context lengths.
import { DsvError } from '../../errors.js';
import type { Rng } from '../../envs/rng.js';
import type { CorpusDocument, CorpusSource } from '../source.js';

export const PASSKEY_FILLER = 'The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.';
export const PASSKEY_QUESTION = 'What is the pass key? The pass key is';

export function passkeyNeedle(key: string): string {
  return `The pass key is ${key}. Remember it. ${key} is the pass key.`;
}

export interface PasskeySpec {
  /** the pass key, digits */
  key: string;
  /** filler lines in the haystack (≥ 0) */
  fillerLines: number;
  /** relative depth of the needle in the haystack, in [0, 1] */
  depth: number;
}

export interface PasskeyLayout {
  /** everything up to and including the question ("… The pass key is"): the evaluation's prompt */
  prompt: string;
  /** what follows the prompt: the space and the key (" 48213"); the evaluation's answer */
  answer: string;
  /** prompt + answer + "." : the training document */
  text: string;
  key: string;
  /** filler lines before the needle (round(depth·fillerLines)) */
  needleLine: number;
  /** character offset of the needle line in `text` */
  needleChar: number;
  /** character offset where the filler after the needle ends (the question's line starts) */
  questionChar: number;
}

export class PasskeyError extends DsvError {}

/** The document of `spec`; a pure function of it. */
export function passkeyLayout(spec: PasskeySpec): PasskeyLayout {
  const { key, fillerLines: n, depth } = spec;
  if (!/^\d+$/.test(key)) throw new PasskeyError(`passkey: the key must be digits, got ${JSON.stringify(key)}`);
  if (!(Number.isInteger(n) && n >= 0)) throw new PasskeyError(`passkey: fillerLines must be an integer ≥ 0, got ${n}`);
  if (!(depth >= 0 && depth <= 1)) throw new PasskeyError(`passkey: depth must be in [0, 1], got ${depth}`);
  const before = Math.round(depth * n);
  const head = (PASSKEY_FILLER + '\n').repeat(before);
  const tail = (PASSKEY_FILLER + '\n').repeat(n - before);
  const needle = passkeyNeedle(key) + '\n';
  const prompt = head + needle + tail + PASSKEY_QUESTION;
  const answer = ` ${key}`;
  return { prompt, answer, text: `${prompt}${answer}.`, key, needleLine: before, needleChar: head.length, questionChar: head.length + needle.length + tail.length };
}

/** A key of `digits` digits without a leading zero, from `rng`. */
export function randomPasskey(rng: Rng, digits = 5): string {
  return String(rng.int(10 ** (digits - 1), 10 ** digits - 1));
}

/** Filler lines that make a document of about `chars` characters (at least 0). */
export function fillerLinesFor(chars: number): number {
  const fixed = passkeyNeedle('00000').length + 1 + PASSKEY_QUESTION.length + ' 00000.'.length;
  return Math.max(0, Math.round((chars - fixed) / (PASSKEY_FILLER.length + 1)));
}

export interface PasskeySourceOptions {
  /** document length range in characters (log-uniform); default 512–8192 */
  minChars?: number;
  maxChars?: number;
  /** digits of the key; default 5 */
  digits?: number;
  defaultBudgetBytes?: number;
}

/** One training document: a key, a length in [minChars, maxChars] (log-uniform) and a depth, from `rng`. */
export function randomPasskeySpec(rng: Rng, o: Required<Pick<PasskeySourceOptions, 'minChars' | 'maxChars' | 'digits'>>): PasskeySpec {
  const chars = Math.exp(Math.log(o.minChars) + rng.next() * (Math.log(o.maxChars) - Math.log(o.minChars)));
  return { key: randomPasskey(rng, o.digits), fillerLines: fillerLinesFor(chars), depth: rng.next() };
}

export function makePasskeySource(opts: PasskeySourceOptions = {}): CorpusSource {
  const o = { minChars: opts.minChars ?? 512, maxChars: opts.maxChars ?? 8192, digits: opts.digits ?? 5 };
  if (!(Number.isFinite(o.minChars) && o.minChars >= 1 && o.maxChars >= o.minChars && Number.isFinite(o.maxChars))) {
    throw new PasskeyError(`passkey source: need 1 ≤ minChars ≤ maxChars, got ${o.minChars}–${o.maxChars}`);
  }
  if (!(Number.isInteger(o.digits) && o.digits >= 1 && o.digits <= 15)) throw new PasskeyError(`passkey source: digits must be an integer in [1, 15], got ${o.digits}`);
  return {
    name: 'passkey',
    kind: 'synthetic',
    package: 'dsv32',
    install: '(generated by src/data/synthetic/passkey.ts)',
    licence: 'MIT (generated by dsv32)',
    description: `Passkey retrieval practice (needle in a haystack): repeated filler, a ${o.digits}-digit pass key at a uniform depth, the question and the key; ${o.minChars}–${o.maxChars} characters, log-uniform. Opt-in (--sources or --require)`,
    requiredByDefault: true,
    optIn: true,
    defaultBudgetBytes: opts.defaultBudgetBytes ?? 2 * 2 ** 20,
    weight: 1,
    probe: () => ({ found: true, version: 'generated', location: 'src/data/synthetic/passkey.ts' }),
    async *documents(ctx) {
      let used = 0;
      for (let i = 0; used < ctx.budgetBytes; i++) {
        const { text } = passkeyLayout(randomPasskeySpec(ctx.rng, o));
        used += Buffer.byteLength(text);
        const doc: CorpusDocument = { id: `passkey/${String(i).padStart(7, '0')}`, source: 'passkey', text };
        yield doc;
      }
    },
  };
}

export const passkeySource: CorpusSource = makePasskeySource();
