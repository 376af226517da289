// Typed errors of the chat format: what was wrong, where (message index or text offset), and which rule.
import { DsvError } from '../errors.js';

export type EncodeRule =
  | 'invalid-message'
  | 'misplaced-field'
  | 'empty-developer-content'
  | 'invalid-tool-arguments'
  | 'tool-result-without-call'
  | 'too-many-tool-results'
  | 'missing-tool-results'
  | 'missing-reasoning';

/** A conversation the encoder cannot render. `index` counts over `context` followed by `messages`. */
export class ChatEncodeError extends DsvError {
  constructor(
    readonly index: number,
    readonly rule: EncodeRule,
    detail: string,
  ) {
    super(`message ${index}: ${detail} [${rule}]`);
  }
}

export type ParseRule =
  | 'missing-think-end'
  | 'tool-calls-in-reasoning'
  | 'special-token-in-text'
  | 'malformed-tool-calls'
  | 'malformed-invoke'
  | 'malformed-parameter'
  | 'duplicate-parameter'
  | 'unterminated-tool-calls'
  | 'text-after-tool-calls'
  | 'text-after-eos';

/** A completion that does not follow the format. `offset` is the position in the completion text. */
export class ChatParseError extends DsvError {
  constructor(
    readonly offset: number,
    readonly rule: ParseRule,
    detail: string,
  ) {
    super(`completion offset ${offset}: ${detail} [${rule}]`);
  }
}
