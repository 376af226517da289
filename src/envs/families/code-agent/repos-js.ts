// Seeded JavaScript repositories of the code-agent family (tests: node --test). As in
// repos-python.ts, names, constants and test data come from the Rng and expected values are computed
// here, so the gold repository passes for every seed. Sources are String.raw templates so regular
// expressions keep their backslashes; the repository code itself avoids backticks for that reason.
import type { Rng } from '../../rng.js';
import { WORDS, distinctInts, js, type RepoSpec } from './template.js';

const HEADER = "'use strict';\nconst test = require('node:test');\nconst assert = require('node:assert/strict');\n";

const jsonpath: RepoSpec = {
  name: 'jsjsonpath',
  lang: 'node',
  build(r: Rng) {
    const get = r.pick(['get', 'getPath', 'lookup']);
    const set = r.pick(['set', 'setPath', 'assign']);
    const [k1, k2, k3] = r.sample(WORDS, 3);
    const idx = r.int(1, 3);
    const arr = distinctInts(r, idx + 2, 10, 99);
    const doc = { [k1!]: { [k2!]: arr.map((n) => ({ id: n })) }, zero: 0, empty: '', nothing: null };
    const fb = r.pick(['n/a', 'missing', 'none', '?']);
    const val = r.int(100, 999);
    const files = {
      'jsonpath.js': String.raw`'use strict';

// Paths look like "a.b[2].c": dot-separated keys, each optionally followed by [index] parts.
function parsePath(path) {
  const keys = [];
  for (const part of path.split('.')) {
    const m = /^([^[\]]*)((?:\[\d+\])*)$/.exec(part);
    if (!m) throw new SyntaxError('bad path segment "' + part + '" in "' + path + '"');
    if (m[1] !== '') keys.push(m[1]);
    for (const idx of m[2].matchAll(/\[(\d+)\]/g)) keys.push(Number(idx[1]));
  }
  return keys;
}

function ${get}(obj, path, fallback = undefined) {
  let cur = obj;
  for (const key of parsePath(path)) {
    if (cur === null || cur === undefined) return fallback;
    cur = cur[key];
  }
  return cur === undefined ? fallback : cur;
}

function ${set}(obj, path, value) {
  const keys = parsePath(path);
  let cur = obj;
  for (let i = 0; i < keys.length - 1; i++) {
    if (cur[keys[i]] === undefined) cur[keys[i]] = typeof keys[i + 1] === 'number' ? [] : {};
    cur = cur[keys[i]];
  }
  cur[keys[keys.length - 1]] = value;
  return obj;
}

module.exports = { ${get}, ${set}, parsePath };
`,
      'jsonpath.test.js': `${HEADER}const { ${get}, ${set} } = require('./jsonpath.js');

const doc = ${js(doc)};

test('reads nested keys and indexes', () => assert.equal(${get}(doc, ${js(`${k1}.${k2}[${idx}].id`)}), ${arr[idx]}));
test('falls back through null', () => assert.equal(${get}(doc, 'nothing.${k3}', ${js(fb)}), ${js(fb)}));
test('keeps falsy values', () => assert.deepEqual([${get}(doc, 'zero', 1), ${get}(doc, 'empty', 'x')], [0, '']));
test('missing key gives the fallback', () => assert.equal(${get}(doc, ${js(`${k3}.${k1}`)}, ${js(fb)}), ${js(fb)}));
test('sets a nested value', () => assert.deepEqual(${set}({}, ${js(`${k1}.${k2}`)}, ${val}), { ${k1}: { ${k2}: ${val} } }));
test('creates arrays for index parts', () => {
  const o = ${set}({}, ${js(`${k3}[0].${k1}`)}, ${val});
  assert.ok(Array.isArray(o.${k3}));
  assert.equal(o.${k3}[0].${k1}, ${val});
});
test('rejects malformed segments', () => assert.throws(() => ${get}(doc, ${js(`${k1}[x]`)}), SyntaxError));
`,
    };
    const P = 'jsonpath.js';
    return {
      name: this.name,
      lang: this.lang,
      files,
      tests: ['jsonpath.test.js'],
      bugs: [
        { path: P, fixed: 'keys.push(Number(idx[1]))', buggy: 'keys.push(idx[1])', issue: `${set}({}, "${k3}[0].${k1}", v) creates an object with a "0" key where an array is expected.` },
        { path: P, fixed: 'if (cur === null || cur === undefined) return fallback;', buggy: 'if (cur === undefined) return fallback;', issue: `${get}(doc, "nothing.${k3}", ${js(fb)}) throws a TypeError when a value on the path is null; it should return the fallback.` },
        { path: P, fixed: 'return cur === undefined ? fallback : cur;', buggy: 'return cur || fallback;', issue: `${get}() returns the fallback for values that exist but are falsy, such as 0 or the empty string.` },
        { path: P, fixed: 'for (let i = 0; i < keys.length - 1; i++)', buggy: 'for (let i = 0; i < keys.length; i++)', issue: `${set}({}, "${k1}.${k2}", ${val}) does not store the value at ${k1}.${k2}.` },
        { path: P, fixed: "typeof keys[i + 1] === 'number'", buggy: "typeof keys[i] === 'number'", issue: `${set}() creates plain objects where the path continues with an [index], e.g. "${k3}[0].${k1}".` },
        { path: P, fixed: String.raw`((?:\[\d+\])*)$/`, buggy: String.raw`((?:\[\d+\])*)/`, issue: `A malformed path like "${k1}[x]" is silently accepted instead of raising SyntaxError.` },
      ],
    };
  },
};

