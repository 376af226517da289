// Safetensors read/write: single files and Hugging Face sharded checkpoints.
//
// Format: an 8-byte little-endian u64 N, then N bytes of UTF-8 JSON
//   {"__metadata__": {str: str}, name: {"dtype": D, "shape": [..], "data_offsets": [begin, end]}, ...}
// then the raw little-endian tensor bytes; offsets are relative to the start of that data region.
//
// Reading never loads a whole file: the header is parsed on open and each tensor's byte range is read
// on demand with fs.readSync at its absolute position (a DeepSeek shard is ~4-5 GB, more than one Node
// Buffer may hold). Node has no mmap without a native addon, and a positioned read into a buffer the
// caller owns (readInto, e.g. a pinned host buffer for a GPU upload) is already a single copy.
// Tensor bytes are viewed as typed arrays directly, which assumes a little-endian host (x86-64, arm64).
// Writing streams one tensor at a time into a temporary file that is renamed over the target, so a
// crash never leaves a half-written checkpoint under the real name. The same bytes can be built in
// memory (encodeSafetensors) and read from memory (fromBytes): an RL trainer sends its policy to a
// rollout server that way, with no shared file system.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { DsvError } from '../errors.js';
import { type DType, ITEMSIZE, hostBytes, hostFromBytes } from './dtype.js';
import { Tensor, fmtShape, fromBits, numelOf } from './tensor.js';

export type StDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'F8_E4M3' | 'I64' | 'I32' | 'U8' | 'BOOL';

const ST_TO_DTYPE: Record<StDType, DType> = {
  F64: 'f64', F32: 'f32', F16: 'f16', BF16: 'bf16', F8_E4M3: 'f8e4m3', I64: 'i64', I32: 'i32', U8: 'u8', BOOL: 'bool',
};
const DTYPE_TO_ST: Record<DType, StDType> = {
  f64: 'F64', f32: 'F32', f16: 'F16', bf16: 'BF16', f8e4m3: 'F8_E4M3', i64: 'I64', i32: 'I32', u8: 'U8', bool: 'BOOL',
};

export function stDtypeToDtype(d: string): DType | undefined {
  return Object.hasOwn(ST_TO_DTYPE, d) ? ST_TO_DTYPE[d as StDType] : undefined;
}
export function dtypeToStDtype(d: DType): StDType {
  return DTYPE_TO_ST[d];
}

export interface TensorInfo {
  name: string;
  dtype: DType;
  shape: number[];
  /** absolute position of the first byte in the file */
  byteOffset: number;
  byteLength: number;
  file: string;
}

export class SafetensorsError extends DsvError {}

/** Same cap as the reference implementation: a larger header is corrupt or hostile. */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;
/** readSync moves at most ~2 GiB per call; bigger tensors are read in pieces. */
const READ_CHUNK = 1 << 30;

const entrySchema = z.strictObject({
  dtype: z.string(),
  shape: z.array(z.number().int().nonnegative()),
  data_offsets: z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()]),
});
const metadataSchema = z.record(z.string(), z.string());

function issueText(e: z.ZodError): string {
  const i = e.issues[0]!;
  return `${i.path.length ? `${i.path.join('.')}: ` : ''}${i.message}`;
}

/** Where a file's bytes come from: a file descriptor (positioned reads), or bytes already in memory. */
interface ByteSource {
  readonly size: number;
  /** copies up to `length` bytes at `position` into dst at dstOffset; returns how many (0: at the end) */
  read(dst: Uint8Array, dstOffset: number, length: number, position: number): number;
  close(): void;
}

function fdSource(fd: number): ByteSource {
  return {
    size: fs.fstatSync(fd).size,
    read: (dst, off, len, pos) => fs.readSync(fd, dst, off, Math.min(READ_CHUNK, len), pos),
    close: () => fs.closeSync(fd),
  };
}

