// Training data: a token stream cut into rows, and the batch of every step as a pure function of
// (seed, step), so a resumed run reads exactly the batches the uninterrupted run would have.
//
// Input (data.path: a file, or a directory whose files are read in name order):
//   - a packed corpus directory (`dsv32 data pack`: pack.json + <split>.tokens, little-endian uint16 or
//     uint32 ids per pack.json's dtype, documents already delimited by BOS/EOS): the data.split stream
//     as it is; with packMask (the sft stage) its <split>.mask names the training targets;
//   - a corpus directory built by `dsv32 data build` (it holds manifest.json): the documents of
//     data.split, each `text` tokenized with data.tokenizer;
//   - *.jsonl: one JSON object per line, either {"text": string} (tokenized with data.tokenizer) or
//     pre-tokenized {"ids": number[], "mask"?: (0|1)[]} — mask marks the tokens that are training
//     targets (SFT: the assistant's tokens; default all);
//   - *.u16 / *.u32: raw little-endian token ids, already in stream form (documents separated by EOS).
// Every document is followed by the EOS id (eos_token_id of the model) and the documents are
// concatenated into one stream; rows are the stream's consecutive non-overlapping windows of S tokens
// (the tail shorter than S is dropped). Step i takes rows g = i·B .. i·B + B − 1 of an endless sequence
// of epochs, each epoch a permutation of all rows seeded by (seed, epoch): row g is
// perm_{⌊g/R⌋}[g mod R] for R rows.
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { DsvError } from '../errors.js';
import { loadTokenizer } from '../chat/tokenizer.js';
import { MANIFEST_FILE, readDocuments } from '../data/manifest.js';
import { Rng } from '../tensor/random.js';

export class DataError extends DsvError {}

export interface DataSpec {
  path: string;
  /** tokenizer.json for text input */
  tokenizer?: string;
  /** corpus split (default 'train') */
  split?: 'train' | 'validation';
  /** use a packed corpus's loss mask (<split>.mask: the assistant's tokens of chat documents), as the sft
   *  stage does; otherwise every token of a pack is a target (pretraining) */
  packMask?: boolean;
}

export interface TokenStream {
  ids: Int32Array;
  /** 1 where the token is a training target; null: every token */
  mask: Uint8Array | null;
}

/** Read and tokenize the input into one stream (see the file header). */
export function loadTokens(spec: DataSpec, eos: number, vocab: number): TokenStream {
  const out = new StreamBuilder();
  let masked = false;
  let encode: ((text: string) => number[]) | null = null;
  const textEncoder = (where: string): ((text: string) => number[]) => {
    if (!spec.tokenizer) throw new DataError(`data.tokenizer: ${where} holds text; name a tokenizer.json to tokenize it`);
    if (!encode) {
      const tok = loadTokenizer(spec.tokenizer);
      encode = (t) => tok.encode(t);
    }
    return encode;
  };
  const push = (doc: ArrayLike<number>, m: ArrayLike<number> | null, where: string): void => {
    const ids = new Int32Array(doc.length + 1);
    const mk = new Uint8Array(doc.length + 1);
    for (let i = 0; i < doc.length; i++) {
      const t = doc[i]!;
      if (!Number.isInteger(t) || t < 0 || t >= vocab) throw new DataError(`${where}: token ${t} is not an id in [0, ${vocab}) (the model's vocab_size)`);
      ids[i] = t;
      mk[i] = m ? (m[i] ? 1 : 0) : 1;
    }
    ids[doc.length] = eos;
    mk[doc.length] = m ? 0 : 1;
    out.add(ids, mk);
  };
  const files = inputFiles(spec);
  for (const f of files) {
    if (f.kind === 'pack') {
      const split = spec.split ?? 'train';
      const pj = join(f.path, PACK_JSON);
      let m: { dtype?: unknown; splits?: Record<string, { tokensFile?: unknown; maskFile?: unknown }> };
      try {
        m = JSON.parse(readFileSync(pj, 'utf8')) as typeof m;
      } catch (e) {
        throw new DataError(`${pj}: not JSON (${(e as Error).message})`);
      }
      const tf = m.splits?.[split]?.tokensFile;
      if (typeof tf !== 'string' || (m.dtype !== 'uint16' && m.dtype !== 'uint32')) throw new DataError(`${pj}: expected dtype "uint16"|"uint32" and splits.${split}.tokensFile`);
      const [ids, all] = readRaw(join(f.path, tf), m.dtype === 'uint16' ? 2 : 4, vocab);
      const mf = m.splits?.[split]?.maskFile;
      if (spec.packMask && typeof mf === 'string') {
        const mk = readFileSync(join(f.path, mf));
        if (mk.length !== ids.length) throw new DataError(`${join(f.path, mf)}: ${mk.length} mask bytes for ${ids.length} tokens`);
        out.add(ids, new Uint8Array(mk.buffer, mk.byteOffset, mk.length));
        masked = true;
      } else out.add(ids, all);
    } else if (f.kind === 'corpus') {
      const enc = textEncoder(f.path);
      for (const d of readDocuments(f.path, spec.split ?? 'train')) push(enc(d.text), null, `${f.path}: ${d.id}`);
    } else if (f.kind === 'jsonl') {
      const lines = readFileSync(f.path, 'utf8').split('\n');
      lines.forEach((l, n) => {
        if (!l.trim()) return;
        const where = `${f.path}:${n + 1}`;
        let o: unknown;
        try {
          o = JSON.parse(l);
        } catch (e) {
          throw new DataError(`${where}: not JSON (${(e as Error).message})`);
        }
        const r = o as { text?: unknown; ids?: unknown; mask?: unknown };
        if (Array.isArray(r.ids)) {
          if (r.mask !== undefined && (!Array.isArray(r.mask) || r.mask.length !== r.ids.length)) throw new DataError(`${where}: mask must be an array as long as ids (${r.ids.length})`);
          if (r.mask) masked = true;
          push(r.ids as number[], (r.mask as number[] | undefined) ?? null, where);
        } else if (typeof r.text === 'string') push(textEncoder(where)(r.text), null, where);
        else throw new DataError(`${where}: expected {"text": string} or {"ids": number[], "mask"?: number[]}`);
      });
    } else out.add(...readRaw(f.path, f.kind === 'u16' ? 2 : 4, vocab));
  }
  if (!out.length) throw new DataError(`data.path: ${spec.path} holds no tokens`);
  return out.build(masked);
}