const ratelimit: RepoSpec = {
  name: 'jsratelimit',
  lang: 'node',
  build(r: Rng) {
    const cls = r.pick(['TokenBucket', 'RateLimiter', 'Throttle']);
    const cap = r.int(3, 8);
    const rate = r.pick([2, 4, 5]);
    // Wait long enough for k + 1/2 tokens (rate * ms / 1000), so rounding and flooring differ.
    const partialMs = ((2 * r.int(0, 2) + 1) * 500) / rate;
    const partial = (rate * partialMs) / 1000;
    const files = {
      'bucket.js': String.raw`'use strict';

// Token bucket: holds up to capacity tokens, refilled continuously at refillPerSec; each request takes n.
class ${cls} {
  constructor({ capacity, refillPerSec, now = () => Date.now() }) {
    if (!(capacity > 0)) throw new RangeError('capacity must be positive');
    this.capacity = capacity;
    this.refillPerSec = refillPerSec;
    this.now = now;
    this.tokens = capacity;
    this.last = now();
  }

  refill() {
    const t = this.now();
    const elapsed = (t - this.last) / 1000;
    this.tokens = Math.min(this.capacity, this.tokens + elapsed * this.refillPerSec);
    this.last = t;
  }

  tryTake(n = 1) {
    this.refill();
    if (this.tokens >= n) {
      this.tokens -= n;
      return true;
    }
    return false;
  }

  available() {
    this.refill();
    return Math.floor(this.tokens);
  }
}

module.exports = { ${cls} };
`,
      'bucket.test.js': `${HEADER}const { ${cls} } = require('./bucket.js');

function make() {
  const clock = { t: 1000000 };
  const b = new ${cls}({ capacity: ${cap}, refillPerSec: ${rate}, now: () => clock.t });
  return { b, clock };
}

test('a fresh bucket allows a full burst', () => {
  const { b } = make();
  const got = [];
  for (let i = 0; i < ${cap + 1}; i++) got.push(b.tryTake());
  assert.deepEqual(got, ${js([...Array(cap).fill(true), false])});
});
test('refills at the configured rate', () => {
  const { b, clock } = make();
  assert.equal(b.tryTake(${cap}), true);
  clock.t += ${partialMs};
  assert.equal(b.available(), ${Math.floor(partial)});
});
test('never holds more than capacity', () => {
  const { b, clock } = make();
  clock.t += 3600000;
  assert.equal(b.available(), ${cap});
});
test('the last token can be taken', () => {
  const { b } = make();
  assert.equal(b.tryTake(${cap}), true);
  assert.equal(b.tryTake(), false);
});
test('rejects a zero capacity', () => assert.throws(() => new ${cls}({ capacity: 0, refillPerSec: 1 }), RangeError));
`,
    };
    const P = 'bucket.js';
    return {
      name: this.name,
      lang: this.lang,
      files,
      tests: ['bucket.test.js'],
      bugs: [
        { path: P, fixed: 'this.tokens = capacity;', buggy: 'this.tokens = 0;', issue: `A new ${cls} with capacity ${cap} rejects the very first request.` },
        { path: P, fixed: 'Math.min(this.capacity, this.tokens + elapsed * this.refillPerSec)', buggy: '(this.tokens + elapsed * this.refillPerSec)', issue: `After a long idle period available() reports far more than the capacity of ${cap} tokens.` },
        { path: P, fixed: 'const elapsed = (t - this.last) / 1000;', buggy: 'const elapsed = (t - this.last);', issue: `With refillPerSec ${rate}, an empty bucket is completely full again after only a few milliseconds.` },
        { path: P, fixed: 'if (this.tokens >= n) {', buggy: 'if (this.tokens > n) {', issue: `tryTake(${cap}) fails on a full bucket of ${cap} tokens; the last token in the bucket can never be used.` },
        { path: P, fixed: 'tryTake(n = 1) {', buggy: 'tryTake(n = 0) {', issue: `tryTake() without an argument always succeeds, even when the bucket is empty.` },
        { path: P, fixed: 'if (!(capacity > 0))', buggy: 'if (capacity < 0)', issue: `new ${cls}({ capacity: 0, ... }) is accepted; a zero capacity should be a RangeError.` },
        { path: P, fixed: 'return Math.floor(this.tokens);', buggy: 'return Math.round(this.tokens);', issue: `available() counts a partly refilled token as whole: ${partialMs} ms after emptying the bucket it reports ${Math.round(partial)}, expected ${Math.floor(partial)}.` },
      ],
    };
  },
};

