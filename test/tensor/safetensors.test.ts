import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import * as T from '../../src/tensor/index.js';
import { Checkpoint, SafetensorsError, SafetensorsFile, encodeSafetensors, saveSafetensors, saveSharded } from '../../src/tensor/safetensors.js';

const REPO = path.resolve(import.meta.dirname, '../../..');
const FIX = path.resolve(REPO, '../shared/fixtures');

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'dsv32-st-'));
}

function python(script: string, ...args: string[]): string {
  const r = spawnSync('python3', ['-c', script, ...args], { encoding: 'utf8' });
  if (r.error) throw r.error;
  assert.equal(r.status, 0, `python3 failed: ${r.stderr}`);
  return r.stdout;
}

/** Write a safetensors file from a raw header object and data bytes (for corrupt-file tests). */
function writeRaw(file: string, header: unknown, data: Uint8Array, headerLen?: bigint): void {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(headerLen ?? BigInt(json.length));
  fs.writeFileSync(file, Buffer.concat([len, json, data]));
}

function expectStError(fn: () => unknown, ...parts: (string | RegExp)[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof SafetensorsError, `expected SafetensorsError, got ${e}`);
    for (const p of parts) {
      if (typeof p === 'string') assert.ok(e.message.includes(p), `message ${JSON.stringify(e.message)} lacks ${JSON.stringify(p)}`);
      else assert.match(e.message, p);
    }
    return true;
  });
}

// ---- the real fixtures ---------------------------------------------------------------------------
const H = 256, V = 1024, QL = 128, KVL = 128, NOPE = 32, ROPE = 16, VH = 32, HEADS = 4, INTER = 512, MOE = 64, EXPERTS = 8;

/** Every tensor of the tiny DeepSeek-V3.2 checkpoints with its shape, from the fixtures README. */
function expectedModel(): Map<string, { shape: number[]; quantised: boolean; f32?: boolean }> {
  const m = new Map<string, { shape: number[]; quantised: boolean; f32?: boolean }>();
  const w = (n: string, shape: number[], quantised = false, f32 = false): void => void m.set(n, { shape, quantised, f32 });
  w('model.embed_tokens.weight', [V, H]);
  w('model.norm.weight', [H]);
  w('lm_head.weight', [V, H]);
  for (let l = 0; l < 3; l++) {
    const p = `model.layers.${l}.`;
    w(p + 'input_layernorm.weight', [H]);
    w(p + 'post_attention_layernorm.weight', [H]);
    w(p + 'self_attn.q_a_proj.weight', [QL, H], true);
    w(p + 'self_attn.q_a_layernorm.weight', [QL]);
    w(p + 'self_attn.q_b_proj.weight', [HEADS * (NOPE + ROPE), QL], true);
    w(p + 'self_attn.kv_a_proj_with_mqa.weight', [KVL + ROPE, H], true);
    w(p + 'self_attn.kv_a_layernorm.weight', [KVL]);
    w(p + 'self_attn.kv_b_proj.weight', [HEADS * (NOPE + VH), KVL], true);
    w(p + 'self_attn.o_proj.weight', [H, HEADS * VH], true);
    w(p + 'self_attn.indexer.wq_b.weight', [4 * 128, QL], true);
    w(p + 'self_attn.indexer.wk.weight', [128, H], true);
    w(p + 'self_attn.indexer.k_norm.weight', [128]);
    w(p + 'self_attn.indexer.k_norm.bias', [128]);
    w(p + 'self_attn.indexer.weights_proj.weight', [4, H]);
    if (l === 0) {
      w(p + 'mlp.gate_proj.weight', [INTER, H], true);
      w(p + 'mlp.up_proj.weight', [INTER, H], true);
      w(p + 'mlp.down_proj.weight', [H, INTER], true);
    } else {
      w(p + 'mlp.gate.weight', [EXPERTS, H]);
      w(p + 'mlp.gate.e_score_correction_bias', [EXPERTS], false, true);
      for (let e = 0; e < EXPERTS; e++) {
        w(p + `mlp.experts.${e}.gate_proj.weight`, [MOE, H], true);
        w(p + `mlp.experts.${e}.up_proj.weight`, [MOE, H], true);
        w(p + `mlp.experts.${e}.down_proj.weight`, [H, MOE], true);
      }
      w(p + 'mlp.shared_experts.gate_proj.weight', [MOE, H], true);
      w(p + 'mlp.shared_experts.up_proj.weight', [MOE, H], true);
      w(p + 'mlp.shared_experts.down_proj.weight', [H, MOE], true);
    }
  }
  return m;
}