function memorySource(bytes: Uint8Array): ByteSource {
  return {
    size: bytes.byteLength,
    read: (dst, off, len, pos) => {
      const n = Math.max(0, Math.min(len, bytes.byteLength - pos));
      dst.set(bytes.subarray(pos, pos + n), off);
      return n;
    },
    close: () => {},
  };
}

/** One .safetensors file with its header parsed; tensor data is read lazily by byte range. */
export class SafetensorsFile {
  readonly path: string;
  readonly metadata: Record<string, string>;
  /** absolute file position where the data region starts (8 + header length) */
  readonly dataStart: number;
  private src: ByteSource | null;
  private readonly infos: Map<string, TensorInfo>;

  private constructor(file: string, src: ByteSource) {
    try {
      const { metadata, dataStart, infos } = parseHeader(file, src);
      this.path = file;
      this.src = src;
      this.metadata = metadata;
      this.dataStart = dataStart;
      this.infos = infos;
    } catch (e) {
      src.close();
      throw e;
    }
  }

  static open(file: string): SafetensorsFile {
    let fd: number;
    try {
      fd = fs.openSync(file, 'r');
    } catch (e) {
      throw new SafetensorsError(`${file}: cannot open safetensors file (${(e as NodeJS.ErrnoException).code ?? String(e)})`, { cause: e });
    }
    return new SafetensorsFile(file, fdSource(fd));
  }

  /** A whole safetensors file held in memory (e.g. a request body); `shownAs` names it in errors. */
  static fromBytes(bytes: Uint8Array, shownAs: string): SafetensorsFile {
    return new SafetensorsFile(shownAs, memorySource(bytes));
  }

  /** Tensor names in file (data offset) order. */
  keys(): string[] {
    return [...this.infos.keys()];
  }
  has(name: string): boolean {
    return this.infos.has(name);
  }
  info(name: string): TensorInfo {
    const i = this.infos.get(name);
    if (!i) throw new SafetensorsError(`${this.path}: no tensor named '${name}' (the file has ${this.infos.size} tensors)`);
    return { ...i, shape: [...i.shape] };
  }

  /** Exactly that tensor's bytes, in a fresh (8-byte aligned) buffer. */
  readBytes(name: string): Uint8Array {
    const i = this.info(name);
    const out = new Uint8Array(i.byteLength);
    this.readInto(name, out);
    return out;
  }

  /** Read the tensor's bytes into `dst` at `dstOffset` (e.g. a pinned host buffer). */
  readInto(name: string, dst: Uint8Array, dstOffset = 0): void {
    const i = this.info(name);
    if (dstOffset < 0 || dstOffset + i.byteLength > dst.byteLength) {
      throw new SafetensorsError(`${this.path}: tensor '${name}' needs ${i.byteLength} bytes at offset ${dstOffset}, destination holds ${dst.byteLength}`);
    }
    const src = this.requireOpen(name);
    let done = 0;
    while (done < i.byteLength) {
      const got = src.read(dst, dstOffset + done, i.byteLength - done, i.byteOffset + done);
      if (got === 0) {
        throw new SafetensorsError(`${this.path}: tensor '${name}': file ended after ${done} of ${i.byteLength} bytes (truncated since it was opened?)`);
      }
      done += got;
    }
  }

  /** The tensor in its stored dtype, on `device` (default: the current default device). */
  tensor(name: string, opts: { device?: string } = {}): Tensor {
    const i = this.info(name);
    const host = hostFromBytes(i.dtype, this.readBytes(name));
    return fromBits(host, i.dtype, i.shape, opts.device ? { device: opts.device } : {});
  }

  close(): void {
    if (this.src !== null) {
      this.src.close();
      this.src = null;
    }
  }

  private requireOpen(name: string): ByteSource {
    if (this.src === null) throw new SafetensorsError(`${this.path}: cannot read tensor '${name}': the file was closed`);
    return this.src;
  }
}