function camel(s: string): string {
  const w = s.split(/[\s_-]+/).filter(Boolean);
  return w.map((x, i) => (i === 0 ? x.toLowerCase() : x[0]!.toUpperCase() + x.slice(1).toLowerCase())).join('');
}

const strings: RepoSpec = {
  name: 'jsstrings',
  lang: 'node',
  build(r: Rng) {
    const cap = r.pick(['capitalize', 'upperFirst']);
    const cc = r.pick(['camelCase', 'toCamel']);
    const pad = r.pick(['padStart', 'padLeft', 'leftPad']);
    const rev = r.pick(['reverseWords', 'flipWords']);
    const vow = r.pick(['countVowels', 'vowelCount']);
    const [w1, w2, w3] = r.sample(WORDS, 3);
    const camelIn = `  ${w1!.toUpperCase()}_${w2}-${w3}`;
    const num = r.int(1, 999);
    const width = String(num).length + r.int(1, 4);
    const sentence = `${w1} ${w2} ${w3}`;
    const shout = `${w2!.toUpperCase()} ${w3}`;
    const vowels = [...shout.toLowerCase()].filter((c) => 'aeiou'.includes(c)).length;
    const files = {
      'strings.js': String.raw`'use strict';

function ${cap}(s) {
  if (s.length === 0) return s;
  return s[0].toUpperCase() + s.slice(1);
}

function ${cc}(s) {
  const words = s.split(/[\s_-]+/).filter(Boolean);
  return words.map((w, i) => (i === 0 ? w.toLowerCase() : ${cap}(w.toLowerCase()))).join('');
}

function ${pad}(s, width, fill = ' ') {
  let out = String(s);
  while (out.length < width) out = fill + out;
  return out;
}

function ${rev}(s) {
  return s.trim().split(/\s+/).reverse().join(' ');
}

function ${vow}(s) {
  let n = 0;
  for (const ch of s.toLowerCase()) if ('aeiou'.includes(ch)) n++;
  return n;
}

module.exports = { ${cap}, ${cc}, ${pad}, ${rev}, ${vow} };
`,
      'strings.test.js': `${HEADER}const { ${cap}, ${cc}, ${pad}, ${rev}, ${vow} } = require('./strings.js');

test('${cap}', () => assert.deepEqual([${cap}(${js(w1)}), ${cap}('')], [${js(w1![0]!.toUpperCase() + w1!.slice(1))}, '']));
test('${cc}', () => assert.equal(${cc}(${js(camelIn)}), ${js(camel(camelIn))}));
test('${pad} defaults to spaces', () => assert.equal(${pad}(${num}, ${width}), ${js(String(num).padStart(width, ' '))}));
test('${pad} with a fill', () => assert.equal(${pad}(${num}, ${width}, '0'), ${js(String(num).padStart(width, '0'))}));
test('${rev}', () => assert.equal(${rev}(${js(` ${sentence}  `)}), ${js(sentence.split(' ').reverse().join(' '))}));
test('${vow}', () => assert.equal(${vow}(${js(shout)}), ${vowels}));
`,
    };
    const P = 'strings.js';
    return {
      name: this.name,
      lang: this.lang,
      files,
      tests: ['strings.test.js'],
      bugs: [
        { path: P, fixed: 'if (s.length === 0) return s;', buggy: 'if (s === null) return s;', issue: `${cap}('') throws a TypeError instead of returning the empty string.` },
        { path: P, fixed: '(i === 0 ? w.toLowerCase() :', buggy: '(i === 0 ? w :', issue: `${cc}(${js(camelIn)}) keeps the first word in upper case; expected ${js(camel(camelIn))}.` },
        { path: P, fixed: String.raw`s.split(/[\s_-]+/).filter(Boolean);`, buggy: String.raw`s.split(/[\s_-]+/);`, issue: `${cc}() capitalises the first word when the input starts with spaces or separators, e.g. ${js(camelIn)}.` },
        { path: P, fixed: "fill = ' ') {", buggy: "fill = '0') {", issue: `${pad}(${num}, ${width}) pads with zeros; without a fill argument it should pad with spaces.` },
        { path: P, fixed: 'while (out.length < width)', buggy: 'while (out.length <= width)', issue: `${pad}(${num}, ${width}) returns a string of length ${width + 1}.` },
        { path: P, fixed: String.raw`return s.trim().split(/\s+/)`, buggy: String.raw`return s.split(/\s+/)`, issue: `${rev}() returns stray spaces at the ends when the input has leading or trailing whitespace.` },
        { path: P, fixed: 'for (const ch of s.toLowerCase())', buggy: 'for (const ch of s)', issue: `${vow}(${js(shout)}) misses the upper-case vowels; expected ${vowels}.` },
      ],
    };
  },
};

