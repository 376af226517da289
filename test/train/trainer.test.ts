// The training loop: checkpoints in the Hugging Face layout that DeepseekV32.load opens, the config
// naming bad fields, and resume after a stop or a SIGKILL continuing bit for bit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DeepseekV32 } from '../../src/model/model.js';
import { noGrad } from '../../src/tensor/autograd.js';
import { MAX_SHARD_BYTES } from '../../src/train/checkpoint.js';
import { parseTrainConfig, type TrainConfig, TrainConfigError } from '../../src/train/config.js';
import { train } from '../../src/train/trainer.js';
import { TRAIN_MODEL as MODEL, tinyCorpus } from './tiny.js';

const MAIN = resolve(fileURLToPath(import.meta.url), '../../../src/cli/main.js');


/**
 * A work directory with a JSONL of pre-tokenized documents and a dsa config (2 warm-up steps, then sparse).
 * On the CPU whatever the machine: a resumed run equals the uninterrupted one bit for bit there; on CUDA the
 * backward's float atomics add in arrival order, so two runs differ by rounding (test/cuda/train.test.ts
 * covers CUDA training; 'auto' would pick the GPU on a GPU machine, where these checks do not hold).
 */
function setup(steps: number): { dir: string; raw: Record<string, unknown> } {
  const { dir, data } = tinyCorpus('dsv32-train-');
  const raw = {
    device: 'cpu',
    model: { config: MODEL, seed: 1 },
    data: { path: data, seqLen: 16, batchSize: 2, seed: 3 },
    steps,
    schedule: { kind: 'cosine', lr: 3e-3, totalSteps: steps, warmupSteps: 1 },
    dsa: { warmupSteps: 2 },
    eval: { every: 3, batches: 2 },
    out: join(dir, 'out'),
    saveEvery: 2,
  };
  writeFileSync(join(dir, 'cfg.json'), JSON.stringify(raw));
  return { dir, raw };
}

function cfgOf(raw: Record<string, unknown>, out: string): TrainConfig {
  return parseTrainConfig({ ...raw, out });
}

/** Every file of the checkpoint that holds state (weights, moments, step), by name → bytes. */
function stateFiles(ckpt: string): Map<string, Buffer> {
  return new Map(readdirSync(ckpt).filter((f) => f.endsWith('.safetensors') || f === 'trainer.json').map((f) => [f, readFileSync(join(ckpt, f))]));
}

/** The log without its wall-clock fields. */
function logOf(out: string): unknown[] {
  return readFileSync(join(out, 'train.jsonl'), 'utf8').trim().split('\n').map((l) => {
    const o = JSON.parse(l) as Record<string, unknown>;
    delete o.ms;
    delete o.tokens_per_s;
    delete o.tflops;
    return o;
  });
}

function sameState(a: string, b: string): void {
  const fa = stateFiles(a);
  const fb = stateFiles(b);
  assert.deepEqual([...fa.keys()].sort(), [...fb.keys()].sort());
  for (const [f, bytes] of fa) assert.ok(bytes.equals(fb.get(f)!), `${f} differs between the runs`);
}

