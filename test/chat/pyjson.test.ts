// pyJsonDumps / pyJsonLoads checked against python3 itself: one python process gets a batch of generated
// values (in a tagged transfer form that does not depend on the code under test) and returns
// json.dumps(v, ensure_ascii=False) for each.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { PyFloat, pyFloatRepr, pyJsonDumps, pyJsonLoads, PyJsonError, type PyJson } from '../../src/chat/pyjson.js';
import { rng } from './rng.js';

type Tagged =
  | { t: 'n' }
  | { t: 'b'; v: boolean }
  | { t: 'i'; v: string }
  | { t: 'f'; v: string } // 16 hex digits of the IEEE-754 bits
  | { t: 's'; v: string }
  | { t: 'l'; v: Tagged[] }
  | { t: 'd'; v: [string, Tagged][] };

function floatBits(x: number): string {
  const b = Buffer.alloc(8);
  b.writeDoubleBE(x);
  return b.toString('hex');
}

const CHAR_POOL = [
  'a', 'Z', ' ', '"', '\\', '/', '\n', '\r', '\t', '\b', '\f', '\u0000', '\u0001', '\u001f', '\u007f', '\u0080',
  'é', '中', '文', '｜', '▁', '\u2028', '\u2029', '😀', '🗓️', '\ud800', '\udfff', '\ufeff', '<', '>', '&',
];

function genString(r: () => number): string {
  const n = Math.floor(r() * 12);
  let s = '';
  for (let k = 0; k < n; k++) s += CHAR_POOL[Math.floor(r() * CHAR_POOL.length)];
  return s;
}

const SPECIAL_FLOATS = [0, -0, 1, -1, 0.1, 1e-5, 1e-4, 1.5e-5, 0.0001234, 1e15, 1e16, 1.2345e16, 1e17, 1e21, 1e22, 123456789012345680000,
  5e-324, 1.7976931348623157e308, 2 ** 53, 2 ** 53 + 2, 1 / 3, 100, 1e100, NaN, Infinity, -Infinity, 9007199254740993];

function genFloat(r: () => number): number {
  const k = r();
  if (k < 0.3) return SPECIAL_FLOATS[Math.floor(r() * SPECIAL_FLOATS.length)]!;
  if (k < 0.6) {
    // random bit pattern: covers every exponent, subnormals included
    const b = Buffer.alloc(8);
    for (let j = 0; j < 8; j++) b[j] = Math.floor(r() * 256);
    const x = b.readDoubleBE();
    return Number.isNaN(x) ? 0.5 : x;
  }
  if (k < 0.8) return Math.round((r() - 0.5) * 10 ** Math.floor(r() * 20)) / 10 ** Math.floor(r() * 8);
  return (r() - 0.5) * 10 ** Math.floor(r() * 40 - 20);
}

// Returns [the JS value in the pyjson value model, the tagged transfer form for python].
function gen(r: () => number, depth: number): [PyJson, Tagged] {
  const k = r();
  if (depth > 0 && k < 0.15) {
    const n = Math.floor(r() * 5);
    const items = Array.from({ length: n }, () => gen(r, depth - 1));
    return [items.map((x) => x[0]), { t: 'l', v: items.map((x) => x[1]) }];
  }
  if (depth > 0 && k < 0.3) {
    const n = Math.floor(r() * 5);
    const obj: Record<string, PyJson> = {};
    const tagged: [string, Tagged][] = [];
    for (let j = 0; j < n; j++) {
      const key = genString(r) + 'k'; // never index-like, so a plain object keeps the order
      if (key in obj) continue;
      const [v, t] = gen(r, depth - 1);
      obj[key] = v;
      tagged.push([key, t]);
    }
    return [obj, { t: 'd', v: tagged }];
  }
  if (k < 0.4) return [null, { t: 'n' }];
  if (k < 0.45) {
    const b = r() < 0.5;
    return [b, { t: 'b', v: b }];
  }
  if (k < 0.55) {
    const n = Math.floor((r() - 0.5) * 2 ** Math.floor(r() * 53));
    return [n, { t: 'i', v: String(n === 0 ? 0 : n) }];
  }
  if (k < 0.6) {
    let s = String(1 + Math.floor(r() * 9));
    const len = Math.floor(r() * 40);
    for (let j = 0; j < len; j++) s += String(Math.floor(r() * 10));
    if (r() < 0.5) s = '-' + s;
    return [BigInt(s), { t: 'i', v: s }];
  }
  if (k < 0.75) {
    const x = genFloat(r);
    const v = Number.isInteger(x) || Object.is(x, -0) ? new PyFloat(x) : x;
    return [v, { t: 'f', v: floatBits(x) }];
  }
  const s = genString(r);
  return [s, { t: 's', v: s }];
}

const PY = String.raw`
import json, struct, sys
def untag(t):
    k = t['t']
    if k == 'n': return None
    if k in ('b', 's'): return t['v']
    if k == 'i': return int(t['v'])
    if k == 'f': return struct.unpack('>d', bytes.fromhex(t['v']))[0]
    if k == 'l': return [untag(x) for x in t['v']]
    return {key: untag(v) for key, v in t['v']}
for line in sys.stdin:
    v = untag(json.loads(line))
    # outer dumps is ASCII-only so lone surrogates survive the pipe
    sys.stdout.write(json.dumps(json.dumps(v, ensure_ascii=False)) + '\n')
`;

