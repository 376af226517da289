// `dsv32 serve` as a user runs it, on a tiny random checkpoint written to disk (config.json +
// model.safetensors, vocab 129280 so the shipped tokenizer fits): bad flags are one-line errors naming
// the flag; the served model answers over HTTP; `dsv32 agent --base-url` runs against it (streamed and
// not); SIGTERM lets an in-flight stream finish, then the process exits 0.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseConfig, randomCheckpoint } from '../../src/model/index.js';
import { SafetensorsFile, saveSafetensors } from '../../src/tensor/safetensors.js';

const MAIN = path.resolve('dist/src/cli/main.js');
const HF = {
  model_type: 'deepseek_v32', vocab_size: 129280, hidden_size: 64, intermediate_size: 128, moe_intermediate_size: 32, num_hidden_layers: 2,
  first_k_dense_replace: 1, num_attention_heads: 4, num_key_value_heads: 4, q_lora_rank: 128, kv_lora_rank: 128, qk_nope_head_dim: 32,
  qk_rope_head_dim: 16, v_head_dim: 32, n_routed_experts: 8, n_shared_experts: 1, num_experts_per_tok: 2, n_group: 4, topk_group: 2,
  scoring_func: 'sigmoid', routed_scaling_factor: 2.5, norm_topk_prob: true, topk_method: 'noaux_tc', index_n_heads: 4, index_head_dim: 128,
  index_topk: 8, rope_theta: 10000, max_position_embeddings: 2048, rms_norm_eps: 1e-6, bos_token_id: 0, eos_token_id: 1,
  tie_word_embeddings: false, num_nextn_predict_layers: 0,
};

let dir: string;
before(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'dsv32-serve-'));
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(HF));
  saveSafetensors(path.join(dir, 'model.safetensors'), randomCheckpoint(parseConfig(HF), 3));
});
after(() => rmSync(dir, { recursive: true, force: true }));

function cliAsync(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((res) => {
    const p = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code) => res({ code, stderr }));
  });
}

function cli(args: string[]): { code: number | null; stderr: string } {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stderr: r.stderr };
}

test('dsv32 serve: a bad flag is a one-line error naming it', async () => {
  const cases: [string[], RegExp][] = [
    [['--port', 'abc'], /--port/],
    [['--port', '70000'], /--port/],
    [['--dtype', 'fp16'], /--dtype/],
    [['--device', 'tpu'], /--device/],
    [['--kv-cache-dtype', 'int4'], /--kv-cache-dtype/],
    [['--speculative-tokens', '5'], /--speculative-tokens/],
    [['--max-num-seqs', '0'], /--max-num-seqs/],
    [['--host', 'a b'], /--host/],
    [['--speculative-tokens', '1'], /--speculative-tokens 1: the checkpoint has no MTP layers/],
    [['--max-model-len', '999999'], /--max-model-len/],
  ];
  // the runs are independent CLI starts; in parallel they take a fraction of the time
  const runs = await Promise.all(cases.map(([flags]) => cliAsync(['serve', '--model', dir, ...flags])));
  for (const [i, [flags, re]] of cases.entries()) {
    const r = runs[i]!;
    assert.notEqual(r.code, 0, flags.join(' '));
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, `${flags.join(' ')}: ${r.stderr}`);
    assert.match(lines[0]!, re);
  }
  const missing = cli(['serve', '--model', path.join(dir, 'nope')]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr.trim(), /^dsv32: --model .*nope: no config\.json/);
  // without --model it is the built-in dsv32-mini (4096 positions) that the flags are checked against
  const builtin = cli(['serve', '--max-model-len', '999999']);
  assert.notEqual(builtin.code, 0);
  assert.match(builtin.stderr.trim(), /--max-model-len 999999: the model's max_position_embeddings is 4096/);
});

test('dsv32 chat --model on a random checkpoint: answers each line, /reset, exits 0 at end of input', { timeout: 120_000 }, () => {
  const r = spawnSync(process.execPath, [MAIN, 'chat', '--model', dir, '--dtype', 'f32', '--max-tokens', '4', '--temperature', '0', '--color'], { input: 'hi\n/reset\nhello\n', encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.ok(r.stdout.includes('(new conversation)'), r.stdout);
  assert.equal(r.stdout.split('[cut off at the token limit]').length, 3, r.stdout);
  assert.ok(r.stdout.includes('\x1b[2m'), 'reasoning is dimmed');
});

function startServe(args: string[]): Promise<{ proc: ChildProcess; url: string; stderr: () => string; exited: Promise<number | null> }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [MAIN, 'serve', '--model', dir, '--port', '0', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
    const timer = setTimeout(() => reject(new Error(`dsv32 serve did not start: ${err}`)), 60_000);
    proc.stderr!.on('data', (d) => {
      err += d;
      const m = /on (http:\/\/\S+) /.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve({ proc, url: m[1]!, stderr: () => err, exited });
      }
    });
    proc.on('exit', (code) => reject(new Error(`dsv32 serve exited ${code}: ${err}`)));
  });
}

function runAgent(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((res) => {
    const p = spawn(process.execPath, [MAIN, 'agent', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code) => res({ code, stdout, stderr }));
  });
}