const bsearch: RepoSpec = {
  name: 'jsbsearch',
  lang: 'node',
  build(r: Rng) {
    const lb = r.pick(['lowerBound', 'bisectLeft', 'searchInsert']);
    const io = r.pick(['indexOfSorted', 'findSorted']);
    const ins = r.pick(['insertSorted', 'insort']);
    const uniq = r.pick(['uniqueSorted', 'sortedUnique']);
    const base = distinctInts(r, 6, 2, 60).sort((a, b) => a - b);
    const dup = base[2]!;
    const withDup = [...base.slice(0, 3), dup, dup, ...base.slice(3)];
    const firstDup = withDup.indexOf(dup);
    const gap = base.findIndex((x, i) => i > 0 && x - base[i - 1]! > 1);
    const missingMid = gap > 0 ? base[gap - 1]! + 1 : base[0]! - 1;
    const nums = [r.int(100, 150), r.int(2, 9), r.int(10, 60)];
    const raw = [nums[0]!, nums[1]!, nums[2]!, nums[1]!, nums[0]!];
    // Inside the range, so the insert position is not the end (where replacing and inserting agree).
    const ins1 = r.int(base[0]!, base[5]!);
    const files = {
      'bsearch.js': `'use strict';

// First index i with xs[i] >= target in a sorted array (xs.length when every element is smaller).
function ${lb}(xs, target) {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (xs[mid] < target) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function ${io}(xs, target) {
  const i = ${lb}(xs, target);
  return i < xs.length && xs[i] === target ? i : -1;
}

function ${ins}(xs, x) {
  xs.splice(${lb}(xs, x), 0, x);
  return xs;
}

function ${uniq}(xs) {
  const out = [];
  for (const x of [...xs].sort((a, b) => a - b)) {
    if (out.length === 0 || out[out.length - 1] !== x) out.push(x);
  }
  return out;
}

module.exports = { ${lb}, ${io}, ${ins}, ${uniq} };
`,
      'bsearch.test.js': `${HEADER}const { ${lb}, ${io}, ${ins}, ${uniq} } = require('./bsearch.js');

const xs = ${js(withDup)};
test('${lb} finds the first of equal elements', () => assert.equal(${lb}(xs, ${dup}), ${firstDup}));
test('${lb} past the end', () => assert.equal(${lb}(xs, 1000), xs.length));
test('${io} finds present values', () => assert.equal(${io}(${js(base)}, ${base[4]}), 4));
test('${io} reports absent values', () => assert.equal(${io}(${js(base)}, ${missingMid}), -1));
test('${ins} keeps order and length', () => assert.deepEqual(${ins}(${js(base)}, ${ins1}), ${js([...base, ins1].sort((a, b) => a - b))}));
test('${uniq} sorts numerically', () => assert.deepEqual(${uniq}(${js(raw)}), ${js([...new Set(raw)].sort((a, b) => a - b))}));
`,
    };
    const P = 'bsearch.js';
    return {
      name: this.name,
      lang: this.lang,
      files,
      tests: ['bsearch.test.js'],
      bugs: [
        { path: P, fixed: 'let hi = xs.length;', buggy: 'let hi = xs.length - 1;', issue: `${lb}(xs, x) for an x larger than every element returns the last index instead of xs.length.` },
        { path: P, fixed: 'if (xs[mid] < target) lo = mid + 1;', buggy: 'if (xs[mid] <= target) lo = mid + 1;', issue: `${lb}(${js(withDup)}, ${dup}) returns a position after the equal elements; expected ${firstDup}.` },
        { path: P, fixed: 'xs[i] === target ? i : -1', buggy: 'xs[i] >= target ? i : -1', issue: `${io}(${js(base)}, ${missingMid}) returns an index although ${missingMid} is not in the array.` },
        { path: P, fixed: '[...xs].sort((a, b) => a - b)', buggy: '[...xs].sort()', issue: `${uniq}(${js(raw)}) comes back in the wrong order.` },
        { path: P, fixed: 'out[out.length - 1] !== x', buggy: 'out[0] !== x', issue: `${uniq}() keeps duplicates of every value except the smallest.` },
        { path: P, fixed: `xs.splice(${lb}(xs, x), 0, x);`, buggy: `xs.splice(${lb}(xs, x), 1, x);`, issue: `${ins}() overwrites an existing element instead of inserting; the array does not grow.` },
      ],
    };
  },
};