/** The stream's pieces, joined once at the end (corpora of 10⁸ tokens: typed arrays, not JS arrays). */
class StreamBuilder {
  private ids: Int32Array[] = [];
  private masks: Uint8Array[] = [];
  length = 0;

  add(ids: Int32Array, mask: Uint8Array): void {
    this.ids.push(ids);
    this.masks.push(mask);
    this.length += ids.length;
  }

  build(masked: boolean): TokenStream {
    const ids = new Int32Array(this.length);
    const mask = masked ? new Uint8Array(this.length) : null;
    let at = 0;
    this.ids.forEach((a, i) => {
      ids.set(a, at);
      mask?.set(this.masks[i]!, at);
      at += a.length;
    });
    return { ids, mask };
  }
}

const PACK_JSON = 'pack.json';

/** Raw little-endian ids of `width` bytes, taken into the stream as they are (every one a target). */
function readRaw(path: string, width: 2 | 4, vocab: number): [Int32Array, Uint8Array] {
  const buf = readFileSync(path);
  if (buf.length % width) throw new DataError(`${path}: ${buf.length} bytes is not a whole number of ${width}-byte token ids`);
  const n = buf.length / width;
  const ids = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const t = width === 2 ? buf.readUInt16LE(i * 2) : buf.readUInt32LE(i * 4);
    if (t >= vocab) throw new DataError(`${path}: token ${t} at index ${i} is not an id in [0, ${vocab}) (the model's vocab_size)`);
    ids[i] = t;
  }
  return [ids, new Uint8Array(n).fill(1)];
}

function inputFiles(spec: DataSpec): { kind: 'pack' | 'corpus' | 'jsonl' | 'u16' | 'u32'; path: string }[] {
  const p = spec.path;
  if (!existsSync(p)) throw new DataError(`data.path: ${p} does not exist`);
  const kindOf = (f: string): 'jsonl' | 'u16' | 'u32' | null => (f.endsWith('.jsonl') ? 'jsonl' : f.endsWith('.u16') ? 'u16' : f.endsWith('.u32') ? 'u32' : null);
  if (statSync(p).isDirectory()) {
    if (existsSync(join(p, PACK_JSON))) return [{ kind: 'pack', path: p }];
    if (existsSync(join(p, MANIFEST_FILE))) return [{ kind: 'corpus', path: p }];
    const out = readdirSync(p).sort().flatMap((f) => {
      const k = kindOf(f);
      return k ? [{ kind: k, path: join(p, f) }] : [];
    });
    if (!out.length) throw new DataError(`data.path: ${p} has no manifest.json and no *.jsonl, *.u16 or *.u32 files`);
    return out;
  }
  const k = kindOf(p);
  if (!k) throw new DataError(`data.path: ${p} is not a .jsonl, .u16 or .u32 file`);
  return [{ kind: k, path: p }];
}

/** The batches of a run: step → B rows of S tokens (row-major), with their target mask when the data has one. */
export class Batches {
  readonly rows: number;
  private perms = new Map<number, Uint32Array>();

  constructor(readonly stream: TokenStream, readonly B: number, readonly S: number, readonly seed: number) {
    this.rows = Math.floor(stream.ids.length / S);
    if (this.rows < 1) throw new DataError(`data: ${stream.ids.length} tokens do not fill one row of seq_len ${S}`);
  }

  private perm(epoch: number): Uint32Array {
    let p = this.perms.get(epoch);
    if (!p) {
      // Fisher–Yates with a generator seeded by (seed, epoch)
      const rng = new Rng((this.seed * 1000003 + epoch) >>> 0);
      p = Uint32Array.from({ length: this.rows }, (_, i) => i);
      for (let i = p.length - 1; i > 0; i--) {
        const j = rng.nextU32() % (i + 1);
        const t = p[i]!;
        p[i] = p[j]!;
        p[j] = t;
      }
      if (this.perms.size > 2) this.perms.clear();
      this.perms.set(epoch, p);
    }
    return p;
  }

  at(step: number): { ids: Int32Array; mask: Uint8Array | null } {
    const { B, S } = this;
    const ids = new Int32Array(B * S);
    const mask = this.stream.mask ? new Uint8Array(B * S) : null;
    for (let j = 0; j < B; j++) {
      const g = step * B + j;
      const row = this.perm(Math.floor(g / this.rows))[g % this.rows]!;
      ids.set(this.stream.ids.subarray(row * S, (row + 1) * S), j * S);
      if (mask) mask.set(this.stream.mask!.subarray(row * S, (row + 1) * S), j * S);
    }
    return { ids, mask };
  }
}