function readExact(file: string, src: ByteSource, length: number, position: number, what: string): Uint8Array {
  const buf = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const got = src.read(buf, done, length - done, position + done);
    if (got === 0) throw new SafetensorsError(`${file}: truncated while reading ${what} (${done} of ${length} bytes)`);
    done += got;
  }
  return buf;
}

function parseHeader(file: string, src: ByteSource): { metadata: Record<string, string>; dataStart: number; infos: Map<string, TensorInfo> } {
  const size = src.size;
  if (size < 8) throw new SafetensorsError(`${file}: ${size} bytes is too short for a safetensors file (the 8-byte header length is missing)`);
  const lenBytes = readExact(file, src, 8, 0, 'the header length');
  const n64 = new DataView(lenBytes.buffer).getBigUint64(0, true);
  if (n64 > BigInt(size - 8)) {
    throw new SafetensorsError(`${file}: header length ${n64} is larger than the file (${size} bytes); not a safetensors file, or truncated`);
  }
  const n = Number(n64);
  if (n > MAX_HEADER_BYTES) throw new SafetensorsError(`${file}: header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  const raw = readExact(file, src, n, 8, 'the header');
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(raw));
  } catch (e) {
    throw new SafetensorsError(`${file}: header is not valid UTF-8 JSON (${(e as Error).message})`, { cause: e });
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) {
    throw new SafetensorsError(`${file}: header must be a JSON object, got ${Array.isArray(header) ? 'an array' : header === null ? 'null' : typeof header}`);
  }
  const dataStart = 8 + n;
  const dataSize = size - dataStart;
  let metadata: Record<string, string> = {};
  const entries: TensorInfo[] = [];
  for (const [name, value] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      const m = metadataSchema.safeParse(value);
      if (!m.success) throw new SafetensorsError(`${file}: __metadata__ must map strings to strings (${issueText(m.error)})`);
      metadata = m.data;
      continue;
    }
    const p = entrySchema.safeParse(value);
    if (!p.success) throw new SafetensorsError(`${file}: tensor '${name}': malformed header entry (${issueText(p.error)})`);
    const { dtype: st, shape, data_offsets: [begin, end] } = p.data;
    const dtype = stDtypeToDtype(st);
    if (!dtype) {
      throw new SafetensorsError(`${file}: tensor '${name}': unknown dtype '${st}' (supported: ${Object.keys(ST_TO_DTYPE).join(', ')})`);
    }
    if (end < begin) throw new SafetensorsError(`${file}: tensor '${name}': data_offsets [${begin}, ${end}] end before they begin`);
    const expected = numelOf(shape) * ITEMSIZE[dtype];
    if (end - begin !== expected) {
      throw new SafetensorsError(
        `${file}: tensor '${name}': data_offsets [${begin}, ${end}] span ${end - begin} bytes, but shape ${fmtShape(shape)} of ${st} needs ${expected}`,
      );
    }
    if (end > dataSize) {
      throw new SafetensorsError(
        `${file}: tensor '${name}': data_offsets [${begin}, ${end}] run past the end of the data (${dataSize} bytes); the file is truncated or corrupt`,
      );
    }
    entries.push({ name, dtype, shape, byteOffset: dataStart + begin, byteLength: end - begin, file });
  }
  entries.sort((a, b) => a.byteOffset - b.byteOffset || a.byteLength - b.byteLength);
  for (let k = 1; k < entries.length; k++) {
    const prev = entries[k - 1]!;
    const cur = entries[k]!;
    // zero-byte tensors occupy no range and cannot overlap anything
    if (cur.byteLength > 0 && prev.byteLength > 0 && cur.byteOffset < prev.byteOffset + prev.byteLength) {
      const r = (t: TensorInfo): string => `[${t.byteOffset - dataStart}, ${t.byteOffset - dataStart + t.byteLength}]`;
      throw new SafetensorsError(`${file}: tensors '${prev.name}' ${r(prev)} and '${cur.name}' ${r(cur)} have overlapping data_offsets`);
    }
  }
  return { metadata, dataStart, infos: new Map(entries.map((e) => [e.name, e])) };
}

// ---- checkpoints ---------------------------------------------------------------------------------
export const INDEX_FILE = 'model.safetensors.index.json';
export const SINGLE_FILE = 'model.safetensors';

const indexSchema = z.object({
  metadata: z.record(z.string(), z.unknown()).optional(),
  weight_map: z.record(z.string(), z.string()),
});

/**
 * A checkpoint: a directory holding model.safetensors or shards listed in model.safetensors.index.json
 * (the Hugging Face layout), or a single .safetensors file. Every shard's header is read and checked
 * against the index on open; tensor data stays on disk until asked for.
 */
export class Checkpoint {
  readonly path: string;
  /** the index's metadata (sharded) or the file's __metadata__ (single file) */
  readonly metadata: Record<string, unknown>;
  private readonly files: SafetensorsFile[];
  private readonly where: Map<string, SafetensorsFile>;

  private constructor(p: string, metadata: Record<string, unknown>, files: SafetensorsFile[], where: Map<string, SafetensorsFile>) {
    this.path = p;
    this.metadata = metadata;
    this.files = files;
    this.where = where;
  }

  static open(pathOrDir: string): Checkpoint {
    let st: fs.Stats;
    try {
      st = fs.statSync(pathOrDir);
    } catch (e) {
      throw new SafetensorsError(`${pathOrDir}: no such checkpoint file or directory`, { cause: e });
    }
    if (!st.isDirectory()) return Checkpoint.single(pathOrDir);
    const index = path.join(pathOrDir, INDEX_FILE);
    if (fs.existsSync(index)) return Checkpoint.sharded(pathOrDir, index);
    const single = path.join(pathOrDir, SINGLE_FILE);
    if (fs.existsSync(single)) return Checkpoint.single(single, pathOrDir);
    throw new SafetensorsError(`${pathOrDir}: not a checkpoint directory (neither ${INDEX_FILE} nor ${SINGLE_FILE} is in it)`);
  }

  /** A single-file checkpoint held in memory (encodeSafetensors' bytes); `shownAs` names it in errors. */
  static fromBytes(bytes: Uint8Array, shownAs: string): Checkpoint {
    return Checkpoint.of(SafetensorsFile.fromBytes(bytes, shownAs), shownAs);
  }

  private static single(file: string, shownAs = file): Checkpoint {
    return Checkpoint.of(SafetensorsFile.open(file), shownAs);
  }

  private static of(f: SafetensorsFile, shownAs: string): Checkpoint {
    return new Checkpoint(shownAs, { ...f.metadata }, [f], new Map(f.keys().map((k) => [k, f])));
  }

  private static sharded(dir: string, index: string): Checkpoint {
    let parsed: z.infer<typeof indexSchema>;
    try {
      const j = indexSchema.safeParse(JSON.parse(fs.readFileSync(index, 'utf8')));
      if (!j.success) throw new SafetensorsError(`${index}: not a safetensors index (${issueText(j.error)})`);
      parsed = j.data;
    } catch (e) {
      if (e instanceof SafetensorsError) throw e;
      throw new SafetensorsError(`${index}: cannot read the index as JSON (${(e as Error).message})`, { cause: e });
    }
    const shards = new Map<string, SafetensorsFile>();
    const where = new Map<string, SafetensorsFile>();
    try {
      for (const [name, shard] of Object.entries(parsed.weight_map)) {
        if (shard !== path.basename(shard) || shard === '.' || shard === '..') {
          throw new SafetensorsError(`${index}: tensor '${name}' maps to '${shard}', expected a file name inside the checkpoint directory`);
        }
        let f = shards.get(shard);
        if (!f) {
          const p = path.join(dir, shard);
          if (!fs.existsSync(p)) throw new SafetensorsError(`${index}: shard '${shard}' (holding tensor '${name}') does not exist in ${dir}`);
          f = SafetensorsFile.open(p);
          shards.set(shard, f);
        }
        if (!f.has(name)) throw new SafetensorsError(`${index}: tensor '${name}' is not in its shard ${f.path}`);
        where.set(name, f);
      }
    } catch (e) {
      for (const f of shards.values()) f.close();
      throw e;
    }
    return new Checkpoint(dir, parsed.metadata ?? {}, [...shards.values()], where);
  }

  keys(): string[] {
    return [...this.where.keys()];
  }
  has(name: string): boolean {
    return this.where.has(name);
  }
  info(name: string): TensorInfo {
    return this.fileOf(name).info(name);
  }
  readBytes(name: string): Uint8Array {
    return this.fileOf(name).readBytes(name);
  }
  readInto(name: string, dst: Uint8Array, dstOffset = 0): void {
    this.fileOf(name).readInto(name, dst, dstOffset);
  }
  tensor(name: string, opts: { device?: string } = {}): Tensor {
    return this.fileOf(name).tensor(name, opts);
  }
  /** The shard files (one for a single-file checkpoint). */
  shardPaths(): string[] {
    return this.files.map((f) => f.path);
  }
  close(): void {
    for (const f of this.files) f.close();
  }

  private fileOf(name: string): SafetensorsFile {
    const f = this.where.get(name);
    if (!f) throw new SafetensorsError(`${this.path}: checkpoint has no tensor named '${name}' (${this.where.size} tensors)`);
    return f;
  }
}

// ---- writing -------------------------------------------------------------------------------------
export type TensorMap = Record<string, Tensor> | Map<string, Tensor>;

function entriesOf(tensors: TensorMap): [string, Tensor][] {
  return tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
}

function checkWritable(where: string, entries: [string, Tensor][], metadata: Record<string, string> | undefined): void {
  for (const [name, t] of entries) {
    if (name === '' || name === '__metadata__') throw new SafetensorsError(`${where}: '${name}' cannot be used as a tensor name`);
    if (!(t instanceof Tensor)) throw new SafetensorsError(`${where}: value for '${name}' is not a Tensor`);
  }
  for (const [k, v] of Object.entries(metadata ?? {})) {
    if (typeof v !== 'string') throw new SafetensorsError(`${where}: metadata '${k}' must be a string, got ${typeof v}`);
  }
}

/**
 * Layout order: larger items first, then by name. With the header padded to 8 bytes every tensor then
 * starts at a multiple of its item size (the order the reference writer uses), so readers can view the
 * data as typed arrays without copying.
 */
function layoutOrder(entries: [string, Tensor][]): [string, Tensor][] {
  return [...entries].sort(([an, a], [bn, b]) => ITEMSIZE[b.dtype] - ITEMSIZE[a.dtype] || (an < bn ? -1 : an > bn ? 1 : 0));
}

function tensorBytes(t: Tensor): number {
  return t.numel * ITEMSIZE[t.dtype];
}

/**
 * The bytes of a safetensors file of `entries` (already in layout order), piece by piece: the header's
 * length, the header, then each tensor's bytes, read from its device only when its turn comes.
 */
function* encoded(entries: [string, Tensor][], metadata: Record<string, string> | undefined): Generator<Uint8Array> {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length) header['__metadata__'] = metadata;
  let off = 0;
  for (const [name, t] of entries) {
    const n = tensorBytes(t);
    header[name] = { dtype: DTYPE_TO_ST[t.dtype], shape: [...t.shape], data_offsets: [off, off + n] };
    off += n;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (8 - (json.length % 8)) % 8;
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  yield len;
  yield json;
  for (const [, t] of entries) yield hostBytes(t.toHost());
}

/** Write `tensors` to `file` as safetensors, streaming tensor by tensor; atomic (temp file + rename). */
export function saveSafetensors(file: string, tensors: TensorMap, metadata?: Record<string, string>): void {
  const entries = layoutOrder(entriesOf(tensors));
  checkWritable(file, entries, metadata);
  writeAtomically(file, (fd) => {
    for (const part of encoded(entries, metadata)) writeAll(fd, part);
  });
}

/**
 * `tensors` as the pieces of one safetensors file in memory (the bytes saveSafetensors writes), e.g. for
 * a request body; SafetensorsFile.fromBytes / Checkpoint.fromBytes read it back.
 */
export function encodeSafetensors(tensors: TensorMap, metadata?: Record<string, string>): Uint8Array[] {
  const entries = layoutOrder(entriesOf(tensors));
  checkWritable('<memory>', entries, metadata);
  return [...encoded(entries, metadata)];
}

function writeAll(fd: number, data: Uint8Array): void {
  let done = 0;
  while (done < data.byteLength) done += fs.writeSync(fd, data, done, Math.min(READ_CHUNK, data.byteLength - done));
}

function writeAtomically(file: string, body: (fd: number) => void): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 10)}`);
  let fd: number;
  try {
    fd = fs.openSync(tmp, 'w');
  } catch (e) {
    throw new SafetensorsError(`${file}: cannot create a file next to it (${(e as NodeJS.ErrnoException).code ?? String(e)})`, { cause: e });
  }
  try {
    body(fd);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(tmp, file);
  } catch (e) {
    try {
      fs.closeSync(fd);
    } catch {
      // already closed
    }
    fs.rmSync(tmp, { force: true });
    if (e instanceof DsvError) throw e;
    throw new SafetensorsError(`${file}: write failed (${(e as Error).message})`, { cause: e });
  }
}

