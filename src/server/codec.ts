// What the server needs of a tokenizer (DeepSeekTokenizer in src/chat satisfies it), and the text and
// bytes of one token for logprobs. Without a tokenizer (--skip-tokenizer-init) tokens are named
// `token_id:<id>`, vLLM's spelling for the same situation.

export interface TextCodec {
  encode(text: string): number[];
  decode(ids: readonly number[], opts?: { skipSpecialTokens?: boolean }): string;
  idToToken(id: number): string | undefined;
}

// Byte-level BPE (GPT-2, DeepSeek-V3) stores each byte as a printable code point: the bytes that are
// printable Latin-1 (! to ~, ¡ to ¬, ® to ÿ) stand for themselves, the other 68 map in order to
// U+0100…U+0143. Inverting that table gives a vocabulary entry's exact bytes, which matter for tokens
// that hold part of a multi-byte character (their decoded text is only U+FFFD).
const BYTE_OF = (() => {
  const m = new Map<number, number>();
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    m.set(printable ? b : 256 + extra++, b);
  }
  return m;
})();

/** UTF-8 bytes of token `id`: its byte-level entry inverted, or the UTF-8 of an added token's text. */
export function tokenBytes(codec: TextCodec, id: number): number[] | null {
  const tok = codec.idToToken(id);
  if (tok === undefined) return null;
  const bytes: number[] = [];
  for (const ch of tok) {
    const b = BYTE_OF.get(ch.codePointAt(0)!);
    if (b === undefined) return Array.from(Buffer.from(tok, 'utf8')); // an added token (`<｜User｜>`)
    bytes.push(b);
  }
  return bytes;
}

/** The token's text as logprobs show it (a lone U+FFFD for a partial character). */
export function tokenText(codec: TextCodec | null, id: number): string {
  if (!codec) return `token_id:${id}`;
  const tok = codec.idToToken(id);
  if (tok === undefined) return `token_id:${id}`;
  return codec.decode([id]);
}