test('tiny-bf16 model.safetensors: every name, dtype and shape of the fixtures README', () => {
  const f = SafetensorsFile.open(path.join(FIX, 'tiny-bf16/model.safetensors'));
  try {
    const want = expectedModel();
    assert.deepEqual([...f.keys()].sort(), [...want.keys()].sort());
    assert.deepEqual(f.metadata, { format: 'pt' });
    for (const [name, e] of want) {
      const i = f.info(name);
      assert.deepEqual(i.shape, e.shape, name);
      assert.equal(i.dtype, e.f32 ? 'f32' : 'bf16', name);
      assert.equal(i.byteLength, e.shape.reduce((a, b) => a * b, 1) * (e.f32 ? 4 : 2));
    }
    // RMSNorm weights were drawn as 1 + N(0, 0.05²): decoded bf16 must sit near 1.
    const norm = f.tensor('model.norm.weight').toFloat64();
    const mean = norm.reduce((a, b) => a + b, 0) / norm.length;
    assert.ok(Math.abs(mean - 1) < 0.02 && norm.every((x) => x > 0.7 && x < 1.3), `norm weight mean ${mean}`);
  } finally {
    f.close();
  }
});

test('tiny-fp8: F8_E4M3 weights with power-of-two F32 block scales dequantise to the tiny-bf16 weights', () => {
  const ck8 = Checkpoint.open(path.join(FIX, 'tiny-fp8'));
  const ckb = Checkpoint.open(path.join(FIX, 'tiny-bf16'));
  try {
    const want = expectedModel();
    const keys = new Set(ck8.keys());
    assert.equal(keys.size, 184);
    for (const [name, e] of want) {
      const i = ck8.info(name);
      assert.deepEqual(i.shape, e.shape, name);
      assert.equal(i.dtype, e.quantised ? 'f8e4m3' : e.f32 ? 'f32' : 'bf16', name);
      if (e.quantised) {
        const s = ck8.info(`${name}_scale_inv`);
        assert.equal(s.dtype, 'f32');
        assert.deepEqual(s.shape, [Math.ceil(e.shape[0]! / 128), Math.ceil(e.shape[1]! / 128)]);
        keys.delete(`${name}_scale_inv`);
      }
      keys.delete(name);
    }
    assert.deepEqual([...keys], [], 'tensors not in the README');

    for (const name of ['model.layers.0.self_attn.kv_a_proj_with_mqa.weight', 'model.layers.2.mlp.experts.5.down_proj.weight']) {
      const [rows, cols] = ck8.info(name).shape as [number, number];
      const w8 = ck8.tensor(name).toFloat64();
      const s = ck8.tensor(`${name}_scale_inv`).toFloat64();
      const wb = ckb.tensor(name).toFloat64();
      const sc = Math.ceil(cols / 128);
      for (const v of s) assert.equal(2 ** Math.round(Math.log2(v)), v, `scale ${v} is not a power of two`);
      const blockMax = new Float64Array(s.length);
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < cols; c++) {
          const b = Math.floor(r / 128) * sc + Math.floor(c / 128);
          const q = w8[r * cols + c]!;
          blockMax[b] = Math.max(blockMax[b]!, Math.abs(q));
          // e4m3 keeps 3 mantissa bits: relative error ≤ 2^-4, plus the subnormal step 2^-9 (half of it) of the block
          const ref = wb[r * cols + c]!;
          assert.ok(Math.abs(q * s[b]! - ref) <= Math.abs(ref) * 2 ** -4 + s[b]! * 2 ** -10, `${name}[${r},${c}]: ${q}·${s[b]} vs ${ref}`);
        }
      }
      // s = 2^ceil(log2(amax/448)) ⇒ amax/s ∈ (224, 448], which e4m3 (step 16 there) rounds into [224, 448]
      for (const m of blockMax) assert.ok(m >= 224 && m <= 448, `block max ${m}`);
    }
  } finally {
    ck8.close();
    ckb.close();
  }
});