export interface ShardOptions {
  /** shard size limit in bytes of tensor data; a single larger tensor gets a shard of its own */
  maxShardBytes: number;
  /** written into every shard's __metadata__ and the index's metadata */
  metadata?: Record<string, string>;
}

/** Write a Hugging Face sharded checkpoint: model-0000i-of-0000n.safetensors + model.safetensors.index.json. */
export function saveSharded(dir: string, tensors: TensorMap, opts: ShardOptions): string[] {
  if (!(opts.maxShardBytes > 0)) throw new SafetensorsError(`${dir}: maxShardBytes must be a positive number of bytes, got ${opts.maxShardBytes}`);
  const entries = entriesOf(tensors);
  checkWritable(dir, entries, opts.metadata);
  // Greedy packing in the caller's order keeps related tensors (one layer) in the same shard.
  const shards: [string, Tensor][][] = [[]];
  let cur = 0;
  for (const e of entries) {
    const n = tensorBytes(e[1]);
    const last = shards[shards.length - 1]!;
    if (last.length && cur + n > opts.maxShardBytes) {
      shards.push([e]);
      cur = n;
    } else {
      last.push(e);
      cur += n;
    }
  }
  fs.mkdirSync(dir, { recursive: true });
  const total = shards.length;
  const pad = (i: number): string => String(i).padStart(5, '0');
  const names = shards.map((_, i) => `model-${pad(i + 1)}-of-${pad(total)}.safetensors`);
  const weightMap: Record<string, string> = {};
  let totalSize = 0;
  shards.forEach((shard, i) => {
    saveSafetensors(path.join(dir, names[i]!), new Map(shard), opts.metadata);
    for (const [name, t] of shard) {
      weightMap[name] = names[i]!;
      totalSize += tensorBytes(t);
    }
  });
  const index = JSON.stringify({ metadata: { ...opts.metadata, total_size: totalSize }, weight_map: weightMap }, null, 2) + '\n';
  writeAtomically(path.join(dir, INDEX_FILE), (fd) => writeAll(fd, Buffer.from(index, 'utf8')));
  return names.map((n) => path.join(dir, n));
}

/** A source of named tensors: a Map, a record, or an open checkpoint/file read lazily. */
export interface TensorSource {
  keys(): string[];
  tensor(name: string, opts?: { device?: string }): Tensor;
}
