// backward() frees the graph as it goes (PyTorch's retain_graph=False): each node's saved tensors and
// edges are dropped once its gradient has passed, so a deep network's activations become garbage
// during the backward instead of after it; a second pass through a freed node says so. backwardAsync
// pauses between nodes, which is what lets a device return that garbage (src/tensor/memory.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../../src/tensor/index.js';
import { backward, backwardAsync } from '../../src/tensor/autograd.js';
import { collectGarbageNow } from '../../src/tensor/memory.js';

/** y = tanh(W·…tanh(W·x)) over `depth` layers; the hidden activations are reachable only through the graph. */
function deep(depth: number, x: T.Tensor, w: T.Tensor, track: WeakRef<object>[]): T.Tensor {
  let h = x;
  for (let i = 0; i < depth; i++) {
    h = T.tanh(T.matmul(h, w));
    track.push(new WeakRef(h.storage));
  }
  return T.sum(h);
}

function leaves(): { x: T.Tensor; w: T.Tensor } {
  const rng = new T.Rng(3);
  const v = (n: number) => Float64Array.from({ length: n }, () => rng.uniform() - 0.5);
  return { x: T.fromArray(v(64), [4, 16], { dtype: 'f64' }), w: T.fromArray(v(256), [16, 16], { dtype: 'f64', requiresGrad: true }) };
}

test('a released graph lets the activations of visited nodes go during the backward; retainGraph keeps them', async () => {
  for (const retainGraph of [false, true]) {
    const { x, w } = leaves();
    const track: WeakRef<object>[] = [];
    const loss = deep(12, x, w, track);
    // a new job: the WeakRefs above no longer pin their targets
    await new Promise<void>((r) => setImmediate(r));
    const aliveAt: number[] = [];
    await backwardAsync(loss, () => true, async () => {
      await new Promise<void>((r) => setImmediate(r));
      collectGarbageNow();
      aliveAt.push(track.filter((t) => t.deref() !== undefined).length);
    }, undefined, { retainGraph });
    assert.ok(w.grad, 'the weight got its gradient');
    const mid = aliveAt[Math.floor(aliveAt.length / 2)]!;
    if (retainGraph) assert.equal(Math.min(...aliveAt), 12, `a retained graph keeps every activation alive (min ${Math.min(...aliveAt)})`);
    else assert.ok(mid <= 7 && Math.min(...aliveAt) <= 1, `activations alive during the pass: ${aliveAt.join(',')}`);
    void loss;
  }
});

test('the gradients are the same with and without release, sync and async', async () => {
  const grads: Float64Array[] = [];
  for (const mode of ['sync', 'sync-retain', 'async'] as const) {
    const { x, w } = leaves();
    const loss = deep(5, x, w, []);
    if (mode === 'async') await backwardAsync(loss, () => true, async () => {});
    else backward(loss, undefined, { retainGraph: mode === 'sync-retain' });
    grads.push(w.grad!.toFloat64());
  }
  assert.deepEqual(grads[1], grads[0]);
  assert.deepEqual(grads[2], grads[0]);
});

test('a second backward through a freed graph names the node and the option; with retainGraph it accumulates', () => {
  const { x, w } = leaves();
  const loss = deep(3, x, w, []);
  backward(loss);
  assert.throws(() => backward(loss), /graph through '.+' was freed by an earlier backward; pass \{ retainGraph: true \}/);
  const b = leaves();
  const l2 = deep(3, b.x, b.w, []);
  backward(l2, undefined, { retainGraph: true });
  const once = b.w.grad!.toFloat64();
  backward(l2);
  const twice = b.w.grad!.toFloat64();
  for (let i = 0; i < once.length; i++) assert.ok(Math.abs(twice[i]! - 2 * once[i]!) <= 1e-12 * Math.max(1, Math.abs(once[i]!)));
});

test('onLeafGrad: each leaf once, as soon as its last consumer has run, with its final gradient', async () => {
  // h_{i+1} = tanh(W_i · h_i) with the weight as the matmul's FIRST input, so a DFS puts each W_i early in
  // the order and its own visit comes only after every earlier layer; W_0 also feeds the last layer
  const rng = new T.Rng(5);
  const v = (n: number) => Float64Array.from({ length: n }, () => rng.uniform() - 0.5);
  const ws = Array.from({ length: 4 }, () => T.fromArray(v(256), [16, 16], { dtype: 'f64', requiresGrad: true }));
  const x = T.fromArray(v(64), [16, 4], { dtype: 'f64' });
  let h = x;
  for (const w of ws) h = T.tanh(T.matmul(w, h));
  const loss = T.sum(T.tanh(T.matmul(ws[0]!, h)));
  let nodes = 0;
  const seen: { leaf: number; atNode: number; grad: Float64Array }[] = [];
  await backwardAsync(loss, () => (nodes++, false), async () => {}, undefined, {
    onLeafGrad: (leaf) => seen.push({ leaf: ws.indexOf(leaf), atNode: nodes, grad: leaf.grad!.toFloat64() }),
  });
  assert.deepEqual(seen.map((s) => s.leaf), [3, 2, 1, 0], 'the last layer first; W_0 only after its first-layer use; x (no grad) never');
  for (const s of seen) assert.deepEqual(s.grad, ws[s.leaf]!.grad!.toFloat64(), `W_${s.leaf} had its final gradient when announced`);
  // W_3 is announced inside the 5th node's step (after sum, tanh, W_0's matmul, tanh: 4 done), not at the end
  assert.equal(seen[0]!.atNode, 4);
  // the same gradients as the plain backward
  const ref = ws.map((w) => w.grad!.toFloat64());
  for (const w of ws) w.grad = null;
  let h2 = x;
  for (const w of ws) h2 = T.tanh(T.matmul(w, h2));
  backward(T.sum(T.tanh(T.matmul(ws[0]!, h2))));
  ws.forEach((w, i) => assert.deepEqual(w.grad!.toFloat64(), ref[i]));
});