test('dsv32 serve on a random checkpoint: models, a greedy chat completion = dsv32 logits argmax decoding, dsv32 agent --base-url (streamed and not), SIGTERM drains an in-flight stream and exits 0', { timeout: 300_000 }, async () => {
  const s = await startServe(['--dtype', 'f32', '--max-model-len', '512', '--num-blocks', '32', '--served-model-name', 'tiny']);
  try {
    assert.match(s.stderr(), /tiny on http:.*device cpu, dtype f32, kv cache f32/);
    const models = (await (await fetch(s.url + '/v1/models')).json()) as { data: { id: string }[] };
    assert.deepEqual(models.data.map((m) => m.id), ['tiny']);
    // a greedy request's tokens are `dsv32 logits` argmax decoding of the same prompt
    const r = await fetch(s.url + '/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4, temperature: 0, ignore_eos: true, return_token_ids: true }) });
    assert.equal(r.status, 200);
    const body = (await r.json()) as { prompt_token_ids: number[]; choices: { token_ids: number[]; finish_reason: string }[] };
    const gen = body.choices[0]!.token_ids;
    assert.equal(gen.length, 4);
    const P = body.prompt_token_ids.length;
    const tokensFile = path.join(dir, 'tokens.json');
    const logitsFile = path.join(dir, 'logits.safetensors');
    writeFileSync(tokensFile, JSON.stringify({ tokens: [[...body.prompt_token_ids, ...gen]] }));
    const lg = cli(['logits', '--model', dir, '--tokens', tokensFile, '--dtype', 'f32', '--decode-from', String(P), '--out', logitsFile]);
    assert.equal(lg.code, 0, lg.stderr);
    const f = SafetensorsFile.open(logitsFile);
    const logits = f.tensor('logits').toFloat32();
    f.close();
    const V = HF.vocab_size;
    const argmaxAt = (pos: number) => {
      let best = 0;
      for (let j = 1; j < V; j++) if (logits[pos * V + j]! > logits[pos * V + best]!) best = j;
      return best;
    };
    assert.deepEqual(gen.map((_, i) => argmaxAt(P - 1 + i)), gen);

    for (const stream of [true, false]) {
      const a = await runAgent(['--base-url', s.url + '/v1', '--model', 'tiny', '--max-steps', '1', '--extra-body', '{"max_tokens": 6, "ignore_eos": true}', ...(stream ? [] : ['--no-stream']), 'Say hi']);
      assert.equal(a.code, 0, a.stderr);
      assert.match(a.stderr, /\[final after 1 steps; tokens prompt \d+, completion \d+/);
    }

    // SIGTERM while a stream is in flight: it completes with [DONE], then the server exits 0
    const res = await fetch(s.url + '/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'tiny', prompt: 'count', max_tokens: 24, ignore_eos: true, stream: true, return_token_ids: true }) });
    const reader = res.body!.getReader();
    let text = new TextDecoder().decode((await reader.read()).value);
    s.proc.kill('SIGTERM');
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    assert.ok(text.trimEnd().endsWith('data: [DONE]'), text.slice(-200));
    const ids = text.split('\n\n').filter((f) => f.startsWith('data: {')).flatMap((f) => JSON.parse(f.slice(6)).choices[0]?.token_ids ?? []);
    assert.equal(ids.length, 24);
    assert.equal(await s.exited, 0);
    assert.match(s.stderr(), /SIGTERM: draining in-flight requests[\s\S]*drained, exiting/);
  } finally {
    s.proc.kill('SIGKILL');
  }
});

test('dsv32 serve --enable-weight-updates: another checkpoint of the same architecture is served after POST /update_weights_from_disk; another architecture is a 400 naming the difference', { timeout: 300_000 }, async () => {
  const other = mkdtempSync(path.join(tmpdir(), 'dsv32-serve-w-'));
  const wider = mkdtempSync(path.join(tmpdir(), 'dsv32-serve-x-'));
  writeFileSync(path.join(other, 'config.json'), JSON.stringify(HF));
  saveSafetensors(path.join(other, 'model.safetensors'), randomCheckpoint(parseConfig(HF), 4)); // other weights
  const hf2 = { ...HF, num_hidden_layers: 3 };
  writeFileSync(path.join(wider, 'config.json'), JSON.stringify(hf2));
  saveSafetensors(path.join(wider, 'model.safetensors'), randomCheckpoint(parseConfig(hf2), 4));
  const s = await startServe(['--dtype', 'f32', '--max-model-len', '256', '--num-blocks', '16', '--served-model-name', 'tiny', '--enable-weight-updates']);
  const ask = async () => {
    const r = await fetch(s.url + '/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'tiny', prompt: [5, 6, 7], max_tokens: 6, temperature: 0, ignore_eos: true, return_token_ids: true }) });
    return ((await r.json()) as { choices: { token_ids: number[] }[] }).choices[0]!.token_ids;
  };
  const update = (p: string) => fetch(s.url + '/update_weights_from_disk', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model_path: p }) });
  try {
    const before = await ask();
    const bad = await update(wider);
    assert.equal(bad.status, 400);
    assert.match(((await bad.json()) as { error: { message: string } }).error.message, /nLayers is 3, the served model's is 2/);
    assert.deepEqual(await ask(), before, 'a refused update changes nothing');
    const ok = await update(other);
    assert.equal(ok.status, 200);
    const after = await ask();
    assert.notDeepEqual(after, before, 'the other weights decode other tokens');
    // the new engine keeps the served tokenizer: stop strings still work
    const stopped = await fetch(s.url + '/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'tiny', prompt: 'hello', max_tokens: 3, stop: ['zz'] }) });
    assert.equal(stopped.status, 200, await stopped.clone().text());
    assert.equal((await update(dir)).status, 200);
    assert.deepEqual(await ask(), before, 'and back');
  } finally {
    s.proc.kill('SIGTERM');
    await s.exited;
    rmSync(other, { recursive: true, force: true });
    rmSync(wider, { recursive: true, force: true });
  }
});
