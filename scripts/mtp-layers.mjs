// Move a checkpoint's MTP layers (model.layers.{num_hidden_layers + i}.*, DeepSeek-V3's layout) out of it
// and back, bits unchanged (FP8 weights and their scales are copied as stored):
//   node scripts/mtp-layers.mjs strip  --model DIR --out DIR                    # the model without MTP
//   node scripts/mtp-layers.mjs attach --model DIR --mtp-from DIR --out DIR     # DIR + another's MTP layers
// Why: a GPU run carries at most 64 MiB, and the node binary (24 MiB) plus dsv32-mini (51 MiB) do not fit.
// GRPO trains the main model only (its forward runs with mtp: false), so the RL machine needs no MTP
// layer; the trained policy gets the shipped model's MTP layer back with `attach`. The MTP layer was
// trained on the pre-RL hidden states, so speculative acceptance may fall a little: measure it.
// Needs dist/ (npx tsc). Shards of at most --shard-mb MiB (default 15: a GPU run returns ≤ 16 MiB files).
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import '../dist/src/backend/cpu/index.js'; // tensors are read onto the CPU backend
import { Checkpoint, saveSharded } from '../dist/src/tensor/safetensors.js';

const [mode, ...args] = process.argv.slice(2);
const fail = (msg) => {
  process.stderr.write(`mtp-layers: ${msg}\n`);
  process.exit(2);
};
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  if (i < 0 || i + 1 >= args.length) return dflt ?? fail(`${name} is required (usage: strip --model DIR --out DIR | attach --model DIR --mtp-from DIR --out DIR)`);
  return args[i + 1];
};
if (mode !== 'strip' && mode !== 'attach') fail(`first argument: expected strip or attach, got ${mode ?? 'nothing'}`);

function readConfig(dir, flag) {
  const f = join(dir, 'config.json');
  if (!existsSync(f)) fail(`${flag} ${dir}: no config.json there (expected a Hugging Face checkpoint directory)`);
  try {
    return JSON.parse(readFileSync(f, 'utf8'));
  } catch (e) {
    fail(`${f}: not JSON (${e.message})`);
  }
}
const layerOf = (name) => {
  const m = /^model\.layers\.(\d+)\./.exec(name);
  return m ? Number(m[1]) : -1;
};

const modelDir = opt('--model');
const out = opt('--out');
const shardMb = Number(opt('--shard-mb', '15'));
if (!(shardMb >= 1)) fail(`--shard-mb: expected a number ≥ 1, got ${opt('--shard-mb')}`);
const cfg = readConfig(modelDir, '--model');
const L = cfg.num_hidden_layers;
const tensors = new Map();
const ck = Checkpoint.open(modelDir);
for (const k of ck.keys()) if (layerOf(k) < L) tensors.set(k, ck.tensor(k));
let nextn = 0;
const donor = mode === 'attach' ? opt('--mtp-from') : null;
if (donor) {
  const from = readConfig(donor, '--mtp-from');
  for (const key of ['hidden_size', 'num_hidden_layers', 'vocab_size', 'n_routed_experts', 'moe_intermediate_size', 'quantization_config']) {
    if (JSON.stringify(from[key]) !== JSON.stringify(cfg[key])) fail(`--mtp-from ${donor}: config ${key} is ${JSON.stringify(from[key])}, the model's is ${JSON.stringify(cfg[key])} (expected the same architecture and format)`);
  }
  nextn = from.num_nextn_predict_layers ?? 0;
  if (!nextn) fail(`--mtp-from ${donor}: its config has no MTP layer (num_nextn_predict_layers 0)`);
  const src = Checkpoint.open(donor);
  for (const k of src.keys()) if (layerOf(k) >= L) tensors.set(k, src.tensor(k));
}
if (existsSync(join(out, 'config.json'))) fail(`--out ${out}: holds a checkpoint already (expected a new directory)`);
mkdirSync(out, { recursive: true });
const files = saveSharded(out, tensors, { maxShardBytes: shardMb * 2 ** 20, metadata: { format: 'pt' } });
writeFileSync(join(out, 'config.json'), JSON.stringify({ ...cfg, num_nextn_predict_layers: nextn }, null, 2) + '\n');
// side files from the model, else (attach) from the MTP donor: a policy a GPU run returns has no tokenizer
for (const f of ['tokenizer.json', 'tokenizer_config.json', 'generation_config.json']) {
  const from = [modelDir, donor].find((d) => d && existsSync(join(d, f)));
  if (from) copyFileSync(join(from, f), join(out, f));
}
process.stdout.write(`wrote ${out}: ${tensors.size} tensors in ${files.length} shards, num_nextn_predict_layers ${nextn}\n`);
