import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as T from '../../src/tensor/index.js';
import { Module, StateDictError, buffer, isParameter, param } from '../../src/tensor/module.js';
import { Checkpoint, saveSafetensors } from '../../src/tensor/safetensors.js';

class Linear extends Module {
  weight: T.Tensor;
  bias: T.Tensor;
  constructor(inF: number, outF: number, rng: T.Rng) {
    super();
    this.weight = param(T.randn([outF, inF], rng));
    this.bias = param(T.zeros([outF]));
  }
  forward(x: T.Tensor): T.Tensor {
    return T.linear(x, this.weight, this.bias);
  }
}

class Net extends Module {
  embed: Linear;
  layers: Linear[];
  scale: T.Tensor;
  ropeCache: T.Tensor;
  scratch: T.Tensor;
  constructor(rng: T.Rng) {
    super();
    this.embed = new Linear(3, 4, rng);
    this.layers = [new Linear(4, 4, rng), new Linear(4, 2, rng)];
    this.scale = buffer(T.tensor([2]));
    this.ropeCache = buffer(T.tensor([7, 7]), { persistent: false });
    this.scratch = T.zeros([5]); // unmarked: not state
  }
  forward(x: T.Tensor): T.Tensor {
    let h = this.embed.forward(x);
    for (const l of this.layers) h = T.relu(l.forward(h));
    return T.mul(h, this.scale);
  }
}

const NAMES = ['embed.weight', 'embed.bias', 'layers.0.weight', 'layers.0.bias', 'layers.1.weight', 'layers.1.bias'];

test('namedParameters walks children and module lists in definition order; buffers are state, caches are not', () => {
  const net = new Net(new T.Rng(1));
  assert.deepEqual(net.namedParameters().map(([n]) => n), NAMES);
  assert.deepEqual(net.namedParameters('model').map(([n]) => n), NAMES.map((n) => `model.${n}`));
  assert.equal(net.parameters().length, 6);
  assert.ok(net.parameters().every((p) => p.requiresGrad && isParameter(p)));
  assert.deepEqual(net.namedBuffers().map(([n]) => n), ['scale', 'ropeCache']);
  assert.deepEqual([...net.stateDict().keys()], ['scale', ...NAMES]);
  assert.equal(net.stateDict().get('layers.1.weight'), net.layers[1]!.weight); // the live tensor, not a copy
  assert.deepEqual(net.namedChildren().map(([n]) => n), ['embed', 'layers.0', 'layers.1']);
});

test('a parameter shared by two modules (tied weights) is listed once but saved under both names', () => {
  const rng = new T.Rng(2);
  class Tied extends Module {
    a = new Linear(2, 2, rng);
    b = new Linear(2, 2, rng);
    constructor() {
      super();
      this.b.weight = this.a.weight;
    }
  }
  const m = new Tied();
  assert.deepEqual(m.namedParameters().map(([n]) => n), ['a.weight', 'a.bias', 'b.bias']);
  assert.deepEqual([...m.stateDict().keys()], ['a.weight', 'a.bias', 'b.weight', 'b.bias']);
});

test('zeroGrad clears the gradients backward() accumulated', () => {
  const net = new Net(new T.Rng(3));
  const x = T.randn([5, 3], new T.Rng(4));
  T.backward(T.sum(net.forward(x)));
  T.backward(T.sum(net.forward(x)));
  const g1 = net.embed.weight.grad!.toFloat64();
  assert.ok(g1.some((v) => v !== 0));
  net.zeroGrad();
  assert.ok(net.parameters().every((p) => p.grad === null));
  T.backward(T.sum(net.forward(x)));
  // accumulated twice before, once now
  const g2 = net.embed.weight.grad!.toFloat64();
  g2.forEach((v, i) => assert.ok(Math.abs(2 * v - g1[i]!) < 1e-5));
  net.setRequiresGrad(false);
  assert.ok(net.parameters().every((p) => !p.requiresGrad));
});

test('loadStateDict copies into the existing tensors (casting dtype) and the module computes with the new values', () => {
  const a = new Net(new T.Rng(5));
  const b = new Net(new T.Rng(6));
  const x = T.randn([2, 3], new T.Rng(7));
  const weightBefore = b.embed.weight;
  // source in bf16: values are cast into b's f32 tensors
  const src = new Map([...a.stateDict()].map(([k, t]) => [k, T.cast(t, 'bf16')]));
  const r = b.loadStateDict(src);
  assert.deepEqual(r, { missing: [], unexpected: [] });
  assert.equal(b.embed.weight, weightBefore);
  assert.equal(b.embed.weight.dtype, 'f32');
  assert.deepEqual([...b.embed.weight.toFloat64()], [...T.cast(a.embed.weight, 'bf16').toFloat64()]);
  // exact f32 load from a record
  b.loadStateDict(Object.fromEntries(a.stateDict()));
  assert.deepEqual(b.forward(x).toArray(), a.forward(x).toArray());
});

test('loadStateDict errors name missing, unexpected and mis-shaped keys; nothing is copied on a shape error', () => {
  const net = new Net(new T.Rng(8));
  const full = new Map([...new Net(new T.Rng(9)).stateDict()]);
  const missing = new Map(full);
  missing.delete('layers.0.bias');
  missing.delete('scale');
  assert.throws(() => net.loadStateDict(missing), (e: unknown) => e instanceof StateDictError && /missing keys \(2\): scale, layers\.0\.bias/.test(e.message));
  const extra = new Map(full).set('layers.2.weight', T.zeros([1]));
  assert.throws(() => net.loadStateDict(extra), /unexpected keys \(1\): layers\.2\.weight/);
  // non-strict: reported, not thrown; the present keys are loaded
  const r = net.loadStateDict(new Map([...missing, ['extra', T.zeros([1])]]), { strict: false });
  assert.deepEqual(r, { missing: ['scale', 'layers.0.bias'], unexpected: ['extra'] });
  assert.deepEqual(net.embed.weight.toArray(), full.get('embed.weight')!.toArray());

  const before = net.layers[0]!.weight.toArray();
  const bad = new Map(full).set('layers.1.weight', T.zeros([4, 2])).set('embed.bias', T.zeros([5]));
  assert.throws(
    () => net.loadStateDict(bad),
    (e: unknown) => e instanceof StateDictError && e.message.includes('mis-shaped keys (2)') && e.message.includes('layers.1.weight: checkpoint [4, 2] vs module [2, 4]') && e.message.includes('embed.bias: checkpoint [5] vs module [4]'),
  );
  assert.deepEqual(net.layers[0]!.weight.toArray(), before);
});

test('state dict saved as safetensors loads back through a Checkpoint (lazily, tensor by tensor)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsv32-mod-'));
  try {
    const a = new Net(new T.Rng(10));
    saveSafetensors(path.join(dir, 'model.safetensors'), a.stateDict(), { format: 'pt' });
    const b = new Net(new T.Rng(11));
    const ck = Checkpoint.open(dir);
    b.loadStateDict(ck);
    ck.close();
    for (const [k, t] of a.stateDict()) assert.deepEqual([...b.stateDict().get(k)!.toFloat64()], [...t.toFloat64()], k);
    // shape mismatches are found from the header before any data is read
    const c = new (class extends Module {
      embed = new Linear(3, 5, new T.Rng(1));
    })();
    const ck2 = Checkpoint.open(dir);
    assert.throws(() => c.loadStateDict(ck2, { strict: false }), /embed\.weight: checkpoint \[4, 3\] vs module \[5, 3\]/);
    ck2.close();
  } finally {
    fs.rmSync(dir, { recursive: true });
  }
});
