// The byte-level alphabet of GPT-2-style BPE: each of the 256 byte values is shown as one printable
// Unicode character, so a token is a string and merges can be written as "a b" lines. Bytes that are
// already printable and not whitespace (33–126, 161–172, 174–255) stand for themselves; the other 68
// are given code points 256, 257, … in increasing byte order. This is the mapping the ByteLevel
// pre-tokenizer and decoder of tokenizer.json apply, so our vocabulary must be written in it.

function build(): string[] {
  const chars: string[] = new Array(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    chars[b] = String.fromCodePoint(printable ? b : 256 + extra++);
  }
  return chars;
}

/** BYTE_CHARS[b] is the character that stands for byte b. */
export const BYTE_CHARS: readonly string[] = build();

/** The inverse: character → byte value. */
export const CHAR_BYTES: ReadonlyMap<string, number> = new Map(BYTE_CHARS.map((c, b) => [c, b]));
