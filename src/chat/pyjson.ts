// Python-compatible JSON: `pyJsonDumps` is byte-equal to Python's `json.dumps(v, ensure_ascii=False)` and
// `pyJsonLoads` reads JSON the way Python's `json.loads` does, keeping what Python keeps.
//
// Why: the DeepSeek-V3.2 prompt embeds JSON (tool schemas, non-string tool arguments, response_format)
// rendered by Python, so a byte-exact prompt needs Python's separators (", " and ": "), Python's float
// text (1.0, 1e-05, 1e+16) and arbitrary-size ints. JS numbers cannot tell 1 from 1.0, so the value model is:
//   - a JS `number` that is an integer (Number.isInteger) is a Python int ("1");
//   - any other `number` (1.5, NaN, Infinity) is a Python float;
//   - a `PyFloat` wraps a number that must print as a float although it is integral (1.0, -0.0, 1e+16);
//   - a `bigint` is a Python int of any size.
// `pyJsonLoads` produces exactly this model: an integral JSON float literal ("1.0", "1e5") becomes a
// PyFloat, an int literal beyond 2^53 a bigint, so loads followed by dumps reproduces Python.
// Objects keep insertion order. A JS object reorders integer-like keys ("2" before "b"), so loads returns
// a `Map` for an object that has such a key, and dumps accepts Maps as ordered dicts.
import { DsvError } from '../errors.js';

/** A Python float whose value happens to be integral (prints as `1.0`, `-0.0`, `1e+16`). */
export class PyFloat {
  constructor(readonly value: number) {}
  valueOf(): number {
    return this.value;
  }
  toJSON(): number {
    return this.value;
  }
}

export function pyFloat(value: number): PyFloat {
  return new PyFloat(value);
}

export type PyJson = null | boolean | number | bigint | string | PyFloat | PyJson[] | PyJsonObject | Map<string, PyJson>;
export interface PyJsonObject {
  [key: string]: PyJson;
}

export class PyJsonError extends DsvError {
  constructor(
    message: string,
    readonly position?: number,
  ) {
    super(message);
  }
}

// ---------------------------------------------------------------------------------------------- dumps

/**
 * Python's `repr(float)`: the shortest digit string that round-trips (the same digits JS picks), laid
 * out by Python's rule: scientific when the decimal point position `decpt` (value = 0.DIGITS * 10^decpt)
 * is <= -4 or > 16, otherwise fixed notation with at least one fractional digit.
 */
export function pyFloatRepr(x: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Infinity) return 'Infinity';
  if (x === -Infinity) return '-Infinity';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const sign = x < 0 ? '-' : '';
  const s = String(Math.abs(x));
  let mantissa = s;
  let exp10 = 0;
  const e = s.indexOf('e');
  if (e >= 0) {
    mantissa = s.slice(0, e);
    exp10 = Number(s.slice(e + 1));
  }
  const dot = mantissa.indexOf('.');
  const intPart = dot >= 0 ? mantissa.slice(0, dot) : mantissa;
  const fracPart = dot >= 0 ? mantissa.slice(dot + 1) : '';
  let digits = intPart + fracPart;
  let decpt = intPart.length + exp10;
  const lead = digits.length - digits.replace(/^0+/, '').length;
  digits = digits.slice(lead);
  decpt -= lead;
  digits = digits.replace(/0+$/, '');
  const n = digits.length;
  if (decpt <= -4 || decpt > 16) {
    const ex = decpt - 1;
    const m = n > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    return `${sign}${m}e${ex < 0 ? '-' : '+'}${String(Math.abs(ex)).padStart(2, '0')}`;
  }
  if (decpt <= 0) return `${sign}0.${'0'.repeat(-decpt)}${digits}`;
  if (decpt >= n) return `${sign}${digits}${'0'.repeat(decpt - n)}.0`;
  return `${sign}${digits.slice(0, decpt)}.${digits.slice(decpt)}`;
}

function pyIntRepr(x: number): string {
  if (Number.isSafeInteger(x)) return String(x === 0 ? 0 : x);
  return BigInt(x).toString();
}

const SHORT_ESCAPES: Record<string, string> = {
  '"': '\\"',
  '\\': '\\\\',
  '\n': '\\n',
  '\r': '\\r',
  '\t': '\\t',
  '\b': '\\b',
  '\f': '\\f',
};

/**
 * Python's string encoder with ensure_ascii=False escapes only `"`, `\` and U+0000-U+001F (named escapes
 * where JSON has them, else lowercase `\u00xx`). Everything else, DEL and lone surrogates included, is
 * written as is.
 */
export function pyJsonString(s: string): string {
  // eslint-disable-next-line no-control-regex
  return `"${s.replace(/["\\\u0000-\u001f]/g, (c) => SHORT_ESCAPES[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)}"`;
}

/** Byte-equal to Python's `json.dumps(value, ensure_ascii=False)` under the value model above. */
export function pyJsonDumps(value: unknown): string {
  const out = dumpValue(value, new Set(), '$');
  if (out === undefined) throw new PyJsonError('pyJsonDumps: the top-level value is undefined, which has no JSON form');
  return out;
}

