// Training input formats and the step → batch function.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Batches, DataError, loadTokens } from '../../src/train/data.js';

const EOS = 1;

test('loadTokens: pre-tokenized JSONL with masks, raw u16 streams and packed corpora', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dsv32-data-'));
  writeFileSync(join(dir, 'a.jsonl'), '{"ids": [5, 6, 7], "mask": [0, 1, 1]}\n\n{"ids": [8]}\n');
  const j = loadTokens({ path: join(dir, 'a.jsonl') }, EOS, 16);
  // each document then EOS; a masked document's EOS is not a target, an unmasked one's tokens all are
  assert.deepEqual(Array.from(j.ids), [5, 6, 7, EOS, 8, EOS]);
  assert.deepEqual(Array.from(j.mask!), [0, 1, 1, 0, 1, 1]);

  const raw = mkdtempSync(join(tmpdir(), 'dsv32-data-'));
  const u16 = Buffer.alloc(8);
  [3, 4, 1, 9].forEach((t, i) => u16.writeUInt16LE(t, i * 2));
  writeFileSync(join(raw, 'x.u16'), u16);
  const r = loadTokens({ path: raw }, EOS, 16);
  assert.deepEqual(Array.from(r.ids), [3, 4, 1, 9]);
  assert.equal(r.mask, null);

  const pack = mkdtempSync(join(tmpdir(), 'dsv32-pack-'));
  const u32 = Buffer.alloc(12);
  [0, 12, 1].forEach((t, i) => u32.writeUInt32LE(t, i * 4));
  writeFileSync(join(pack, 'validation.tokens'), u32);
  writeFileSync(join(pack, 'pack.json'), JSON.stringify({ dtype: 'uint32', splits: { validation: { tokensFile: 'validation.tokens' } } }));
  assert.deepEqual(Array.from(loadTokens({ path: pack, split: 'validation' }, EOS, 16).ids), [0, 12, 1]);

  assert.throws(() => loadTokens({ path: join(dir, 'a.jsonl') }, EOS, 8), (e: unknown) => e instanceof DataError && /token 8 .*vocab_size/.test(e.message));
  writeFileSync(join(dir, 't.jsonl'), '{"text": "hello"}\n');
  assert.throws(() => loadTokens({ path: join(dir, 't.jsonl') }, EOS, 16), (e: unknown) => e instanceof DataError && /data\.tokenizer/.test(e.message));
});

test('Batches: each step’s rows are a function of (seed, step); an epoch covers every row once', () => {
  const ids = Int32Array.from({ length: 40 }, (_, i) => i);
  const a = new Batches({ ids, mask: null }, 2, 4, 7);
  const b = new Batches({ ids, mask: null }, 2, 4, 7);
  assert.equal(a.rows, 10);
  // read b in another order: the same batches
  const later = b.at(9);
  assert.deepEqual(Array.from(a.at(9).ids), Array.from(later.ids));
  const firsts = new Set<number>();
  for (let s = 0; s < 5; s++) {
    const x = a.at(s).ids;
    for (let r = 0; r < 2; r++) {
      const row = Array.from(x.subarray(r * 4, r * 4 + 4));
      assert.equal(row[0]! % 4, 0, 'rows are aligned windows');
      assert.deepEqual(row, [row[0]!, row[0]! + 1, row[0]! + 2, row[0]! + 3]);
      firsts.add(row[0]!);
    }
  }
  assert.equal(firsts.size, 10, 'the first epoch (5 steps × 2 rows) takes all 10 rows once');
  assert.notDeepEqual(Array.from(new Batches({ ids, mask: null }, 2, 4, 8).at(0).ids), Array.from(a.at(0).ids));
});