function pythonDumps(tagged: Tagged[]): string[] {
  const input = tagged.map((t) => JSON.stringify(t)).join('\n') + '\n';
  const r = spawnSync('python3', ['-c', PY], { input, encoding: 'utf8', maxBuffer: 1 << 28 });
  assert.equal(r.status, 0, `python3 failed: ${r.stderr}`);
  return r.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as string);
}

test('pyJsonDumps equals python json.dumps(ensure_ascii=False) on 4000 generated values', () => {
  const r = rng(20251201);
  const values: PyJson[] = [];
  const tagged: Tagged[] = [];
  for (let j = 0; j < 4000; j++) {
    const [v, t] = gen(r, 4);
    values.push(v);
    tagged.push(t);
  }
  const expected = pythonDumps(tagged);
  assert.equal(expected.length, values.length);
  let mismatches = 0;
  for (let j = 0; j < values.length; j++) {
    const got = pyJsonDumps(values[j]);
    if (got !== expected[j]) {
      mismatches++;
      if (mismatches < 5) assert.equal(got, expected[j], `value #${j}`);
    }
  }
  assert.equal(mismatches, 0);
});

test('pyJsonLoads then pyJsonDumps reproduces python json.dumps(json.loads(text))', () => {
  const texts = [
    '{"a": 1.0, "b": 1e5, "c": -0.0, "d": -0, "e": 1E-5, "f": 12345678901234567890123, "g": 1.50, "h": 1e400}',
    '[NaN, Infinity, -Infinity, 0.1, 100, 1e16, 1.0e16, 2.5e-7]',
    '{"b": 1, "2": 2, "1": [true, false, null], "a": {"x": "\\u00e9\\ud83d\\ude00\\ud800"}}',
    '{"k": 1, "k": 2, "j": 3}',
    ' { "s" : "tab\\there \\"q\\" \\\\ \\/ \\b\\f\\n\\r\\u001f" } ',
  ];
  const py = spawnSync('python3', ['-c', 'import json,sys\nfor l in sys.stdin: sys.stdout.write(json.dumps(json.dumps(json.loads(l), ensure_ascii=False))+"\\n")'], {
    input: texts.join('\n') + '\n',
    encoding: 'utf8',
  });
  assert.equal(py.status, 0, py.stderr);
  const expected = py.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as string);
  texts.forEach((t, j) => assert.equal(pyJsonDumps(pyJsonLoads(t)), expected[j], t));
});

test('value model: integral numbers are ints, PyFloat and non-integral numbers are floats, bigint is int', () => {
  assert.equal(pyJsonDumps({ a: 1, b: new PyFloat(1), c: 1.5, d: 10n ** 30n, e: -0 }), '{"a": 1, "b": 1.0, "c": 1.5, "d": 1000000000000000000000000000000, "e": 0}');
  assert.equal(pyJsonDumps([undefined, null]), '[null, null]');
  assert.equal(pyJsonDumps({ a: undefined, b: 2 }), '{"b": 2}');
  assert.equal(pyJsonDumps(new Map<string, PyJson>([['2', 1], ['1', 2]])), '{"2": 1, "1": 2}');
  assert.ok(pyJsonLoads('{"b": 0, "1": 0}') instanceof Map, 'an object with an index-like key loads as a Map to keep its order');
  assert.equal(pyJsonDumps(pyJsonLoads('{"b": 0, "1": 0}')), '{"b": 0, "1": 0}');
  assert.deepEqual(pyJsonLoads('{"__proto__": 1}'), JSON.parse('{"__proto__": 1}'));
});

test('pyFloatRepr switches notation exactly where python does', () => {
  assert.equal(pyFloatRepr(1e-5), '1e-05');
  assert.equal(pyFloatRepr(0.0001), '0.0001');
  assert.equal(pyFloatRepr(1e16), '1e+16');
  assert.equal(pyFloatRepr(1e15), '1000000000000000.0');
  assert.equal(pyFloatRepr(1.5e300), '1.5e+300');
  assert.equal(pyFloatRepr(-2.5e-7), '-2.5e-07');
});

test('errors name the input and the position', () => {
  assert.throws(() => pyJsonLoads('{"a": }', 'args.json'), (e: unknown) => e instanceof PyJsonError && /args\.json: expected a value at line 1, offset 6/.test(e.message));
  assert.throws(() => pyJsonLoads('"a\u0001"'), /invalid control character/);
  assert.throws(() => pyJsonLoads('[1] x'), /extra data/);
  assert.throws(() => pyJsonDumps(undefined), PyJsonError);
  const cyc: Record<string, unknown> = {};
  cyc.self = cyc;
  assert.throws(() => pyJsonDumps(cyc), /\$\.self is a circular reference/);
  assert.throws(() => pyJsonDumps({ f: () => 1 }), /\$\.f is a function/);
});