function dumpValue(v: unknown, seen: Set<object>, path: string): string | undefined {
  if (v === null) return 'null';
  switch (typeof v) {
    case 'undefined':
      return undefined;
    case 'boolean':
      return v ? 'true' : 'false';
    case 'number':
      return Number.isInteger(v) ? pyIntRepr(v) : pyFloatRepr(v);
    case 'bigint':
      return v.toString();
    case 'string':
      return pyJsonString(v);
    case 'function':
    case 'symbol':
      throw new PyJsonError(`pyJsonDumps: ${path} is a ${typeof v}, which has no JSON form`);
  }
  const obj = v as object;
  if (obj instanceof PyFloat) return pyFloatRepr(obj.value);
  if (seen.has(obj)) throw new PyJsonError(`pyJsonDumps: ${path} is a circular reference`);
  seen.add(obj);
  try {
    if (Array.isArray(obj)) {
      // Like JSON.stringify, a JS-only hole or undefined element becomes null.
      const parts = obj.map((x, i) => dumpValue(x, seen, `${path}[${i}]`) ?? 'null');
      return `[${parts.join(', ')}]`;
    }
    const entries: [string, unknown][] =
      obj instanceof Map ? [...obj.entries()].map(([k, x]) => [String(k), x]) : Object.entries(obj);
    if (!(obj instanceof Map) && typeof (obj as { toJSON?: unknown }).toJSON === 'function') {
      return dumpValue((obj as { toJSON: () => unknown }).toJSON(), seen, path);
    }
    const parts: string[] = [];
    for (const [k, x] of entries) {
      // Like JSON.stringify, an undefined property is absent rather than null.
      const d = dumpValue(x, seen, `${path}.${k}`);
      if (d !== undefined) parts.push(`${pyJsonString(k)}: ${d}`);
    }
    return `{${parts.join(', ')}}`;
  } finally {
    seen.delete(obj);
  }
}

// ---------------------------------------------------------------------------------------------- loads

// A key the JS engine would move to the front of an object (a canonical array index).
function isIndexLikeKey(k: string): boolean {
  return /^(0|[1-9]\d{0,9})$/.test(k) && Number(k) < 4294967295;
}

const WS = new Set([' ', '\t', '\n', '\r']);

/**
 * Python's `json.loads`: standard JSON plus `NaN`, `Infinity`, `-Infinity`; control characters inside
 * strings are rejected (strict mode); duplicate keys keep the first position and the last value.
 */
export function pyJsonLoads(text: string, what = 'JSON text'): PyJson {
  let i = 0;
  const fail = (msg: string): never => {
    const line = text.slice(0, i).split('\n').length;
    throw new PyJsonError(`${what}: ${msg} at line ${line}, offset ${i}`, i);
  };
  const skip = () => {
    while (i < text.length && WS.has(text[i]!)) i++;
  };
  const parseString = (): string => {
    // text[i] === '"'
    i++;
    let out = '';
    let start = i;
    for (;;) {
      if (i >= text.length) fail('unterminated string');
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        out += text.slice(start, i);
        i++;
        return out;
      }
      if (c < 0x20) fail('invalid control character in string');
      if (c === 0x5c) {
        out += text.slice(start, i);
        const e = text[i + 1];
        switch (e) {
          case '"': out += '"'; break;
          case '\\': out += '\\'; break;
          case '/': out += '/'; break;
          case 'b': out += '\b'; break;
          case 'f': out += '\f'; break;
          case 'n': out += '\n'; break;
          case 'r': out += '\r'; break;
          case 't': out += '\t'; break;
          case 'u': {
            const hex = text.slice(i + 2, i + 6);
            if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail('invalid \\u escape');
            out += String.fromCharCode(parseInt(hex, 16));
            i += 4;
            break;
          }
          default:
            fail('invalid escape');
        }
        i += 2;
        start = i;
        continue;
      }
      i++;
    }
  };
  const NUM = /-?(?:0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?/y;
  const parseValue = (): PyJson => {
    skip();
    const c = text[i];
    if (c === '"') return parseString();
    if (c === '{') {
      i++;
      const pairs: [string, PyJson][] = [];
      skip();
      if (text[i] === '}') {
        i++;
        return {};
      }
      for (;;) {
        skip();
        if (text[i] !== '"') fail('expected a property name in double quotes');
        const k = parseString();
        skip();
        if (text[i] !== ':') fail("expected ':'");
        i++;
        pairs.push([k, parseValue()]);
        skip();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === '}') {
          i++;
          break;
        }
        fail("expected ',' or '}'");
      }
      if (pairs.some(([k]) => isIndexLikeKey(k))) return new Map(pairs);
      const o: PyJsonObject = {};
      for (const [k, x] of pairs) Object.defineProperty(o, k, { value: x, enumerable: true, writable: true, configurable: true });
      return o;
    }
    if (c === '[') {
      i++;
      const arr: PyJson[] = [];
      skip();
      if (text[i] === ']') {
        i++;
        return arr;
      }
      for (;;) {
        arr.push(parseValue());
        skip();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === ']') {
          i++;
          return arr;
        }
        fail("expected ',' or ']'");
      }
    }
    for (const [lit, val] of [
      ['true', true],
      ['false', false],
      ['null', null],
      ['NaN', NaN],
      ['Infinity', Infinity],
      ['-Infinity', -Infinity],
    ] as const) {
      if (text.startsWith(lit, i)) {
        i += lit.length;
        return val;
      }
    }
    NUM.lastIndex = i;
    const m = NUM.exec(text);
    if (!m) return fail('expected a value');
    i += m[0].length;
    if (m[1] === undefined && m[2] === undefined) {
      const n = Number(m[0]);
      return Number.isSafeInteger(n) ? (n === 0 ? 0 : n) : BigInt(m[0]);
    }
    const f = Number(m[0]);
    return Number.isInteger(f) || Object.is(f, -0) ? new PyFloat(f) : f;
  };
  const v = parseValue();
  skip();
  if (i < text.length) fail('extra data after the JSON value');
  return v;
}