const DIGITS = '0123456789abcdefghijklmnopqrstuvwxyz';

const radix: RepoSpec = {
  name: 'jsradix',
  lang: 'node',
  build(r: Rng) {
    const to = r.pick(['toBase', 'toRadix', 'encodeInt']);
    const from = r.pick(['fromBase', 'fromRadix', 'decodeInt']);
    const grp = r.pick(['groupThousands', 'withSeparators']);
    const base = r.pick([2, 3, 5, 7, 8, 16]);
    // Not a palindrome in this base, so reversed digits are visible.
    let n = r.int(40, 5000);
    while (n.toString(base) === [...n.toString(base)].reverse().join('')) n = r.int(40, 5000);
    // With at least one letter digit, so upper case matters.
    let hex = r.int(171, 4095);
    while (!/[a-f]/.test(hex.toString(16))) hex = r.int(171, 4095);
    const neg = r.int(10, 999);
    const big = r.int(10, 99) * 1_000_000 + r.int(1000, 999999);
    const sep = r.pick([',', '_', "'"]);
    const bad = r.pick([2, 8, 10]);
    const files = {
      'radix.js': `'use strict';

const DIGITS = '${DIGITS}';

function ${to}(n, base) {
  if (base < 2 || base > 36) throw new RangeError('base must be 2..36, got ' + base);
  if (n === 0) return '0';
  const neg = n < 0;
  let x = Math.abs(n);
  let out = '';
  while (x > 0) {
    out = DIGITS[x % base] + out;
    x = Math.floor(x / base);
  }
  return neg ? '-' + out : out;
}

function ${from}(s, base) {
  let neg = false;
  if (s.startsWith('-')) {
    neg = true;
    s = s.slice(1);
  }
  let n = 0;
  for (const ch of s.toLowerCase()) {
    const d = DIGITS.indexOf(ch);
    if (d < 0 || d >= base) throw new SyntaxError('invalid digit "' + ch + '" for base ' + base);
    n = n * base + d;
  }
  return neg ? -n : n;
}

function ${grp}(n, sep = ',') {
  const s = String(Math.abs(n));
  let out = '';
  for (let i = 0; i < s.length; i++) {
    if (i > 0 && (s.length - i) % 3 === 0) out += sep;
    out += s[i];
  }
  return n < 0 ? '-' + out : out;
}

module.exports = { ${to}, ${from}, ${grp} };
`,
      'radix.test.js': `${HEADER}const { ${to}, ${from}, ${grp} } = require('./radix.js');

test('${to} base ${base}', () => assert.equal(${to}(${n}, ${base}), ${js(n.toString(base))}));
test('${to} zero', () => assert.equal(${to}(0, ${base}), '0'));
test('${from} round trip', () => assert.equal(${from}(${js(n.toString(base))}, ${base}), ${n}));
test('${from} upper-case hex', () => assert.equal(${from}(${js(hex.toString(16).toUpperCase())}, 16), ${hex}));
test('${from} negative', () => assert.equal(${from}(${js('-' + neg.toString(base))}, ${base}), ${-neg}));
test('${from} rejects a digit equal to the base', () => assert.throws(() => ${from}(${js(DIGITS[bad])}, ${bad}), SyntaxError));
test('${grp}', () => assert.equal(${grp}(${big}, ${js(sep)}), ${js(String(big).replace(/\B(?=(\d{3})+$)/g, sep))}));
`,
    };
    const P = 'radix.js';
    return {
      name: this.name,
      lang: this.lang,
      files,
      tests: ['radix.test.js'],
      bugs: [
        { path: P, fixed: "if (n === 0) return '0';", buggy: "if (n === 0) return '';", issue: `${to}(0, ${base}) returns an empty string instead of "0".` },
        { path: P, fixed: 'out = DIGITS[x % base] + out;', buggy: 'out += DIGITS[x % base];', issue: `${to}(${n}, ${base}) returns the digits in reverse; expected "${n.toString(base)}".` },
        { path: P, fixed: 'if (d < 0 || d >= base)', buggy: 'if (d < 0 || d > base)', issue: `${from}("${DIGITS[bad]}", ${bad}) is accepted although "${DIGITS[bad]}" is not a base-${bad} digit.` },
        { path: P, fixed: 'for (const ch of s.toLowerCase())', buggy: 'for (const ch of s)', issue: `${from}("${hex.toString(16).toUpperCase()}", 16) throws SyntaxError; upper-case digits should be accepted.` },
        { path: P, fixed: 'n = n * base + d;', buggy: 'n = n * 10 + d;', issue: `${from}("${n.toString(base)}", ${base}) does not give back ${n}.` },
        { path: P, fixed: '(s.length - i) % 3 === 0', buggy: 'i % 3 === 0', issue: `${grp}(${big}, "${sep}") puts the separators in the wrong places.` },
        { path: P, fixed: 'return neg ? -n : n;', buggy: 'return n;', issue: `${from}("-${neg.toString(base)}", ${base}) loses the minus sign.` },
      ],
    };
  },
};