test('golden.safetensors keys, dtypes and shapes match golden.json; tiny-f32 weights are the tiny-bf16 bytes', () => {
  for (const set of ['tiny-f32', 'tiny-bf16', 'tiny-fp8']) {
    const meta = JSON.parse(fs.readFileSync(path.join(FIX, set, 'golden.json'), 'utf8')) as { keys: Record<string, { dtype: string; shape: number[] }> };
    const f = SafetensorsFile.open(path.join(FIX, set, 'golden.safetensors'));
    try {
      assert.deepEqual(f.keys().sort(), Object.keys(meta.keys).sort());
      for (const [k, v] of Object.entries(meta.keys)) {
        assert.deepEqual(f.info(k).shape, v.shape, `${set} ${k}`);
        assert.equal(f.info(k).dtype, { I64: 'i64', F32: 'f32' }[v.dtype], `${set} ${k}`);
      }
      assert.ok(f.metadata['run_dtype'] && f.metadata['device']);
      const tokens = f.tensor('tokens').toHost() as BigInt64Array;
      assert.deepEqual(f.tensor('tokens').shape, [2, 48]);
      assert.equal(tokens[0], 0n); // bos
      assert.equal(tokens[48], 0n);
      for (const t of tokens) assert.ok(t >= 0n && t < 1024n);
    } finally {
      f.close();
    }
  }
  const a = SafetensorsFile.open(path.join(FIX, 'tiny-f32/model.safetensors'));
  const b = SafetensorsFile.open(path.join(FIX, 'tiny-bf16/model.safetensors'));
  for (const k of ['lm_head.weight', 'model.layers.1.mlp.gate.e_score_correction_bias']) assert.deepEqual(a.readBytes(k), b.readBytes(k));
  a.close();
  b.close();
});

test('reads are lazy: opening a 5 MB file and reading one tensor touches only its header and that range', () => {
  const real = fs.readSync;
  let bytes = 0;
  (fs as unknown as { default: { readSync: typeof fs.readSync } }).default.readSync = ((...args: Parameters<typeof fs.readSync>) => {
    const n = (real as (...a: unknown[]) => number)(...args);
    bytes += n;
    return n;
  }) as typeof fs.readSync;
  syncBuiltinESMExports();
  try {
    const file = path.join(FIX, 'tiny-bf16/model.safetensors');
    const f = SafetensorsFile.open(file);
    const headerBytes = f.dataStart; // the 8-byte length, then the JSON header
    assert.equal(bytes, headerBytes);
    const t = f.tensor('model.layers.0.input_layernorm.weight');
    assert.equal(bytes, headerBytes + 512);
    assert.deepEqual(t.shape, [256]);
    f.close();
    assert.ok(fs.statSync(file).size > 5_000_000);
  } finally {
    (fs as unknown as { default: { readSync: typeof fs.readSync } }).default.readSync = real;
    syncBuiltinESMExports();
  }
});

