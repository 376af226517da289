// Seeded Python repositories of the code-agent family (tests: python3 -m unittest). Each build() draws
// function names, constants and test data from its Rng; expected values in the tests are computed
// here by a TypeScript reference so that the gold repository passes every test for every seed.
// Each test data draw is shaped so that every bug of the repository changes at least one assertion
// (the generator still measures this by running the suite).
import type { Rng } from '../../rng.js';
import { WORDS, distinctInts, py, tup, type RepoSpec } from './template.js';

const interval: RepoSpec = {
  name: 'pyinterval',
  lang: 'python',
  build(r: Rng) {
    const merge = r.pick(['merge', 'merge_intervals', 'coalesce']);
    const overlaps = r.pick(['overlaps', 'intersects']);
    const total = r.pick(['total_length', 'covered_length']);
    const contains = r.pick(['contains', 'covers']);
    // Three disjoint, non-touching intervals, given out of order.
    let x = r.int(0, 5);
    const disjoint: number[][] = [];
    for (let i = 0; i < 3; i++) {
      const lo = x + r.int(1, 3);
      const hi = lo + r.int(1, 4);
      disjoint.push([lo, hi]);
      x = hi;
    }
    const shuffled = [disjoint[2]!, disjoint[0]!, disjoint[1]!];
    const a = r.int(0, 9), b = a + r.int(2, 5), c = b + r.int(2, 5), d = c + r.int(2, 5);
    const ov = r.int(1, 4), len1 = ov + r.int(2, 5), len2 = r.int(2, 6);
    const files = {
      'intervals.py': `"""Half-open integer intervals [lo, hi)."""


def ${merge}(intervals):
    out = []
    for lo, hi in sorted(intervals):
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return [tuple(iv) for iv in out]


def ${overlaps}(a, b):
    return a[0] < b[1] and b[0] < a[1]


def ${total}(intervals):
    return sum(hi - lo for lo, hi in ${merge}(intervals))


def ${contains}(iv, x):
    return iv[0] <= x < iv[1]
`,
      'test_intervals.py': `import unittest
from intervals import ${contains}, ${merge}, ${overlaps}, ${total}


class TestIntervals(unittest.TestCase):
    def test_merge_sorts(self):
        self.assertEqual(${merge}(${tups(shuffled)}), ${tups(disjoint)})

    def test_merge_touching(self):
        self.assertEqual(${merge}([${tup([a, b])}, ${tup([b, c])}]), [${tup([a, c])}])

    def test_merge_nested(self):
        self.assertEqual(${merge}([${tup([a, d])}, ${tup([b, c])}]), [${tup([a, d])}])

    def test_overlaps(self):
        self.assertTrue(${overlaps}(${tup([a, c])}, ${tup([b, d])}))
        self.assertFalse(${overlaps}(${tup([a, b])}, ${tup([c, d])}))
        self.assertFalse(${overlaps}(${tup([a, b])}, ${tup([b, c])}))

    def test_total_length(self):
        self.assertEqual(${total}([${tup([a, a + len1])}, ${tup([a + len1 - ov, a + len1 - ov + len2 + ov])}]), ${len1 + len2})

    def test_contains(self):
        self.assertTrue(${contains}(${tup([b, c])}, ${b}))
        self.assertTrue(${contains}(${tup([b, c])}, ${b + 1}))
        self.assertFalse(${contains}(${tup([b, c])}, ${c}))
`,
    };
    const P = 'intervals.py';
    return {
      name: this.name,
      lang: this.lang,
      files,
      tests: ['test_intervals.py'],
      bugs: [
        { path: P, fixed: 'for lo, hi in sorted(intervals):', buggy: 'for lo, hi in intervals:', issue: `${merge}() returns overlapping or out-of-order intervals when its input is not already sorted, e.g. ${merge}(${tups(shuffled)}).` },
        { path: P, fixed: 'if out and lo <= out[-1][1]:', buggy: 'if out and lo < out[-1][1]:', issue: `${merge}([${tup([a, b])}, ${tup([b, c])}]) gives two intervals; touching intervals should come back as one, ${tup([a, c])}.` },
        { path: P, fixed: 'out[-1][1] = max(out[-1][1], hi)', buggy: 'out[-1][1] = hi', issue: `Merging an interval that lies inside another one shrinks the result: ${merge}([${tup([a, d])}, ${tup([b, c])}]) should be [${tup([a, d])}].` },
        { path: P, fixed: 'return a[0] < b[1] and b[0] < a[1]', buggy: 'return a[0] < b[1] or b[0] < a[1]', issue: `${overlaps}() says ${tup([a, b])} and ${tup([c, d])} overlap although they are far apart.` },
        { path: P, fixed: `for lo, hi in ${merge}(intervals))`, buggy: 'for lo, hi in intervals)', issue: `${total}() counts the shared part of overlapping intervals twice.` },
        { path: P, fixed: 'return iv[0] <= x < iv[1]', buggy: 'return iv[0] <= x <= iv[1]', issue: `${contains}(${tup([b, c])}, ${c}) is True, but intervals are half-open: the upper end is not inside.` },
      ],
    };
  },
};