const emitter: RepoSpec = {
  name: 'jsemitter',
  lang: 'node',
  build(r: Rng) {
    const cls = r.pick(['Emitter', 'EventBus', 'Hub']);
    const [e1, e2] = r.sample(['change', 'save', 'tick', 'close', 'ready', 'update', 'drop'], 2);
    const a1 = r.int(1, 50), a2 = r.sample(WORDS, 1)[0]!;
    const files = {
      'emitter.js': `'use strict';

class ${cls} {
  constructor() {
    this.handlers = new Map();
  }

  on(event, fn) {
    if (!this.handlers.has(event)) this.handlers.set(event, []);
    this.handlers.get(event).push({ fn, once: false });
    return () => this.off(event, fn);
  }

  once(event, fn) {
    if (!this.handlers.has(event)) this.handlers.set(event, []);
    this.handlers.get(event).push({ fn, once: true });
  }

  off(event, fn) {
    const list = this.handlers.get(event);
    if (!list) return false;
    const i = list.findIndex((h) => h.fn === fn);
    if (i < 0) return false;
    list.splice(i, 1);
    return true;
  }

  // Calls every handler registered for the event; returns how many were called.
  emit(event, ...args) {
    const list = this.handlers.get(event) || [];
    const snapshot = [...list];
    for (const h of snapshot) {
      if (h.once) this.off(event, h.fn);
      h.fn(...args);
    }
    return snapshot.length;
  }
}

module.exports = { ${cls} };
`,
      'emitter.test.js': `${HEADER}const { ${cls} } = require('./emitter.js');

test('passes every argument', () => {
  const e = new ${cls}();
  let got;
  e.on('${e1}', (...args) => { got = args; });
  e.emit('${e1}', ${a1}, ${js(a2)});
  assert.deepEqual(got, [${a1}, ${js(a2)}]);
});
test('on handlers stay, once handlers run once', () => {
  const e = new ${cls}();
  const calls = [];
  e.on('${e1}', () => calls.push('on'));
  e.once('${e1}', () => calls.push('once'));
  e.emit('${e1}');
  e.emit('${e1}');
  assert.deepEqual(calls, ['on', 'once', 'on']);
});
test('two once handlers both run', () => {
  const e = new ${cls}();
  const calls = [];
  e.once('${e2}', () => calls.push(1));
  e.once('${e2}', () => calls.push(2));
  assert.equal(e.emit('${e2}'), 2);
  assert.deepEqual(calls, [1, 2]);
});
test('off removes exactly one handler', () => {
  const e = new ${cls}();
  const calls = [];
  const f1 = () => calls.push(1);
  const f2 = () => calls.push(2);
  const f3 = () => calls.push(3);
  e.on('${e1}', f1);
  e.on('${e1}', f2);
  e.on('${e1}', f3);
  assert.equal(e.off('${e1}', f1), true);
  assert.equal(e.off('${e1}', f2), true);
  e.emit('${e1}');
  assert.deepEqual(calls, [3]);
});
test('the unsubscribe function works', () => {
  const e = new ${cls}();
  let n = 0;
  const stop = e.on('${e2}', () => n++);
  stop();
  assert.equal(e.emit('${e2}'), 0);
  assert.equal(n, 0);
});
`,
    };
    const P = 'emitter.js';
    return {
      name: this.name,
      lang: this.lang,
      files,
      tests: ['emitter.test.js'],
      bugs: [
        { path: P, fixed: 'if (h.once) this.off(event, h.fn);', buggy: 'if (!h.once) this.off(event, h.fn);', issue: `Handlers added with on('${e1}', ...) stop firing after the first emit, while once() handlers keep firing.` },
        { path: P, fixed: 'const snapshot = [...list];', buggy: 'const snapshot = list;', issue: `With two once('${e2}') handlers, emit('${e2}') only calls the first one.` },
        { path: P, fixed: 'if (i < 0) return false;', buggy: 'if (i <= 0) return false;', issue: `off() cannot remove the first handler registered for an event; it returns false and the handler keeps firing.` },
        { path: P, fixed: 'list.splice(i, 1);', buggy: 'list.splice(i);', issue: `off(event, f) also removes every handler registered after f.` },
        { path: P, fixed: 'h.fn(...args);', buggy: 'h.fn(args);', issue: `emit('${e1}', ${a1}, ${js(a2)}) calls handlers with a single array argument instead of the separate arguments.` },
        { path: P, fixed: 'return () => this.off(event, fn);', buggy: 'return () => this.off(event);', issue: `The function returned by on() does not unsubscribe the handler.` },
        { path: P, fixed: 'return snapshot.length;', buggy: 'return list.length;', issue: `emit() returns the wrong count when once() handlers fire: emitting '${e2}' to two once() handlers returns 0 instead of 2.` },
      ],
    };
  },
};

