// The data card (DATA_CARD.md) written beside the shards: what is in the corpus, where each part came
// from, under which licence, how big, and the command that rebuilds it. Generated from the manifest
// alone, so it is as reproducible as the manifest.
import type { CorpusManifest } from './manifest.js';

function mb(bytes: number): string {
  return (bytes / 2 ** 20).toFixed(2);
}

function pipe(s: string): string {
  return s.replace(/\|/g, '\\|');
}

export function dataCard(m: CorpusManifest): string {
  const total = m.splits.train.textBytes + m.splits.validation.textBytes;
  const names = m.sources.map((s) => s.name).join(',');
  const lines: string[] = [];
  lines.push('# Data card: dsv32-mini training corpus', '');
  lines.push(
    `Built by \`dsv32 data build\` with seed ${m.seed}${m.maxBytes !== null ? `, a budget of ${m.maxBytes} bytes` : ''} and ${(m.validationFraction * 100).toFixed(1)}% held out for validation. ` +
      'Nothing was downloaded: the text comes from npm and Debian packages installed on the build machine, and from dsv32\'s own generators.',
    '',
  );
  lines.push(`- Documents: ${m.splits.train.documents + m.splits.validation.documents} (train ${m.splits.train.documents}, validation ${m.splits.validation.documents})`);
  lines.push(`- Text: ${total} bytes (${mb(total)} MiB; train ${mb(m.splits.train.textBytes)} MiB, validation ${mb(m.splits.validation.textBytes)} MiB)`);
  lines.push(`- Shards: ${m.splits.train.shards.length} train, ${m.splits.validation.shards.length} validation, JSONL, at most ${m.shardBytes} bytes each`);
  lines.push(`- Fingerprint (sha256 over the shard hashes): \`${m.corpusSha256}\``, '');
  lines.push('## Sources', '');
  lines.push('| source | kind | package (version) | licence | documents | text MiB | share | validation docs |');
  lines.push('|---|---|---|---|---:|---:|---:|---:|');
  for (const s of m.sources) {
    lines.push(
      `| ${s.name} | ${s.kind} | ${pipe(s.package)} (${pipe(s.version)}) | ${pipe(s.licence)} | ${s.documents} | ${mb(s.textBytes)} | ${total ? ((100 * s.textBytes) / total).toFixed(1) : '0.0'}% | ${s.validation.documents} |`,
    );
  }
  lines.push('');
  for (const s of m.sources) lines.push(`- **${s.name}**: ${s.description}.${s.budgetBytes !== null ? ` Capped at ${s.budgetBytes} bytes (a seeded sample of the source).` : ''}`);
  lines.push('');
  if (m.missing.length) {
    lines.push('## Optional sources not installed on the build machine', '');
    for (const x of m.missing) lines.push(`- ${x.name} (${x.package}): ${x.reason}. Install with \`${x.install}\` and rebuild to include it.`);
    lines.push('');
  }
  lines.push('## Format', '');
  lines.push(
    'Each line of a shard is a JSON object `{id, source, text}`; chat documents add `mode` ("thinking" or "chat") and `messages`, the OpenAI-style messages that `text` was encoded from with src/chat/encode.ts, so supervised fine-tuning can mask the prompt. ' +
      '`text` is exactly what the model trains on; chat documents carry the V3.2 special tokens (`<｜begin▁of▁sentence｜>`, `<｜User｜>`, `<｜Assistant｜>`, `<think>`, `</think>`, `<｜end▁of▁sentence｜>`) and DSML tool-call blocks as plain text.',
    '',
  );
  lines.push('## Split and order', '');
  lines.push(
    'A document is in validation iff the first 48 bits of sha256("split:" + seed + ":" + id), as a fraction of 2^48, are below the validation fraction: a property of the document alone, so changing the budget or the sources never moves a document across the split. ' +
      'Within a split, documents are ordered by sha256("order:" + seed + ":" + id). The synthetic arithmetic generator never emits the 5% of problems that `isHeldOut` reserves for evaluation.',
    '',
  );
  lines.push('## Rebuild', '');
  const extra =
    (m.maxBytes !== null ? ` --max-bytes ${m.maxBytes}` : '') +
    (m.weights ? ` --weights ${Object.entries(m.weights).map(([n, w]) => `${n}=${w}`).join(',')}` : '') +
    (m.validationFraction !== 0.02 ? ` --validation-fraction ${m.validationFraction}` : '') +
    (m.shardBytes !== 8 * 2 ** 20 ? ` --shard-bytes ${m.shardBytes}` : '');
  lines.push('```', `dsv32 data build --out DIR --seed ${m.seed}${extra} --sources ${names}`, '```', '');
  lines.push('The same seed, options and installed package versions give the same shards and fingerprint.', '');
  return lines.join('\n');
}
