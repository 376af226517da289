// The first four tiny repositories of the code-agent family (Python with unittest, JavaScript with
// node:test) and their injected bugs; unlike repos-python.ts and repos-js.ts they carry no seeded
// variation. A bug replaces one snippet of a source file (which occurs exactly once); the gold patch
// restores it. Whether a bug is usable (fail-to-pass > 0, pass-to-fail = 0) is established by
// running the tests in family.ts, not assumed here.

import type { RepoSpec, RepoTemplate } from './template.js';

const REPOS: RepoTemplate[] = [
  {
    name: 'pystats',
    lang: 'python',
    files: {
      'stats.py': `def mean(xs):
    if not xs:
        raise ValueError("mean of an empty list")
    return sum(xs) / len(xs)


def median(xs):
    s = sorted(xs)
    n = len(s)
    mid = n // 2
    if n % 2 == 1:
        return s[mid]
    return (s[mid - 1] + s[mid]) / 2


def clamp(x, lo, hi):
    return max(lo, min(x, hi))


def variance(xs):
    m = mean(xs)
    return sum((x - m) ** 2 for x in xs) / len(xs)
`,
      'test_stats.py': `import unittest
from stats import clamp, mean, median, variance


class TestStats(unittest.TestCase):
    def test_mean(self):
        self.assertEqual(mean([1, 2, 3, 6]), 3)

    def test_mean_empty(self):
        with self.assertRaises(ValueError):
            mean([])

    def test_median_odd(self):
        self.assertEqual(median([5, 1, 3]), 3)

    def test_median_even(self):
        self.assertEqual(median([4, 1, 3, 2]), 2.5)

    def test_clamp(self):
        self.assertEqual(clamp(5, 0, 3), 3)
        self.assertEqual(clamp(-1, 0, 3), 0)
        self.assertEqual(clamp(2, 0, 3), 2)

    def test_variance(self):
        self.assertEqual(variance([2, 4, 4, 4, 5, 5, 7, 9]), 4)
`,
    },
    tests: ['test_stats.py'],
    bugs: [
      { path: 'stats.py', fixed: 'return (s[mid - 1] + s[mid]) / 2', buggy: 'return (s[mid] + s[mid + 1]) / 2', issue: 'median() returns the wrong value (or crashes with IndexError) for lists of even length, e.g. median([4, 1, 3, 2]) should be 2.5.' },
      { path: 'stats.py', fixed: 'return max(lo, min(x, hi))', buggy: 'return min(lo, max(x, hi))', issue: 'clamp(x, lo, hi) does not keep x inside [lo, hi]: clamp(5, 0, 3) should be 3.' },
      { path: 'stats.py', fixed: '    if not xs:\n        raise ValueError', buggy: '    if xs is None:\n        raise ValueError', issue: 'mean([]) raises ZeroDivisionError instead of a ValueError explaining the list is empty.' },
      { path: 'stats.py', fixed: 'return sum((x - m) ** 2 for x in xs) / len(xs)', buggy: 'return sum((x - m) ** 2 for x in xs) / (len(xs) - 1)', issue: 'variance() should be the population variance (divide by n); variance([2, 4, 4, 4, 5, 5, 7, 9]) must be 4.' },
    ],
  },
  {
    name: 'pytext',
    lang: 'python',
    files: {
      'textutil.py': `import re


def slugify(s):
    s = re.sub(r"[^a-z0-9]+", "-", s.lower())
    return s.strip("-")


def word_count(s):
    return len(s.split())


def truncate(s, n, suffix="..."):
    if len(s) <= n:
        return s
    return s[: n - len(suffix)] + suffix
`,
      'test_textutil.py': `import unittest
from textutil import slugify, truncate, word_count


class TestText(unittest.TestCase):
    def test_slugify(self):
        self.assertEqual(slugify("Hello, World!"), "hello-world")

    def test_slugify_edges(self):
        self.assertEqual(slugify("  --Already-Slugged--  "), "already-slugged")

    def test_word_count(self):
        self.assertEqual(word_count("  two   words "), 2)

    def test_truncate_short(self):
        self.assertEqual(truncate("abc", 5), "abc")

    def test_truncate_long(self):
        self.assertEqual(truncate("abcdefghij", 6), "abc...")
        self.assertEqual(len(truncate("abcdefghij", 6)), 6)
`,
    },
    tests: ['test_textutil.py'],
    bugs: [
      { path: 'textutil.py', fixed: '"-", s.lower())', buggy: '"-", s)', issue: 'slugify() keeps capital letters out of the slug instead of lower-casing them: slugify("Hello, World!") should be "hello-world".' },
      { path: 'textutil.py', fixed: 'return s.strip("-")', buggy: 'return s.rstrip("-")', issue: 'slugify("  --Already-Slugged--  ") starts with a dash; text that begins with spaces or punctuation should not give a leading dash.' },
      { path: 'textutil.py', fixed: 'len(s.split())', buggy: 'len(s.split(" "))', issue: 'word_count() counts empty strings between repeated spaces: word_count("  two   words ") should be 2.' },
      { path: 'textutil.py', fixed: 's[: n - len(suffix)] + suffix', buggy: 's[:n] + suffix', issue: 'truncate(s, n) returns strings longer than n characters; the suffix must fit within n.' },
    ],
  },
  {
    name: 'jscart',
    lang: 'node',
    files: {
      'cart.js': `'use strict';

function subtotal(items) {
  return items.reduce((sum, it) => sum + it.price * it.qty, 0);
}

function itemCount(items) {
  return items.reduce((n, it) => n + it.qty, 0);
}

function applyDiscount(total, percent) {
  if (percent < 0 || percent > 100) throw new RangeError('percent must be within 0..100');
  return Math.round(total * (100 - percent)) / 100;
}

module.exports = { subtotal, itemCount, applyDiscount };
`,
      'cart.test.js': `'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { subtotal, itemCount, applyDiscount } = require('./cart.js');

const items = [{ price: 2.5, qty: 4 }, { price: 10, qty: 1 }];

test('subtotal multiplies price by quantity', () => assert.equal(subtotal(items), 20));
test('itemCount sums quantities', () => assert.equal(itemCount(items), 5));
test('applyDiscount takes a percentage off', () => assert.equal(applyDiscount(80, 25), 60));
test('applyDiscount rejects bad percentages', () => {
  assert.throws(() => applyDiscount(10, 120), RangeError);
  assert.throws(() => applyDiscount(10, -5), RangeError);
});
test('empty cart', () => assert.deepEqual([subtotal([]), itemCount([])], [0, 0]));
`,
    },
    tests: ['cart.test.js'],
    bugs: [
      { path: 'cart.js', fixed: 'sum + it.price * it.qty', buggy: 'sum + it.price', issue: 'subtotal() ignores quantities: two items at 2.5 x4 and 10 x1 should cost 20.' },
      { path: 'cart.js', fixed: 'n + it.qty, 0)', buggy: 'n + 1, 0)', issue: 'itemCount() counts line items instead of summing their quantities.' },
      { path: 'cart.js', fixed: 'total * (100 - percent)', buggy: 'total * percent', issue: 'applyDiscount(80, 25) returns 20 instead of 60: it returns the discount, not the discounted total.' },
      { path: 'cart.js', fixed: 'percent < 0 || percent > 100', buggy: 'percent > 100', issue: 'applyDiscount accepts negative percentages; they should throw a RangeError.' },
    ],
  },
  {
    name: 'jsrange',
    lang: 'node',
    files: {
      'range.js': `'use strict';

function range(start, end, step = 1) {
  if (step === 0) throw new Error('step must not be 0');
  const out = [];
  if (step > 0) for (let i = start; i < end; i += step) out.push(i);
  else for (let i = start; i > end; i += step) out.push(i);
  return out;
}

function chunk(xs, n) {
  const out = [];
  for (let i = 0; i < xs.length; i += n) out.push(xs.slice(i, i + n));
  return out;
}

module.exports = { range, chunk };
`,
      'range.test.js': `'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { range, chunk } = require('./range.js');

test('range counts up, end excluded', () => assert.deepEqual(range(0, 4), [0, 1, 2, 3]));
test('range with a step', () => assert.deepEqual(range(1, 10, 3), [1, 4, 7]));
test('range counts down', () => assert.deepEqual(range(3, 0, -1), [3, 2, 1]));
test('range rejects step 0', () => assert.throws(() => range(0, 1, 0)));
test('chunk splits with a short tail', () => assert.deepEqual(chunk([1, 2, 3, 4, 5], 2), [[1, 2], [3, 4], [5]]));
`,
    },
    tests: ['range.test.js'],
    bugs: [
      { path: 'range.js', fixed: 'i < end; i += step', buggy: 'i <= end; i += step', issue: 'range(0, 4) includes 4; the end must be excluded.' },
      { path: 'range.js', fixed: 'i > end; i += step', buggy: 'i >= end; i += step', issue: 'range(3, 0, -1) includes 0; counting down must also exclude the end.' },
      { path: 'range.js', fixed: 'xs.slice(i, i + n)', buggy: 'xs.slice(i, n)', issue: 'chunk([1, 2, 3, 4, 5], 2) returns empty chunks after the first one.' },
      { path: 'range.js', fixed: 'i < xs.length; i += n)', buggy: 'i < xs.length; i += n - 1)', issue: 'chunk() repeats elements across chunks: chunk([1, 2, 3, 4, 5], 2) should be [[1, 2], [3, 4], [5]].' },
    ],
  },
];

export const FIXED_SPECS: RepoSpec[] = REPOS.map((t) => ({ name: t.name, lang: t.lang, build: () => t }));
