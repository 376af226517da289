// Auxiliary-loss-free expert balancing (gate.ts balance): after a step each expert's selection bias
// moves by γ toward the mean load.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MoE } from '../../src/model/moe.js';
import { fromArray } from '../../src/tensor/tensor.js';
import { tinyModel } from './tiny.js';

test('gate.balance: overloaded experts’ bias falls by γ, underloaded rise by γ, exactly balanced stay', () => {
  const model = tinyModel();
  const moe = model.layers[1]!.ffn;
  assert.ok(moe instanceof MoE);
  const gate = moe.gate;
  const before = gate.bias!.toFloat64();
  // 8 experts, T = 4 tokens × k = 2: mean load 1. Expert 0 gets 3, expert 1 gets 1, 2..5 one each... :
  // loads [3, 1, 1, 1, 1, 1, 0, 0]
  const routes = fromArray(Int32Array.from([0, 1, 0, 2, 0, 3, 4, 5]), [4, 2], { dtype: 'i32' });
  const g = 0.01;
  gate.balance(routes, g);
  const after = gate.bias!.toFloat64();
  const want = [-g, 0, 0, 0, 0, 0, g, g];
  want.forEach((d, e) => assert.equal(after[e], Math.fround(before[e]! + d), `expert ${e}`));
});