// ---- round trips ---------------------------------------------------------------------------------
function allDtypeTensors(): Map<string, T.Tensor> {
  const m = new Map<string, T.Tensor>();
  m.set('f64', T.fromArray(new Float64Array([Math.PI, -0, 1e-310, Infinity, NaN, -1.5e300]), [2, 3]));
  m.set('f32', T.fromArray(new Float32Array([1.5, -2.25, 3.4e38, 1e-45, NaN, -Infinity]), [3, 2]));
  // raw bit patterns: NaN payloads, subnormals, signed zero, max finite, e4m3's NaN 0x7f/0xff
  m.set('f16', T.fromBits(new Uint16Array([0x3c00, 0x0001, 0x7bff, 0x8000, 0x7e00, 0xfc00]), 'f16', [6]));
  m.set('bf16', T.fromBits(new Uint16Array([0x3f80, 0xc049, 0x7f7f, 0x0001, 0x7fc1, 0xff80]), 'bf16', [1, 6]));
  m.set('f8', T.fromBits(new Uint8Array([0x00, 0x01, 0x7e, 0x7f, 0x80, 0xfe, 0xff, 0x38]), 'f8e4m3', [2, 2, 2]));
  m.set('i64', T.fromArray(new BigInt64Array([-(2n ** 63n), 2n ** 62n + 1n, -1n, 0n]), [4]));
  m.set('i32', T.fromArray(new Int32Array([-(2 ** 31), 2 ** 31 - 1, 7]), [3]));
  m.set('u8', T.fromBits(new Uint8Array([0, 127, 255]), 'u8', [3]));
  m.set('bool', T.fromBits(new Uint8Array([1, 0, 0, 1]), 'bool', [2, 2]));
  m.set('scalar', T.scalar(42.5));
  m.set('empty', T.zeros([0, 3], { dtype: 'bf16' }));
  // a transposed (non-contiguous) view is written in row-major order
  m.set('transposed', T.transpose(T.tensor([[1, 2, 3], [4, 5, 6]], { dtype: 'i32' })));
  return m;
}

test('every dtype round-trips bit-exactly (F64 F32 F16 BF16 F8_E4M3 I64 I32 U8 BOOL, scalar, empty, strided)', () => {
  const dir = tmpDir();
  const file = path.join(dir, 'all.safetensors');
  const src = allDtypeTensors();
  saveSafetensors(file, src, { note: 'round trip', 'ünïcode': '✓' });
  const f = SafetensorsFile.open(file);
  try {
    assert.deepEqual(f.metadata, { note: 'round trip', 'ünïcode': '✓' });
    assert.deepEqual(f.keys().sort(), [...src.keys()].sort());
    // header padded so data starts 8-aligned; each tensor aligned to its item size
    assert.equal(f.dataStart % 8, 0);
    for (const [name, t] of src) {
      const i = f.info(name);
      assert.equal(i.dtype, t.dtype, name);
      assert.deepEqual(i.shape, [...t.shape], name);
      assert.equal(i.byteOffset % T.ITEMSIZE[t.dtype], 0, name);
      const want = T.hostBytes(t.toHost());
      assert.deepEqual(f.readBytes(name), new Uint8Array(want), name);
      const back = f.tensor(name);
      assert.equal(back.dtype, t.dtype);
      assert.deepEqual(back.shape, [...t.shape]);
      assert.deepEqual(new Uint8Array(T.hostBytes(back.toHost())), new Uint8Array(want), name);
    }
    assert.deepEqual(f.tensor('transposed').toArray(), [[1, 4], [2, 5], [3, 6]]);
  } finally {
    f.close();
    fs.rmSync(dir, { recursive: true });
  }
});

test('in memory: encodeSafetensors gives the bytes saveSafetensors writes, and fromBytes reads them back as a file would be read', () => {
  const dir = tmpDir();
  const file = path.join(dir, 'all.safetensors');
  const src = allDtypeTensors();
  try {
    saveSafetensors(file, src, { note: 'm' });
    const parts = encodeSafetensors(src, { note: 'm' });
    const bytes = Buffer.concat(parts.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength)));
    assert.ok(bytes.equals(fs.readFileSync(file)), 'the same bytes as the file');
    const ck = Checkpoint.fromBytes(bytes, 'the body');
    assert.deepEqual(ck.metadata, { note: 'm' });
    for (const [name, t] of src) assert.deepEqual(new Uint8Array(T.hostBytes(ck.tensor(name).toHost())), new Uint8Array(T.hostBytes(t.toHost())), name);
    // cut short, or not safetensors at all: the same errors as a file's, naming what was given
    expectStError(() => SafetensorsFile.fromBytes(bytes.subarray(0, bytes.length - 3), 'the body'), 'the body', 'truncated');
    expectStError(() => Checkpoint.fromBytes(new Uint8Array([1, 2, 3]), 'the body'), 'the body', 'too short');
    expectStError(() => ck.tensor('nope'), 'the body', "no tensor named 'nope'");
  } finally {
    fs.rmSync(dir, { recursive: true });
  }
});