function tups(xs: number[][]): string {
  return `[${xs.map(tup).join(', ')}]`;
}

const ROMAN: Array<[number, string]> = [[1000, 'M'], [900, 'CM'], [500, 'D'], [400, 'CD'], [100, 'C'], [90, 'XC'], [50, 'L'], [40, 'XL'], [10, 'X'], [9, 'IX'], [5, 'V'], [4, 'IV'], [1, 'I']];
function toRoman(n: number): string {
  let out = '';
  for (const [v, s] of ROMAN) while (n >= v) { out += s; n -= v; }
  return out;
}

const roman: RepoSpec = {
  name: 'pyroman',
  lang: 'python',
  build(r: Rng) {
    const enc = r.pick(['to_roman', 'int_to_roman', 'encode_roman']);
    const dec = r.pick(['from_roman', 'roman_to_int', 'decode_roman']);
    const small = r.int(1, 3);
    const year = r.int(1900, 1999);
    // Every numeral here repeats a letter, which is what a wrong >= comparison gets wrong.
    const additive = r.pick([3, 8, 23, 33, 38, 1888, 2023, 3888]);
    const subtractive = r.pick([4, 9, 14, 19, 44, 94, 449, 944, 1994]);
    const files = {
      'roman.py': `PAIRS = [(1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"),
         (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")]
VALUES = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}


def ${enc}(n):
    if not 0 < n < 4000:
        raise ValueError("out of range: %r" % n)
    out = []
    for value, sym in PAIRS:
        while n >= value:
            out.append(sym)
            n -= value
    return "".join(out)


def ${dec}(s):
    total = 0
    for i, ch in enumerate(s):
        v = VALUES[ch]
        if i + 1 < len(s) and VALUES[s[i + 1]] > v:
            total -= v
        else:
            total += v
    return total
`,
      'test_roman.py': `import unittest
from roman import ${dec}, ${enc}


class TestRoman(unittest.TestCase):
    def test_small(self):
        self.assertEqual(${enc}(${small}), ${py(toRoman(small))})

    def test_year(self):
        self.assertEqual(${enc}(${year}), ${py(toRoman(year))})

    def test_range(self):
        for bad in (0, 4000):
            with self.assertRaises(ValueError):
                ${enc}(bad)

    def test_decode_additive(self):
        self.assertEqual(${dec}(${py(toRoman(additive))}), ${additive})

    def test_decode_subtractive(self):
        self.assertEqual(${dec}(${py(toRoman(subtractive))}), ${subtractive})
`,
    };
    const P = 'roman.py';
    return {
      name: this.name,
      lang: this.lang,
      files,
      tests: ['test_roman.py'],
      bugs: [
        { path: P, fixed: 'while n >= value:', buggy: 'while n > value:', issue: `${enc}(${small}) should be "${toRoman(small)}" but the numeral comes out short.` },
        { path: P, fixed: '(1000, "M"), (900, "CM"),', buggy: '(1000, "M"),', issue: `Years such as ${year} are encoded with four Cs in a row; ${enc}(${year}) should be "${toRoman(year)}".` },
        { path: P, fixed: 'if not 0 < n < 4000:', buggy: 'if not 0 <= n < 4000:', issue: `${enc}(0) returns an empty string; zero has no Roman numeral and should raise ValueError.` },
        { path: P, fixed: 'VALUES[s[i + 1]] > v:', buggy: 'VALUES[s[i + 1]] >= v:', issue: `${dec}("${toRoman(additive)}") returns a wrong (too small) number; it should be ${additive}.` },
        { path: P, fixed: '            total -= v\n        else:', buggy: '            total += v\n        else:', issue: `${dec}("${toRoman(subtractive)}") returns a number that is too large; subtractive pairs like IV and XC are not handled (expected ${subtractive}).` },
        { path: P, fixed: 'if i + 1 < len(s) and', buggy: 'if i < len(s) and', issue: `${dec}() crashes with IndexError on every numeral, e.g. ${dec}("${toRoman(additive)}").` },
      ],
    };
  },
};