test('dsa run: stopped after 3 steps and resumed to 6 equals the uninterrupted run bit for bit; the checkpoint is a loadable HF directory', async () => {
  const { dir, raw } = setup(6);
  const straight = await train('dsa', cfgOf(raw, join(dir, 'a')));
  assert.equal(straight.step, 6);
  assert.ok(straight.done);
  const cfgB = cfgOf(raw, join(dir, 'b'));
  const first = await train('dsa', cfgB, { stopAfter: 3 });
  assert.equal(first.step, 3);
  assert.equal(first.done, false);
  const second = await train('dsa', cfgB);
  assert.equal(second.resumedFrom, 3);
  assert.equal(second.step, 6);
  sameState(straight.checkpoint!, second.checkpoint!);
  assert.deepEqual(logOf(join(dir, 'b')), logOf(join(dir, 'a')));
  const log = logOf(join(dir, 'a')) as { phase: string; val_lm?: number | null; val_indexer?: number | null }[];
  assert.deepEqual(log.map((l) => l.phase), ['warmup', 'warmup', 'sparse', 'eval', 'sparse', 'sparse', 'sparse', 'eval']);
  // held-out losses: the sparse stage forms both (the warm-up only the indexer's)
  for (const e of log.filter((l) => l.phase === 'eval')) assert.ok(e.val_lm! > 0 && e.val_indexer! > 0, JSON.stringify(e));

  // the checkpoint: shards ≤ 16 MB + index + config.json, opened by DeepseekV32.load; its inference
  // forward equals the trained model's
  const ck = straight.checkpoint!;
  assert.ok(existsSync(join(ck, 'model.safetensors.index.json')));
  for (const f of readdirSync(ck).filter((f) => f.startsWith('model-'))) assert.ok(statSync(join(ck, f)).size <= MAX_SHARD_BYTES + 65536, `${f} within 16 MB`);
  const loaded = DeepseekV32.load(ck);
  const rows = [[2, 5, 9, 11, 3, 7, 8, 1]];
  const a = noGrad(() => loaded.forward(rows).logits!.toFloat32());
  const b = noGrad(() => straight.model.forward(rows).logits!.toFloat32());
  assert.deepEqual(Array.from(a), Array.from(b));
});

test('dsv32 train dsa: SIGKILL mid-run, then the same command again, ends with the uninterrupted run’s weights and moments', async () => {
  const { dir, raw } = setup(8);
  const straight = await train('dsa', cfgOf(raw, join(dir, 'a')));
  const out = join(dir, 'out');
  const run = (kill?: (log: string) => boolean): Promise<number | null> =>
    new Promise((res, rej) => {
      const p = spawn(process.execPath, [MAIN, 'train', 'dsa', '--config', join(dir, 'cfg.json'), '--no-progress'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let err = '';
      p.stderr.on('data', (d: Buffer) => (err += d.toString()));
      const timer = kill
        ? setInterval(() => {
            const lp = join(out, 'train.jsonl');
            if (existsSync(lp) && kill(readFileSync(lp, 'utf8'))) p.kill('SIGKILL');
          }, 20)
        : null;
      p.on('error', rej);
      p.on('exit', (code, sig) => {
        if (timer) clearInterval(timer);
        if (code !== 0 && sig !== 'SIGKILL') rej(new Error(`dsv32 train exited ${code}: ${err}`));
        else res(code);
      });
    });
  // killed once step 5 is logged: checkpoint 4 is the latest, step 5 (and maybe 6) are lost work
  assert.equal(await run((log) => log.includes('"step":5,"phase":"sparse"')), null);
  const latest = readFileSync(join(out, 'latest'), 'utf8').trim();
  assert.ok(/^step-00000[4-8]$/.test(latest), `latest checkpoint after the kill: ${latest}`);
  assert.equal(await run(), 0);
  sameState(straight.checkpoint!, join(out, 'step-000008'));
  assert.deepEqual(logOf(out), logOf(join(dir, 'a')));
});

test('train config: invalid fields are named', () => {
  const { raw } = setup(2);
  const bad = (patch: Record<string, unknown>, field: RegExp): void => {
    assert.throws(() => parseTrainConfig({ ...raw, ...patch }), (e: unknown) => e instanceof TrainConfigError && field.test(e.message));
  };
  bad({ data: { ...(raw.data as object), seqLen: 1 } }, /data\.seqLen/);
  bad({ steps: 'ten' }, /steps/);
  bad({ schedule: { kind: 'cosine', lr: 1e-3 } }, /schedule\.totalSteps/);
  bad({ optim: { lr: 1 } }, /optim.*lr/);
  bad({ model: {} }, /model/);
});