const rpn: RepoSpec = {
  name: 'jsrpn',
  lang: 'node',
  build(r: Rng) {
    const fn = r.pick(['evaluate', 'evalRpn', 'calc']);
    const a = r.int(20, 90), b = r.int(2, 9);
    const neg = -r.int(2, 9);
    const d1 = r.int(1, 9) + r.int(1, 9) / 10, d2 = r.int(2, 4);
    const files = {
      'rpn.js': String.raw`'use strict';

// Evaluates a reverse Polish expression such as "3 4 + 2 *" (tokens separated by whitespace).
function ${fn}(expr) {
  const stack = [];
  for (const tok of expr.trim().split(/\s+/)) {
    if (/^-?\d+(\.\d+)?$/.test(tok)) {
      stack.push(Number(tok));
      continue;
    }
    if (stack.length < 2) throw new SyntaxError('operator ' + tok + ' needs two operands');
    const b = stack.pop();
    const a = stack.pop();
    switch (tok) {
      case '+': stack.push(a + b); break;
      case '-': stack.push(a - b); break;
      case '*': stack.push(a * b); break;
      case '/':
        if (b === 0) throw new RangeError('division by zero');
        stack.push(a / b);
        break;
      default: throw new SyntaxError('unknown token ' + tok);
    }
  }
  if (stack.length !== 1) throw new SyntaxError('expected one result, the stack holds ' + stack.length);
  return stack[0];
}

module.exports = { ${fn} };
`,
      'rpn.test.js': `${HEADER}const { ${fn} } = require('./rpn.js');

test('subtraction and division keep operand order', () => assert.deepEqual([${fn}('${a} ${b} -'), ${fn}('${a * b} ${b} /')], [${a - b}, ${a}]));
test('negative literals', () => assert.equal(${fn}('${neg} ${b} *'), ${neg * b}));
test('decimal literals', () => assert.equal(${fn}('${d1} ${d2} *'), ${d1} * ${d2}));
test('missing operand', () => assert.throws(() => ${fn}('${a} +'), SyntaxError));
test('division by zero', () => assert.throws(() => ${fn}('${a} 0 /'), RangeError));
test('leftover operands', () => assert.throws(() => ${fn}('${a} ${b}'), SyntaxError));
test('surrounding whitespace', () => assert.equal(${fn}('  ${a} ${b} + '), ${a + b}));
`,
    };
    const P = 'rpn.js';
    return {
      name: this.name,
      lang: this.lang,
      files,
      tests: ['rpn.test.js'],
      bugs: [
        { path: P, fixed: '    const b = stack.pop();\n    const a = stack.pop();', buggy: '    const a = stack.pop();\n    const b = stack.pop();', issue: `${fn}('${a} ${b} -') returns ${b - a}; expected ${a - b}.` },
        { path: P, fixed: '/^-?\\d+', buggy: '/^\\d+', issue: `Negative numbers are not accepted: ${fn}('${neg} ${b} *') throws instead of returning ${neg * b}.` },
        { path: P, fixed: '(\\.\\d+)?$/', buggy: '$/', issue: `${fn}('${d1} ${d2} *') throws "unknown token"; decimal numbers should work.` },
        { path: P, fixed: 'if (stack.length < 2)', buggy: 'if (stack.length < 1)', issue: `${fn}('${a} +') returns NaN instead of a SyntaxError about the missing operand.` },
        { path: P, fixed: 'if (b === 0) throw', buggy: 'if (b === null) throw', issue: `${fn}('${a} 0 /') returns Infinity; division by zero should raise a RangeError.` },
        { path: P, fixed: 'if (stack.length !== 1)', buggy: 'if (stack.length === 0)', issue: `${fn}('${a} ${b}') returns a number although the expression has an operand left over.` },
        { path: P, fixed: 'expr.trim().split(', buggy: 'expr.split(', issue: `An expression with leading or trailing spaces, like '  ${a} ${b} + ', fails with "unknown token".` },
      ],
    };
  },
};

export const JS_SPECS: RepoSpec[] = [jsonpath, ratelimit, strings, bsearch, radix, emitter, rpn];