test('re-saving tiny-fp8 as a sharded checkpoint keeps every tensor byte-identical', () => {
  const dir = tmpDir();
  const src = Checkpoint.open(path.join(FIX, 'tiny-fp8/model.safetensors'));
  try {
    const tensors = new Map(src.keys().map((k) => [k, src.tensor(k)]));
    const shards = saveSharded(dir, tensors, { maxShardBytes: 1 << 20, metadata: { format: 'pt' } });
    // 3.1 MB of data in ≤ 1 MiB shards
    assert.ok(shards.length >= 3 && shards.length <= 5, `${shards.length} shards`);
    shards.forEach((s, i) => assert.equal(path.basename(s), `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`));
    const index = JSON.parse(fs.readFileSync(path.join(dir, 'model.safetensors.index.json'), 'utf8'));
    assert.equal(index.metadata.total_size, 3143376 - 8 - 20896);
    assert.equal(Object.keys(index.weight_map).length, 184);
    for (const s of shards) assert.ok(SafetensorsFile.open(s).metadata['format'] === 'pt');
    const ck = Checkpoint.open(dir);
    try {
      assert.equal(ck.shardPaths().length, shards.length);
      assert.deepEqual(ck.keys().sort(), src.keys().sort());
      for (const k of src.keys()) {
        assert.deepEqual(ck.readBytes(k), src.readBytes(k), k);
        assert.deepEqual(ck.info(k).shape, src.info(k).shape);
        assert.equal(ck.info(k).dtype, src.info(k).dtype);
      }
    } finally {
      ck.close();
    }
    // a directory holding model.safetensors opens as a single-file checkpoint
    const one = path.join(dir, 'single');
    fs.mkdirSync(one);
    saveSafetensors(path.join(one, 'model.safetensors'), { a: T.tensor([1, 2]) }, { format: 'pt' });
    const c1 = Checkpoint.open(one);
    assert.deepEqual(c1.keys(), ['a']);
    assert.deepEqual(c1.metadata, { format: 'pt' });
    assert.deepEqual(c1.tensor('a').toArray(), [1, 2]);
    c1.close();
  } finally {
    src.close();
    fs.rmSync(dir, { recursive: true });
  }
});

test('saving is atomic: a failed write leaves the previous file and no temp file behind', () => {
  const dir = tmpDir();
  const file = path.join(dir, 'w.safetensors');
  saveSafetensors(file, { x: T.tensor([1, 2, 3]) });
  const before = fs.readFileSync(file);
  expectStError(() => saveSafetensors(file, { x: T.tensor([4]), __metadata__: T.tensor([1]) }), file, '__metadata__');
  const bad = { y: 5 as unknown as T.Tensor };
  expectStError(() => saveSafetensors(file, bad), "'y' is not a Tensor");
  // a tensor whose data cannot be read fails mid-stream, after the header was written
  const broken = T.tensor([1, 2]);
  Object.defineProperty(broken, 'toHost', { value: () => { throw new Error('device lost'); } });
  expectStError(() => saveSafetensors(file, { a: T.tensor([1]), b: broken }), file, 'device lost');
  assert.deepEqual(fs.readFileSync(file), before);
  assert.deepEqual(fs.readdirSync(dir), ['w.safetensors']);
  fs.rmSync(dir, { recursive: true });
});

// ---- interoperability with a Python reader/writer (struct + json only) -----------------------------
const PY_WRITER = String.raw`
import json, struct, sys
def bf16(x):  # round-to-nearest-even from f32 bits
    b = struct.unpack('<I', struct.pack('<f', x))[0]
    return (b + 0x7fff + ((b >> 16) & 1)) >> 16
tensors = [
  ('a.f64', 'F64', [2], struct.pack('<2d', 0.1, -2.5e-300)),
  ('a.f32', 'F32', [2, 2], struct.pack('<4f', 1.0, -0.5, 3.25, 1e-3)),
  ('b.f16', 'F16', [3], struct.pack('<3e', 0.333, -65504.0, 6e-8)),
  ('b.bf16', 'BF16', [2], struct.pack('<2H', bf16(3.14159), bf16(-1e-5))),
  ('c.f8', 'F8_E4M3', [4], bytes([0x38, 0xb8, 0x7e, 0x01])),
  ('c.i64', 'I64', [2], struct.pack('<2q', -9007199254740993, 123)),
  ('c.i32', 'I32', [1], struct.pack('<i', -7)),
  ('d.u8', 'U8', [3], bytes([0, 200, 255])),
  ('d.bool', 'BOOL', [2], bytes([1, 0])),
]
header, off, blob = {'__metadata__': {'format': 'pt', 'writer': 'python'}}, 0, b''
for name, dt, shape, data in tensors:
    header[name] = {'dtype': dt, 'shape': shape, 'data_offsets': [off, off + len(data)]}
    off += len(data); blob += data
h = json.dumps(header).encode()
with open(sys.argv[1], 'wb') as f:
    f.write(struct.pack('<Q', len(h))); f.write(h); f.write(blob)
`;

