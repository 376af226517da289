// Incremental detokenization of one generated sequence. Decoding the whole sequence at every step would
// cost O(n²); decoding only the new token is wrong for byte-level BPE, where one character's bytes can
// span tokens (alone, each decodes to U+FFFD) and where the text of a token can depend on its
// neighbours. So the decoder keeps a small window: `prefix` = tokens [from, read) whose text was already
// released, and on each token decodes [from, end). What the window adds beyond prefix's text is released
// once it does not end in U+FFFD (an incomplete character); then the window slides to start at `read`.
// The released pieces concatenate to the decode of the whole sequence.
import type { TextCodec } from './codec.js';

export class IncrementalDetokenizer {
  private readonly ids: number[] = [];
  private from = 0;
  private read = 0;

  constructor(
    private readonly codec: TextCodec,
    private readonly skipSpecialTokens: boolean,
  ) {}

  /** Add one token; returns the text it made certain ('' while a character is incomplete). */
  push(id: number): string {
    this.ids.push(id);
    return this.advance(false);
  }

  /** The text still held (an incomplete character at the very end), released as is. */
  flush(): string {
    return this.advance(true);
  }

  private advance(final: boolean): string {
    if (this.read === this.ids.length) return '';
    const opts = { skipSpecialTokens: this.skipSpecialTokens };
    const prefix = this.read > this.from ? this.codec.decode(this.ids.slice(this.from, this.read), opts) : '';
    const full = this.codec.decode(this.ids.slice(this.from), opts);
    if (!final && (full.length <= prefix.length || full.endsWith('\uFFFD'))) return '';
    const text = full.startsWith(prefix) ? full.slice(prefix.length) : full.slice(Math.min(prefix.length, full.length));
    this.from = this.read;
    this.read = this.ids.length;
    return text;
  }
}