const lru: RepoSpec = {
  name: 'pylru',
  lang: 'python',
  build(r: Rng) {
    const cls = r.pick(['LRUCache', 'LruCache', 'RecentCache']);
    const cap = r.int(3, 6);
    const keys = r.sample(WORDS, cap + 1);
    const [k1, k2, k3] = r.sample(['a', 'b', 'c', 'd', 'e', 'k', 'x', 'y', 'z'], 3);
    const dflt = r.int(1, 99);
    const v1 = r.int(1, 50), v2 = r.int(51, 99);
    const files = {
      'lru.py': `from collections import OrderedDict


class ${cls}:
    """Least-recently-used cache: once full, putting a new key evicts the key used longest ago."""

    def __init__(self, capacity=${cap}):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._data = OrderedDict()

    def get(self, key, default=None):
        if key not in self._data:
            return default
        self._data.move_to_end(key)
        return self._data[key]

    def put(self, key, value):
        if key in self._data:
            self._data.move_to_end(key)
        self._data[key] = value
        if len(self._data) > self.capacity:
            self._data.popitem(last=False)

    def __len__(self):
        return len(self._data)
`,
      'test_lru.py': `import unittest
from lru import ${cls}


class TestLru(unittest.TestCase):
    def test_default_capacity(self):
        c = ${cls}()
        for i, k in enumerate(${py(keys)}):
            c.put(k, i)
        self.assertEqual(len(c), ${cap})
        self.assertIsNone(c.get(${py(keys[0])}))
        self.assertEqual(c.get(${py(keys[cap])}), ${cap})

    def test_rejects_zero_capacity(self):
        with self.assertRaises(ValueError):
            ${cls}(0)

    def test_get_refreshes(self):
        c = ${cls}(2)
        c.put(${py(k1)}, 1)
        c.put(${py(k2)}, 2)
        self.assertEqual(c.get(${py(k1)}), 1)
        c.put(${py(k3)}, 3)
        self.assertEqual(c.get(${py(k1)}), 1)
        self.assertIsNone(c.get(${py(k2)}))

    def test_evicts_oldest(self):
        c = ${cls}(2)
        c.put(${py(k1)}, 1)
        c.put(${py(k2)}, 2)
        c.put(${py(k3)}, 3)
        self.assertEqual([c.get(${py(k1)}), c.get(${py(k2)}), c.get(${py(k3)})], [None, 2, 3])

    def test_get_default(self):
        self.assertEqual(${cls}(2).get(${py(k1)}, ${dflt}), ${dflt})

    def test_put_overwrites(self):
        c = ${cls}(2)
        c.put(${py(k1)}, ${v1})
        c.put(${py(k1)}, ${v2})
        self.assertEqual((len(c), c.get(${py(k1)})), (1, ${v2}))
`,
    };
    const P = 'lru.py';
    return {
      name: this.name,
      lang: this.lang,
      files,
      tests: ['test_lru.py'],
      bugs: [
        { path: P, fixed: `def __init__(self, capacity=${cap}):`, buggy: `def __init__(self, capacity=${cap - 1}):`, issue: `${cls}() created without arguments should hold ${cap} entries (the default capacity), but it starts evicting earlier.` },
        { path: P, fixed: 'if capacity < 1:', buggy: 'if capacity < 0:', issue: `${cls}(0) is accepted and gives a cache that can never hold anything; it should raise ValueError.` },
        { path: P, fixed: '        self._data.move_to_end(key)\n        return self._data[key]', buggy: '        return self._data[key]', issue: `Reading a key with get() does not count as using it: after get("${k1}") on a full cache, the next put still evicts "${k1}".` },
        { path: P, fixed: 'self._data.popitem(last=False)', buggy: 'self._data.popitem()', issue: `When the cache is full, put() throws away the entry that was just added instead of the least recently used one.` },
        { path: P, fixed: 'if len(self._data) > self.capacity:', buggy: 'if len(self._data) >= self.capacity:', issue: `A ${cls}(2) only ever keeps one entry.` },
        { path: P, fixed: '            return default\n', buggy: '            return None\n', issue: `get(key, default) ignores the default for a missing key: ${cls}(2).get("${k1}", ${dflt}) should be ${dflt}.` },
      ],
    };
  },
};