test('reads a file written by a plain Python writer', () => {
  const dir = tmpDir();
  const file = path.join(dir, 'py.safetensors');
  python(PY_WRITER, file);
  const f = SafetensorsFile.open(file);
  try {
    assert.deepEqual(f.metadata, { format: 'pt', writer: 'python' });
    assert.deepEqual([...f.tensor('a.f64').toFloat64()], [0.1, -2.5e-300]);
    assert.deepEqual(f.tensor('a.f32').toArray(), [[1, -0.5], [3.25, Math.fround(1e-3)]]);
    // f16 nearest values of 0.333, -65504, 6e-8 (subnormal 2^-24)
    assert.deepEqual([...f.tensor('b.f16').toFloat64()], [0.3330078125, -65504, 2 ** -24]);
    assert.deepEqual([...f.tensor('b.bf16').toFloat64()], [T.bf16Round(3.14159), T.bf16Round(-1e-5)]);
    assert.deepEqual([...f.tensor('c.f8').toFloat64()], [1, -1, 448, 2 ** -9]);
    assert.deepEqual([...(f.tensor('c.i64').toHost() as BigInt64Array)], [-9007199254740993n, 123n]);
    assert.deepEqual([...f.tensor('c.i32').toFloat64()], [-7]);
    assert.deepEqual([...f.tensor('d.u8').toFloat64()], [0, 200, 255]);
    const b = f.tensor('d.bool');
    assert.equal(b.dtype, 'bool');
    assert.deepEqual([...b.toFloat64()], [1, 0]);
  } finally {
    f.close();
    fs.rmSync(dir, { recursive: true });
  }
});

const PY_READER = String.raw`
import json, struct, sys
fmt = {'F64': ('d', 8), 'F32': ('f', 4), 'F16': ('e', 2), 'I64': ('q', 8), 'I32': ('i', 4), 'U8': ('B', 1), 'BOOL': ('?', 1)}
def e4m3(b):
    s = -1.0 if b & 0x80 else 1.0; e = (b >> 3) & 15; m = b & 7
    if e == 15 and m == 7: return 'nan'
    return s * (m * 2.0 ** -9 if e == 0 else (1 + m / 8) * 2.0 ** (e - 7))
with open(sys.argv[1], 'rb') as f:
    buf = f.read()
n = struct.unpack('<Q', buf[:8])[0]
header = json.loads(buf[8:8 + n]); data = buf[8 + n:]
out = {'__metadata__': header.pop('__metadata__', {}), 'pad_ok': (8 + n) % 8 == 0}
for name, e in header.items():
    b, t = e['data_offsets']; raw = data[b:t]; dt = e['dtype']
    if dt == 'BF16':
        vals = [struct.unpack('<f', struct.pack('<I', h << 16))[0] for h in struct.unpack('<%dH' % (len(raw) // 2), raw)]
    elif dt == 'F8_E4M3':
        vals = [e4m3(x) for x in raw]
    else:
        c, size = fmt[dt]; vals = list(struct.unpack('<%d%s' % (len(raw) // size, c), raw))
    vals = [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in vals]
    out[name] = {'dtype': dt, 'shape': e['shape'], 'values': vals}
print(json.dumps(out))
`;

