// When a sequence stops, checked after every appended token, first match wins:
//   1. a stop token id (the token stays in the output ids)
//   2. EOS, unless ignoreEos
//   3. a stop string appearing in the decoded completion (needs a detokenizer); the token that completed
//      it is still emitted (token ids are exact), the FinishEvent names the string, and cutting the text
//      at it is the text layer's job (the server's), as in vLLM. The completion is decoded
//      over a tail window only: a stop string of c characters ends inside the last c tokens (every token
//      decodes to ≥ 1 character, or to a partial UTF-8 byte that the next tokens complete, hence the
//      margin), and an occurrence that ended earlier would have stopped the sequence then.
//   4. maxTokens completion tokens
//   5. the sequence cannot grow: its next input position would be past maxModelLen (or the pool)
import type { FinishReason } from './types.js';

export type Detokenize = (ids: readonly number[]) => string;

export interface StopRule {
  stopTokenIds: readonly number[];
  eosTokenIds: readonly number[];
  ignoreEos: boolean;
  stop: readonly string[];
  maxTokens: number;
}

export interface StopResult {
  reason: FinishReason;
  stoppedBy?: string | number;
}

const MARGIN_TOKENS = 8;

export class StopChecker {
  private readonly window: number;

  constructor(private readonly rule: StopRule, private readonly detokenize: Detokenize | null) {
    this.window = rule.stop.reduce((m, s) => Math.max(m, s.length), 0) + MARGIN_TOKENS;
  }

  /** tokens = prompt + completion (the new token last), the completion from `promptLen`; `room`: whether another position fits. */
  check(tokens: readonly number[], promptLen: number, room: boolean): StopResult | null {
    const r = this.rule;
    const t = tokens[tokens.length - 1]!;
    const generated = tokens.length - promptLen;
    if (r.stopTokenIds.includes(t)) return { reason: 'stop', stoppedBy: t };
    if (!r.ignoreEos && r.eosTokenIds.includes(t)) return { reason: 'stop', stoppedBy: t };
    if (r.stop.length && this.detokenize) {
      const text = this.detokenize(tokens.slice(Math.max(promptLen, tokens.length - this.window)));
      for (const s of r.stop) if (text.includes(s)) return { reason: 'stop', stoppedBy: s };
    }
    if (generated >= r.maxTokens) return { reason: 'length' };
    if (!room) return { reason: 'length' };
    return null;
  }
}