const heap: RepoSpec = {
  name: 'pyheap',
  lang: 'python',
  build(r: Rng) {
    const cls = r.pick(['PriorityQueue', 'MinQueue', 'TaskQueue']);
    const items = r.sample(WORDS, 5);
    const prios = distinctInts(r, 5, 1, 40);
    const pushed = items.map((it, i) => [it, prios[i]!] as const);
    const sorted = [...pushed].sort((x, y) => x[1] - y[1]);
    const tie = r.int(1, 9);
    const tied = r.sample(WORDS, 3);
    const missing = WORDS.find((w) => !items.includes(w))!;
    const files = {
      'pqueue.py': `import heapq
import itertools


class ${cls}:
    """Lowest priority first; equal priorities come out in insertion order."""

    def __init__(self):
        self._heap = []
        self._counter = itertools.count()

    def push(self, item, priority):
        entry = (priority, next(self._counter), item)
        heapq.heappush(self._heap, entry)

    def pop(self):
        if not self._heap:
            raise IndexError("pop from an empty priority queue")
        return heapq.heappop(self._heap)[2]

    def peek(self):
        if not self._heap:
            raise IndexError("peek at an empty priority queue")
        return self._heap[0][2]

    def drain(self):
        out = []
        while self._heap:
            out.append(self.pop())
        return out

    def __contains__(self, item):
        return any(e[2] == item for e in self._heap)

    def __len__(self):
        return len(self._heap)
`,
      'test_pqueue.py': `import unittest
from pqueue import ${cls}


def filled():
    q = ${cls}()
${pushed.map(([it, p]) => `    q.push(${py(it)}, ${p})`).join('\n')}
    return q


class TestQueue(unittest.TestCase):
    def test_pop_lowest_first(self):
        q = filled()
        self.assertEqual([q.pop(), q.pop()], ${py(sorted.slice(0, 2).map((p) => p[0]))})

    def test_ties_fifo(self):
        q = ${cls}()
${tied.map((t) => `        q.push(${py(t)}, ${tie})`).join('\n')}
        self.assertEqual(q.drain(), ${py(tied)})

    def test_peek(self):
        q = filled()
        self.assertEqual(q.peek(), ${py(sorted[0]![0])})
        self.assertEqual(len(q), 5)

    def test_drain(self):
        self.assertEqual(filled().drain(), ${py(sorted.map((p) => p[0]))})

    def test_contains(self):
        q = filled()
        self.assertIn(${py(items[2])}, q)
        self.assertNotIn(${py(missing)}, q)

    def test_empty(self):
        with self.assertRaises(IndexError):
            ${cls}().pop()
`,
    };
    const P = 'pqueue.py';
    return {
      name: this.name,
      lang: this.lang,
      files,
      tests: ['test_pqueue.py'],
      bugs: [
        { path: P, fixed: 'entry = (priority,', buggy: 'entry = (-priority,', issue: `${cls} hands out the item with the highest priority number first; the lowest number should come out first.` },
        { path: P, fixed: 'self._counter = itertools.count()', buggy: 'self._counter = itertools.count(0, -1)', issue: `Items pushed with the same priority come out in reverse insertion order (expected first in, first out).` },
        { path: P, fixed: 'return heapq.heappop(self._heap)[2]', buggy: 'return self._heap.pop()[2]', issue: `pop() does not return the lowest-priority item; the order of results looks arbitrary.` },
        { path: P, fixed: 'return self._heap[0][2]', buggy: 'return self._heap[-1][2]', issue: `peek() disagrees with pop(): it shows some other item than the one pop() would return next.` },
        { path: P, fixed: 'while self._heap:', buggy: 'while len(self._heap) > 1:', issue: `drain() leaves one item behind in the queue.` },
        { path: P, fixed: 'e[2] == item for e', buggy: 'e[1] == item for e', issue: `\`item in queue\` is False for items that were pushed and are still waiting.` },
      ],
    };
  },
};