test('a file we write is read correctly by a plain Python reader', () => {
  const dir = tmpDir();
  const file = path.join(dir, 'ts.safetensors');
  saveSafetensors(
    file,
    {
      w64: T.fromArray(new Float64Array([0.1, -3]), [2]),
      w32: T.tensor([[1.5, -2], [0.25, 8]]),
      h16: T.fromArray([0.5, -1, 65504], [3], { dtype: 'f16' }),
      b16: T.fromArray([1, -2.5, 3.140625], [3], { dtype: 'bf16' }),
      q8: T.fromArray([1, -0.5, 448, 0.001953125], [4], { dtype: 'f8e4m3' }),
      ids: T.fromArray(new BigInt64Array([2n ** 53n + 1n, -5n]), [2]),
      i: T.fromArray(new Int32Array([-3]), [1]),
      u: T.fromBits(new Uint8Array([9, 250]), 'u8', [2]),
      m: T.fromBits(new Uint8Array([0, 1, 1]), 'bool', [3]),
    },
    { format: 'pt' },
  );
  const r = JSON.parse(python(PY_READER, file));
  fs.rmSync(dir, { recursive: true });
  assert.deepEqual(r.__metadata__, { format: 'pt' });
  assert.equal(r.pad_ok, true);
  const want: Record<string, [string, number[], unknown[]]> = {
    w64: ['F64', [2], [0.1, -3]],
    w32: ['F32', [2, 2], [1.5, -2, 0.25, 8]],
    h16: ['F16', [3], [0.5, -1, 65504]],
    b16: ['BF16', [3], [1, -2.5, 3.140625]],
    q8: ['F8_E4M3', [4], [1, -0.5, 448, 0.001953125]],
    ids: ['I64', [2], ['9007199254740993', '-5']],
    i: ['I32', [1], ['-3']],
    u: ['U8', [2], ['9', '250']],
    m: ['BOOL', [3], [false, true, true]],
  };
  for (const [k, [dt, shape, vals]] of Object.entries(want)) {
    assert.deepEqual(r[k], { dtype: dt, shape, values: vals }, k);
  }
});