function matmulRef(a: number[][], b: number[][]): number[][] {
  return a.map((row) => b[0]!.map((_, j) => row.reduce((s, x, k) => s + x * b[k]![j]!, 0)));
}

const matrix: RepoSpec = {
  name: 'pymatrix',
  lang: 'python',
  build(r: Rng) {
    const mul = r.pick(['matmul', 'mat_mul', 'multiply']);
    const tr = r.pick(['transpose', 'transposed']);
    const trace = r.pick(['trace', 'diag_sum']);
    const scale = r.pick(['scale', 'scaled']);
    const rnd = (rows: number, cols: number) => Array.from({ length: rows }, () => Array.from({ length: cols }, () => r.int(1, 9)));
    const m23 = rnd(2, 3);
    let a = rnd(2, 2), b = rnd(2, 2);
    // b^T must give a different product, so the swapped-index bug is visible.
    while (JSON.stringify(matmulRef(a, b)) === JSON.stringify(matmulRef(a, b.map((_, i) => b.map((row) => row[i]!))))) { a = rnd(2, 2); b = rnd(2, 2); }
    const sq = rnd(3, 3);
    const k = r.int(2, 5);
    const n = r.int(3, 5);
    const ident = Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => (i === j ? 1 : 0)));
    const files = {
      'matrix.py': `def identity(n):
    return [[1 if i == j else 0 for j in range(n)] for i in range(n)]


def ${tr}(m):
    return [[m[i][j] for i in range(len(m))] for j in range(len(m[0]))]


def ${mul}(a, b):
    if len(a[0]) != len(b):
        raise ValueError("shape mismatch: %dx%d times %dx%d" % (len(a), len(a[0]), len(b), len(b[0])))
    return [[sum(a[i][k] * b[k][j] for k in range(len(b))) for j in range(len(b[0]))] for i in range(len(a))]


def ${trace}(m):
    return sum(m[i][i] for i in range(len(m)))


def ${scale}(m, k):
    return [[k * x for x in row] for row in m]
`,
      'test_matrix.py': `import unittest
from matrix import identity, ${mul}, ${scale}, ${trace}, ${tr}


class TestMatrix(unittest.TestCase):
    def test_identity(self):
        self.assertEqual(identity(${n}), ${py(ident)})

    def test_transpose(self):
        self.assertEqual(${tr}(${py(m23)}), ${py(m23[0]!.map((_, j) => m23.map((row) => row[j]!)))})

    def test_multiply(self):
        self.assertEqual(${mul}(${py(a)}, ${py(b)}), ${py(matmulRef(a, b))})

    def test_multiply_rectangular(self):
        m32 = ${tr}(${py(m23)})
        self.assertEqual(${mul}(${py(m23)}, ${py(m23[0]!.map((_, j) => m23.map((row) => row[j]!)))}), ${py(matmulRef(m23, m23[0]!.map((_, j) => m23.map((row) => row[j]!))))})
        self.assertEqual(len(m32), 3)

    def test_shape_mismatch(self):
        with self.assertRaises(ValueError):
            ${mul}(${py(m23)}, ${py(m23)})

    def test_trace(self):
        self.assertEqual(${trace}(${py(sq)}), ${sq[0]![0]! + sq[1]![1]! + sq[2]![2]!})

    def test_scale(self):
        self.assertEqual(${scale}(${py(a)}, ${k}), ${py(a.map((row) => row.map((x) => k * x)))})
`,
    };
    const P = 'matrix.py';
    return {
      name: this.name,
      lang: this.lang,
      files,
      tests: ['test_matrix.py'],
      bugs: [
        { path: P, fixed: '1 if i == j else 0', buggy: '1 if i <= j else 0', issue: `identity(${n}) has ones above the diagonal.` },
        { path: P, fixed: 'for i in range(len(m))] for j in range(len(m[0]))]', buggy: 'for i in range(len(m[0]))] for j in range(len(m))]', issue: `${tr}() fails (IndexError) or returns the wrong shape for non-square matrices, e.g. a 2x3 matrix should become 3x2.` },
        { path: P, fixed: 'a[i][k] * b[k][j]', buggy: 'a[i][k] * b[j][k]', issue: `${mul}(${py(a)}, ${py(b)}) gives the wrong product; expected ${py(matmulRef(a, b))}.` },
        { path: P, fixed: 'if len(a[0]) != len(b):', buggy: 'if len(a) != len(b):', issue: `${mul}() rejects a valid 2x3 times 3x2 product and lets a 2x3 times 2x3 product through without the shape error.` },
        { path: P, fixed: 'for i in range(len(m)))', buggy: 'for i in range(len(m) - 1))', issue: `${trace}() of a 3x3 matrix leaves out the last diagonal element.` },
        { path: P, fixed: '[[k * x for x in row]', buggy: '[[k + x for x in row]', issue: `${scale}(m, ${k}) does not multiply the entries by ${k}.` },
      ],
    };
  },
};