// ---- corrupt and mismatched files ------------------------------------------------------------------
test('corrupt files get errors naming the file, the tensor and the problem', () => {
  const dir = tmpDir();
  const f = (n: string): string => path.join(dir, n);
  const eight = new Uint8Array(8);
  try {
    fs.writeFileSync(f('short'), Buffer.from([1, 2, 3]));
    expectStError(() => SafetensorsFile.open(f('short')), f('short'), 'too short');

    writeRaw(f('hdrlen'), { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, eight, 1000n);
    expectStError(() => SafetensorsFile.open(f('hdrlen')), f('hdrlen'), 'header length 1000 is larger than the file');
    writeRaw(f('hdrhuge'), '{}', eight, 2n ** 63n);
    expectStError(() => SafetensorsFile.open(f('hdrhuge')), 'larger than the file');

    writeRaw(f('notjson'), '{"a": {"dtype": "F32", ', eight);
    expectStError(() => SafetensorsFile.open(f('notjson')), f('notjson'), 'not valid UTF-8 JSON');
    writeRaw(f('array'), '[1, 2]', eight);
    expectStError(() => SafetensorsFile.open(f('array')), 'must be a JSON object, got an array');

    writeRaw(f('dtype'), { w: { dtype: 'F8_E5M2', shape: [8], data_offsets: [0, 8] } }, eight);
    expectStError(() => SafetensorsFile.open(f('dtype')), f('dtype'), "tensor 'w'", "unknown dtype 'F8_E5M2'", 'F8_E4M3');

    writeRaw(f('entry'), { w: { dtype: 'F32', shape: [-1], data_offsets: [0, 8] } }, eight);
    expectStError(() => SafetensorsFile.open(f('entry')), "tensor 'w'", 'malformed header entry', 'shape');
    writeRaw(f('meta'), { __metadata__: { n: 5 } }, eight);
    expectStError(() => SafetensorsFile.open(f('meta')), '__metadata__ must map strings to strings');

    writeRaw(f('size'), { w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, eight);
    expectStError(() => SafetensorsFile.open(f('size')), "tensor 'w'", 'span 8 bytes, but shape [3] of F32 needs 12');
    writeRaw(f('rev'), { w: { dtype: 'U8', shape: [0], data_offsets: [8, 0] } }, eight);
    expectStError(() => SafetensorsFile.open(f('rev')), "tensor 'w'", 'end before they begin');

    writeRaw(f('past'), { w: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, eight);
    expectStError(() => SafetensorsFile.open(f('past')), f('past'), "tensor 'w'", 'run past the end of the data (8 bytes)');

    writeRaw(f('overlap'), {
      a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
      b: { dtype: 'U8', shape: [4], data_offsets: [2, 6] },
      c: { dtype: 'U8', shape: [2], data_offsets: [6, 8] },
    }, eight);
    expectStError(() => SafetensorsFile.open(f('overlap')), f('overlap'), "'a' [0, 4]", "'b' [2, 6]", 'overlapping');

    // a real file cut short: the last tensor's range now runs past the end
    const good = f('good.safetensors');
    saveSafetensors(good, { first: T.tensor([1, 2]), second: T.tensor([3, 4, 5, 6]) });
    const bytes = fs.readFileSync(good);
    fs.writeFileSync(f('trunc'), bytes.subarray(0, bytes.length - 3));
    expectStError(() => SafetensorsFile.open(f('trunc')), f('trunc'), "tensor '", 'truncated');

    const ok = SafetensorsFile.open(good);
    expectStError(() => ok.info('nope'), good, "no tensor named 'nope'");
    ok.close();
    expectStError(() => ok.readBytes('first'), good, "tensor 'first'", 'closed');
    expectStError(() => SafetensorsFile.open(f('missing')), f('missing'), 'cannot open');
  } finally {
    fs.rmSync(dir, { recursive: true });
  }
});

test('sharded checkpoints: an index naming a missing shard or a tensor not in its shard is rejected', () => {
  const dir = tmpDir();
  try {
    saveSharded(dir, { a: T.tensor([1, 2]), b: T.tensor([3]), c: T.tensor([4, 5, 6]) }, { maxShardBytes: 12 });
    const indexPath = path.join(dir, 'model.safetensors.index.json');
    const index = JSON.parse(fs.readFileSync(indexPath, 'utf8'));
    assert.deepEqual(index.weight_map, { a: 'model-00001-of-00002.safetensors', b: 'model-00001-of-00002.safetensors', c: 'model-00002-of-00002.safetensors' });
    const ck = Checkpoint.open(dir);
    assert.deepEqual(ck.tensor('c').toArray(), [4, 5, 6]);
    expectStError(() => ck.tensor('zz'), dir, "no tensor named 'zz'");
    ck.close();

    const write = (wm: Record<string, string>): void => fs.writeFileSync(indexPath, JSON.stringify({ metadata: {}, weight_map: wm }));
    write({ ...index.weight_map, d: 'model-00003-of-00003.safetensors' });
    expectStError(() => Checkpoint.open(dir), indexPath, "shard 'model-00003-of-00003.safetensors'", "tensor 'd'", 'does not exist');
    write({ ...index.weight_map, c: 'model-00001-of-00002.safetensors' });
    expectStError(() => Checkpoint.open(dir), indexPath, "tensor 'c' is not in its shard", 'model-00001-of-00002.safetensors');
    write({ a: '../elsewhere.safetensors' });
    expectStError(() => Checkpoint.open(dir), "expected a file name inside the checkpoint directory");
    fs.writeFileSync(indexPath, '{"weight_map": [1]}');
    expectStError(() => Checkpoint.open(dir), indexPath, 'not a safetensors index');
    fs.writeFileSync(indexPath, 'nope');
    expectStError(() => Checkpoint.open(dir), indexPath, 'cannot read the index as JSON');

    const empty = path.join(dir, 'empty');
    fs.mkdirSync(empty);
    expectStError(() => Checkpoint.open(empty), empty, 'not a checkpoint directory');
    expectStError(() => Checkpoint.open(path.join(dir, 'absent')), 'no such checkpoint');
    expectStError(() => saveSharded(dir, {}, { maxShardBytes: 0 }), 'maxShardBytes must be a positive number');
  } finally {
    fs.rmSync(dir, { recursive: true });
  }
});