function addDaysRef(y: number, m: number, d: number, n: number): [number, number, number] {
  const t = new Date(Date.UTC(y, m - 1, d + n));
  return [t.getUTCFullYear(), t.getUTCMonth() + 1, t.getUTCDate()];
}
function dayOfYearRef(y: number, m: number, d: number): number {
  return Math.round((Date.UTC(y, m - 1, d) - Date.UTC(y, 0, 1)) / 86_400_000) + 1;
}
const MONTH_DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

const dates: RepoSpec = {
  name: 'pydates',
  lang: 'python',
  build(r: Rng) {
    const add = r.pick(['add_days', 'shift_date', 'plus_days']);
    const doy = r.pick(['day_of_year', 'ordinal_day']);
    const leap4 = 4 * r.int(490, 520);
    const y400 = r.pick([1600, 2000, 2400]);
    const y100 = r.pick([1700, 1800, 1900, 2100]);
    const leapY = 4 * r.int(495, 510);
    const plainY = leapY + r.int(1, 3);
    const docY = r.int(1990, 2030), docM = r.int(3, 11), docD = r.int(1, 28);
    const endM = r.pick([1, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    const endY = r.int(1990, 2030);
    const endD = MONTH_DAYS[endM - 1]!;
    const novY = r.int(1990, 2030), novD = r.int(5, 25), novN = r.int(31 - novD + 1, 31 - novD + 20);
    const decY = r.int(1990, 2030), decD = r.int(20, 31), decN = r.int(5, 40);
    const files = {
      'dates.py': `DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]


def is_leap(year):
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def days_in_month(year, month):
    if not 1 <= month <= 12:
        raise ValueError("month must be 1..12, got %r" % month)
    if month == 2 and is_leap(year):
        return 29
    return DAYS[month - 1]


def ${doy}(year, month, day):
    return sum(days_in_month(year, m) for m in range(1, month)) + day


def ${add}(year, month, day, n):
    day += n
    while day > days_in_month(year, month):
        day -= days_in_month(year, month)
        month += 1
        if month > 12:
            month = 1
            year += 1
    return (year, month, day)
`,
      'test_dates.py': `import unittest
from dates import ${add}, ${doy}, days_in_month, is_leap


class TestDates(unittest.TestCase):
    def test_is_leap(self):
        self.assertTrue(is_leap(${leap4}))
        self.assertTrue(is_leap(${y400}))
        self.assertFalse(is_leap(${y100}))
        self.assertFalse(is_leap(${leap4 + 1}))

    def test_days_in_month(self):
        self.assertEqual(days_in_month(${leapY}, 2), 29)
        self.assertEqual(days_in_month(${plainY}, 2), 28)
        self.assertEqual(days_in_month(${leapY}, 1), 31)
        self.assertEqual(days_in_month(${plainY}, 4), 30)
        self.assertEqual(days_in_month(${plainY}, 12), 31)

    def test_day_of_year(self):
        self.assertEqual(${doy}(${docY}, ${docM}, ${docD}), ${dayOfYearRef(docY, docM, docD)})

    def test_add_zero_on_month_end(self):
        self.assertEqual(${add}(${endY}, ${endM}, ${endD}, 0), ${tup([endY, endM, endD])})

    def test_add_into_december(self):
        self.assertEqual(${add}(${novY}, 11, ${novD}, ${novN}), ${tup(addDaysRef(novY, 11, novD, novN))})

    def test_add_across_new_year(self):
        self.assertEqual(${add}(${decY}, 12, ${decD}, ${decN}), ${tup(addDaysRef(decY, 12, decD, decN))})
`,
    };
    const P = 'dates.py';
    return {
      name: this.name,
      lang: this.lang,
      files,
      tests: ['test_dates.py'],
      bugs: [
        { path: P, fixed: '(year % 100 != 0 or year % 400 == 0)', buggy: '(year % 100 != 0)', issue: `is_leap(${y400}) returns False, but ${y400} was a leap year.` },
        { path: P, fixed: 'if month == 2 and is_leap(year):', buggy: 'if month == 2 or is_leap(year):', issue: `days_in_month() reports 29 days for months other than February, e.g. days_in_month(${leapY}, 1).` },
        { path: P, fixed: 'return DAYS[month - 1]', buggy: 'return DAYS[month]', issue: `days_in_month(${plainY}, 4) is not 30, and December raises IndexError.` },
        { path: P, fixed: 'for m in range(1, month))', buggy: 'for m in range(1, month + 1))', issue: `${doy}(${docY}, ${docM}, ${docD}) is too large; it should be ${dayOfYearRef(docY, docM, docD)}.` },
        { path: P, fixed: 'while day > days_in_month(year, month):', buggy: 'while day >= days_in_month(year, month):', issue: `${add}(${endY}, ${endM}, ${endD}, 0) does not return the same date; the last day of a month turns into day 0 of the next.` },
        { path: P, fixed: 'if month > 12:', buggy: 'if month >= 12:', issue: `Adding days to a November date that lands in December gives a January date of the following year, e.g. ${add}(${novY}, 11, ${novD}, ${novN}).` },
      ],
    };
  },
};

const tokenizer: RepoSpec = {
  name: 'pytokenize',
  lang: 'python',
  build(r: Rng) {
    const fn = r.pick(['tokenize', 'lex', 'scan']);
    const [NUM, NAME, OP] = r.pick([['num', 'name', 'op'], ['number', 'ident', 'punct'], ['NUM', 'ID', 'OP']] as const);
    const v1 = r.pick(['x', 'rate', 'total', 'width', 'n']);
    const dec = `${r.int(1, 99)}.${r.int(1, 99)}`;
    const digitName = `${r.pick(['v', 'item', 'col', 'k'])}${r.int(1, 9)}`;
    const under = `_${r.pick(['tmp', 'acc', 'i', 'seen'])}`;
    const base = r.int(2, 9), exp = r.int(2, 5);
    const bad = r.pick(['$', '@', '#', '?']);
    const badPos = 2 + String(base).length + 1;
    const files = {
      'lexer.py': `def ${fn}(src):
    """Split an arithmetic expression into (kind, text) tokens."""
    tokens = []
    i = 0
    while i < len(src):
        ch = src[i]
        if ch.isspace():
            i += 1
        elif ch.isdigit():
            j = i
            while j < len(src) and (src[j].isdigit() or src[j] == "."):
                j += 1
            tokens.append((${py(NUM)}, src[i:j]))
            i = j
        elif ch.isalpha() or ch == "_":
            j = i
            while j < len(src) and (src[j].isalnum() or src[j] == "_"):
                j += 1
            tokens.append((${py(NAME)}, src[i:j]))
            i = j
        elif src.startswith("**", i):
            tokens.append((${py(OP)}, "**"))
            i += 2
        elif ch in "+-*/()":
            tokens.append((${py(OP)}, ch))
            i += 1
        else:
            raise SyntaxError("unexpected character %r at %d" % (ch, i))
    return tokens
`,
      'test_lexer.py': `import unittest
from lexer import ${fn}


class TestLexer(unittest.TestCase):
    def test_decimal(self):
        self.assertEqual(${fn}(${py(`${v1} * ${dec}`)}), [(${py(NAME)}, ${py(v1)}), (${py(OP)}, "*"), (${py(NUM)}, ${py(dec)})])

    def test_name_with_digits(self):
        self.assertEqual(${fn}(${py(`${digitName}+1`)}), [(${py(NAME)}, ${py(digitName)}), (${py(OP)}, "+"), (${py(NUM)}, "1")])

    def test_leading_underscore(self):
        self.assertEqual(${fn}(${py(`(${under})`)}), [(${py(OP)}, "("), (${py(NAME)}, ${py(under)}), (${py(OP)}, ")")])

    def test_power(self):
        self.assertEqual(${fn}(${py(`${base}**${exp}`)}), [(${py(NUM)}, "${base}"), (${py(OP)}, "**"), (${py(NUM)}, "${exp}")])

    def test_tabs_and_newlines(self):
        self.assertEqual(len(${fn}(${py(`${v1}\t-\n${base}`)})), 3)

    def test_error_position(self):
        with self.assertRaisesRegex(SyntaxError, "at ${badPos}$"):
            ${fn}(${py(`1 ${base} ${bad}`)})
`,
    };
    const P = 'lexer.py';
    return {
      name: this.name,
      lang: this.lang,
      files,
      tests: ['test_lexer.py'],
      bugs: [
        { path: P, fixed: '(src[j].isdigit() or src[j] == ".")', buggy: '(src[j].isdigit())', issue: `${fn}(${py(`${v1} * ${dec}`)}) raises SyntaxError at the decimal point; numbers with a fractional part should be one token.` },
        { path: P, fixed: '(src[j].isalnum() or src[j] == "_")', buggy: '(src[j].isalpha() or src[j] == "_")', issue: `Identifiers containing digits are split in two: "${digitName}" comes out as a name followed by a number.` },
        { path: P, fixed: 'elif ch.isalpha() or ch == "_":', buggy: 'elif ch.isalpha():', issue: `An identifier starting with an underscore, like ${under}, is rejected with SyntaxError.` },
        { path: P, fixed: '"**"))\n            i += 2', buggy: '"**"))\n            i += 1', issue: `"${base}**${exp}" produces an extra "*" token after the "**" operator.` },
        { path: P, fixed: 'if ch.isspace():', buggy: 'if ch == " ":', issue: `Expressions containing tabs or newlines fail with "unexpected character".` },
        { path: P, fixed: '% (ch, i))', buggy: '% (ch, i + 1))', issue: `The position in the "unexpected character" error is one past the offending character (positions are 0-based).` },
      ],
    };
  },
};

export const PYTHON_SPECS: RepoSpec[] = [interval, roman, lru, heap, matrix, dates, tokenizer];
