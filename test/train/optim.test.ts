import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import * as T from '../../src/tensor/index.js';
import { Module, param } from '../../src/tensor/module.js';
import { saveSafetensors } from '../../src/tensor/safetensors.js';
import { AdamW, OptimizerError } from '../../src/train/optim.js';
import { clipGradNorm } from '../../src/train/clip.js';
import { cosineLr } from '../../src/train/schedule.js';

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'dsv32-optim-'));
}

// torch.optim.AdamW's single-tensor update written out in plain Python. In f32 mode every intermediate
// is rounded to float32 (struct round trip) and scalars are converted to float32 first, as torch does.
const PY_ADAMW = String.raw`
import json, math, struct, sys
cfg = json.loads(sys.stdin.read())
f32 = cfg['dtype'] == 'f32'
R = (lambda x: struct.unpack('<f', struct.pack('<f', x))[0]) if f32 else (lambda x: x)
lr, (b1, b2), eps, wd = cfg['lr'], cfg['betas'], cfg['eps'], cfg['wd']
params = {n: list(v) for n, v in cfg['params'].items()}
state, history = {}, []
for grads in cfg['grads']:
    for n in params:
        g = grads.get(n)
        if g is None:
            continue
        p = params[n]
        st = state.setdefault(n, {'t': 0, 'm': [0.0] * len(p), 'v': [0.0] * len(p)})
        st['t'] += 1
        t = st['t']
        if wd != 0 and n not in cfg['no_decay']:
            c = R(1 - lr * wd)
            p = [R(x * c) for x in p]
        w = 1 - b1
        if abs(w) < 0.5:
            m = [R(mi + R(R(w) * R(gi - mi))) for mi, gi in zip(st['m'], g)]
        else:
            m = [R(gi - R(R(gi - mi) * R(1 - w))) for mi, gi in zip(st['m'], g)]
        v = [R(R(vi * R(b2)) + R(R(R(1 - b2) * gi) * gi)) for vi, gi in zip(st['v'], g)]
        bc1 = 1 - b1 ** t
        bc2_sqrt = math.sqrt(1 - b2 ** t)
        step_size = lr / bc1
        denom = [R(R(R(math.sqrt(vi)) / R(bc2_sqrt)) + R(eps)) for vi in v]
        params[n] = [R(pi + R(R(R(-step_size) * mi) / di)) for pi, mi, di in zip(p, m, denom)]
        st['m'], st['v'] = m, v
    history.append({n: list(p) for n, p in params.items()})
print(json.dumps(history))
`;

interface Case {
  dtype: 'f32' | 'f64';
  lr: number;
  betas: [number, number];
  eps: number;
  wd: number;
}

/** Run our AdamW and the Python reference on the same parameters and gradient sequence. */
function compareWithPython(c: Case): { ours: Record<string, number[]>[]; ref: Record<string, number[]>[] } {
  const rng = new T.Rng(42);
  const round = c.dtype === 'f32' ? Math.fround : (x: number): number => x;
  const init: Record<string, number[]> = {
    w: Array.from(T.randn([6], rng, { dtype: 'f64' }).toFloat64(), round),
    b: Array.from(T.randn([3], rng, { dtype: 'f64' }).toFloat64(), round),
    late: [0.5, -0.25].map(round),
  };
  // gradients per step; 'late' has none for the first two steps (no state, no step count)
  const grads: Record<string, number[] | null>[] = [];
  for (let s = 0; s < 6; s++) {
    grads.push({
      w: Array.from(T.randn([6], rng, { dtype: 'f64' }).toFloat64(), (x) => round(x * (s + 1))),
      b: Array.from(T.randn([3], rng, { dtype: 'f64' }).toFloat64(), (x) => round(x * 1e-3)),
      late: s < 2 ? null : [round(0.1 * s), round(-2 * s)],
    });
  }
  const params = Object.entries(init).map(([n, v]) => [n, param(T.fromArray(v, [v.length], { dtype: c.dtype }))] as [string, T.Tensor]);
  const opt = new AdamW(params, { lr: c.lr, betas: c.betas, eps: c.eps, weightDecay: c.wd, decay: (n) => n !== 'b' });
  const ours: Record<string, number[]>[] = [];
  for (const g of grads) {
    for (const [n, p] of params) p.grad = g[n] ? T.fromArray(g[n]!, [g[n]!.length], { dtype: c.dtype }) : null;
    opt.step();
    ours.push(Object.fromEntries(params.map(([n, p]) => [n, [...p.toFloat64()]])));
  }
  const cfg = { ...c, params: init, grads: grads.map((g) => Object.fromEntries(Object.entries(g).filter(([, v]) => v))), no_decay: ['b'] };
  const r = spawnSync('python3', ['-c', PY_ADAMW], { input: JSON.stringify(cfg), encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return { ours, ref: JSON.parse(r.stdout) };
}

test('AdamW f32 matches a float32 Python reimplementation of torch.optim.AdamW bit for bit (both lerp branches)', () => {
  for (const betas of [[0.9, 0.999], [0.3, 0.95]] as [number, number][]) {
    const { ours, ref } = compareWithPython({ dtype: 'f32', lr: 0.01, betas, eps: 1e-8, wd: 0.1 });
    assert.equal(ours.length, 6);
    assert.deepEqual(ours, ref, `betas ${betas}`);
    assert.deepEqual(ours[1]!['late'], [0.5, -0.25]); // untouched until it has a gradient
    assert.notDeepEqual(ours[2]!['late'], [0.5, -0.25]);
  }
});

test('AdamW f64 matches the Python (double) reimplementation', () => {
  const { ours, ref } = compareWithPython({ dtype: 'f64', lr: 3e-3, betas: [0.9, 0.95], eps: 1e-6, wd: 0.05 });
  ours.forEach((s, i) => {
    for (const n of Object.keys(s)) {
      s[n]!.forEach((v, k) => {
        const want = ref[i]![n]![k]!;
        // identical arithmetic; only β^t may differ by an ulp between V8's and libm's pow
        assert.ok(Math.abs(v - want) <= 1e-15 * Math.max(1, Math.abs(want)), `step ${i} ${n}[${k}]: ${v} vs ${want}`);
      });
    }
  });
});

test('AdamW first step by hand: decoupled decay, then a bias-corrected step of size ≈ lr', () => {
  const p = param(T.fromArray([1, -2], [2], { dtype: 'f64' }));
  const opt = new AdamW([p], { lr: 0.01, weightDecay: 0.1 });
  p.grad = T.fromArray([0.5, -4], [2], { dtype: 'f64' });
  opt.step();
  // m̂ = g, v̂ = g² after bias correction ⇒ update = lr·g/(|g| + eps)
  const want = [1 * (1 - 0.001) - (0.01 * 0.5) / (0.5 + 1e-8), -2 * (1 - 0.001) + (0.01 * 4) / (4 + 1e-8)];
  const got = p.toFloat64();
  want.forEach((w, i) => assert.ok(Math.abs(got[i]! - w) < 1e-15, `${got[i]} vs ${w}`));
  // a parameter without a gradient is left alone
  const q = param(T.tensor([3]));
  const opt2 = new AdamW([q], { lr: 1 });
  opt2.step();
  assert.deepEqual(q.toArray(), [3]);
  assert.equal(opt2.stateDict().state.size, 0);
});

test('AdamW: a transposed (strided) f32 gradient takes the fused step and updates as its contiguous copy does', () => {
  const rng = new T.Rng(5);
  const w0 = T.randn([6, 10], rng);
  const gT = T.randn([10, 6], rng);
  const run = (grad: T.Tensor): Float32Array => {
    const p = param(T.fromArray(w0.toFloat32(), [6, 10])); // a fresh copy: the step updates in place
    const opt = new AdamW([p], { lr: 0.01, weightDecay: 0.1 });
    for (let s = 0; s < 3; s++) {
      p.grad = grad;
      opt.step();
    }
    return p.toFloat32();
  };
  const strided = T.transpose(gT);
  assert.equal(strided.isContiguous(), false);
  const be = T.getBackend('cpu');
  const fused = be.adamwStep!;
  let calls = 0;
  be.adamwStep = (...a: Parameters<typeof fused>) => {
    calls++;
    fused.apply(be, a);
  };
  try {
    assert.deepEqual(run(strided), run(T.contiguous(strided)));
  } finally {
    be.adamwStep = fused;
  }
  assert.equal(calls, 6, 'every step of both runs took the fused update');
});

class Mlp extends Module {
  w1: T.Tensor;
  w2: T.Tensor;
  b2: T.Tensor;
  constructor(seed: number) {
    super();
    const rng = new T.Rng(seed);
    this.w1 = param(T.muls(T.randn([8, 4], rng), 0.5));
    this.w2 = param(T.muls(T.randn([2, 8], rng), 0.5));
    this.b2 = param(T.zeros([2]));
  }
  forward(x: T.Tensor): T.Tensor {
    return T.linear(T.silu(T.linear(x, this.w1)), this.w2, this.b2);
  }
}

function trainSteps(net: Mlp, opt: AdamW, from: number, to: number): number {
  const rng = new T.Rng(99);
  const x = T.randn([16, 4], rng);
  const y = T.randn([16, 2], rng);
  const sched = cosineLr({ lr: 0.05, warmupSteps: 2, totalSteps: 5, minLr: 0.005 });
  let loss = NaN;
  for (let s = from; s < to; s++) {
    opt.lr = sched(s);
    const l = T.mean(T.square(T.sub(net.forward(x), y)));
    loss = l.item();
    T.backward(l);
    clipGradNorm(net.parameters(), 1.0);
    opt.step();
    opt.zeroGrad();
  }
  return loss;
}

test('resume: 5 steps equal 3 steps + save + load into fresh objects + 2 steps, bit for bit', () => {
  const dir = tmpDir();
  try {
    const a = new Mlp(1);
    const optA = new AdamW(a.namedParameters(), { lr: 0.05, weightDecay: 0.01 });
    trainSteps(a, optA, 0, 5);

    const b = new Mlp(1);
    const optB = new AdamW(b.namedParameters(), { lr: 0.05, weightDecay: 0.01 });
    trainSteps(b, optB, 0, 3);
    saveSafetensors(path.join(dir, 'model.safetensors'), b.stateDict());
    optB.save(path.join(dir, 'optim.safetensors'));

    const c = new Mlp(12345); // different init, overwritten by the load
    c.loadStateDict(T.Checkpoint.open(dir));
    const optC = AdamW.load(path.join(dir, 'optim.safetensors'), c.namedParameters());
    // the restored state is bit-identical to the saved one
    const sb = optB.stateDict();
    const sc = optC.stateDict();
    assert.deepEqual(sc.hyper, sb.hyper);
    assert.deepEqual(sc.paramNames, ['w1', 'w2', 'b2']);
    for (const [n, st] of sb.state) {
      const r = sc.state.get(n)!;
      assert.equal(r.step, st.step);
      assert.deepEqual(T.hostBytes(r.expAvg.toHost()), T.hostBytes(st.expAvg.toHost()));
      assert.deepEqual(T.hostBytes(r.expAvgSq.toHost()), T.hostBytes(st.expAvgSq.toHost()));
    }
    trainSteps(c, optC, 3, 5);
    for (const [n, p] of a.namedParameters()) {
      const q = c.namedParameters().find(([m]) => m === n)![1];
      assert.deepEqual(T.hostBytes(q.toHost()), T.hostBytes(p.toHost()), n);
    }
    // and it really trained: a resumed run without the optimizer state would differ
    const d = new Mlp(1);
    const optD = new AdamW(d.namedParameters(), { lr: 0.05, weightDecay: 0.01 });
    trainSteps(d, optD, 0, 3);
    trainSteps(d, new AdamW(d.namedParameters(), { lr: 0.05, weightDecay: 0.01 }), 3, 5);
    assert.notDeepEqual(T.hostBytes(d.w1.toHost()), T.hostBytes(a.w1.toHost()));
  } finally {
    fs.rmSync(dir, { recursive: true });
  }
});

test('AdamW trains: a small regression loss falls by 100x, parameters are updated in place', () => {
  const net = new Mlp(3);
  const w1 = net.w1;
  const opt = new AdamW(net.namedParameters(), { lr: 0.02, weightDecay: 0 });
  const rng = new T.Rng(5);
  const x = T.randn([32, 4], rng);
  const y = T.noGrad(() => new Mlp(4).forward(x)); // a target the model can represent
  const lossOf = (): T.Tensor => T.mean(T.square(T.sub(net.forward(x), y)));
  const first = lossOf().item();
  for (let s = 0; s < 300; s++) {
    const l = lossOf();
    T.backward(l);
    opt.step();
    opt.zeroGrad();
  }
  const last = lossOf().item();
  assert.ok(last < first / 100, `loss ${first} → ${last}`);
  assert.equal(net.w1, w1);
  assert.equal(opt.params[0]![1], w1);
});

test('bf16 parameters keep their dtype with f32 moments', () => {
  const p = param(T.fromArray([1, 2, 3], [3], { dtype: 'bf16' }));
  const opt = new AdamW([['p', p]], { lr: 0.1, weightDecay: 0 });
  p.grad = T.fromArray([1, -1, 0.5], [3], { dtype: 'bf16' });
  opt.step();
  assert.equal(p.dtype, 'bf16');
  assert.deepEqual(p.toArray(), [0.8984375, 2.09375, 2.90625]); // bf16(1 − 0.1), bf16(2.1), bf16(2.9)
  assert.equal(opt.stateDict().state.get('p')!.expAvg.dtype, 'f32');
});

test('AdamW rejects bad parameters, hyperparameters and foreign state with clear errors', () => {
  const p = param(T.tensor([1, 2]));
  const isOpt = (re: RegExp) => (e: unknown): boolean => e instanceof OptimizerError && re.test(e.message);
  assert.throws(() => new AdamW([p, p], { lr: 1 }), isOpt(/parameter '1' is listed twice/));
  assert.throws(() => new AdamW([['a', p], ['a', param(T.tensor([1]))]], { lr: 1 }), isOpt(/two parameters are named 'a'/));
  assert.throws(() => new AdamW([T.tensor([1], { dtype: 'i32' })], { lr: 1 }), isOpt(/'0' has dtype i32/));
  assert.throws(() => new AdamW([p], { lr: -1 }), isOpt(/lr must be a finite number ≥ 0, got -1/));
  assert.throws(() => new AdamW([p], { lr: 1, betas: [0.9, 1] }), isOpt(/betas must be two numbers in \[0, 1\)/));
  assert.throws(() => new AdamW([p], { lr: 1, eps: NaN }), isOpt(/eps/));
  assert.throws(() => new AdamW([p], { lr: 1, weightDecay: -0.1 }), isOpt(/weightDecay/));
  const opt = new AdamW([p], { lr: 1 });
  p.grad = T.tensor([1, 2, 3]);
  assert.throws(() => opt.step(), isOpt(/gradient of '0' is \[3\] on cpu, parameter is \[2\] on cpu/));
  p.grad = T.tensor([1, 1]);
  opt.step();

  const dir = tmpDir();
  try {
    const file = path.join(dir, 'o.safetensors');
    opt.save(file);
    assert.throws(() => AdamW.load(file, [['other', param(T.tensor([1, 2]))]]), isOpt(/not in the saved state: other; only in the saved state: 0/));
    assert.throws(() => AdamW.load(file, [param(T.tensor([1, 2, 3]))]), isOpt(/'0\.exp_avg' has shape \[2\], parameter is \[3\]/));
    const restored = AdamW.load(file, [param(T.tensor([1, 2]))]);
    assert.equal(restored.stateDict().state.get('0')!.step, 1);
    saveSafetensors(file, { x: T.tensor([1]) }, { format: 'something else' });
    assert.throws(() => AdamW.load(file, [p]), isOpt(/not an AdamW state file/));
    saveSafetensors(file, {}, { format: 'dsv32.adamw/1', hyper: '{"lr": 1}', param_names: '["0"]', steps: '{}' });
    assert.throws(() => AdamW.load(file, [p]), isOpt(/metadata 'hyper' is malformed \(betas/));
    saveSafetensors(file, {}, { format: 'dsv32.adamw/1', hyper: JSON.stringify(opt.stateDict().hyper), param_names: '["0"]', steps: '{"0": 2}' });
    assert.throws(() => AdamW.load(file, [p]), isOpt(/'0' has a step count but no tensor '0\.exp_avg'/));
  } finally {
    fs.rmSync(dir, { recursive: true });
  }
});

test('the CPU backend\'s fused AdamW step equals the op-by-op update bit for bit (100 K elements, 4 steps, both lerp branches, with and without decay)', async () => {
  const { CpuBackend } = await import('../../src/backend/cpu/cpu-backend.js');
  const proto = CpuBackend.prototype as { adamwStep?: unknown };
  const fused = proto.adamwStep;
  assert.ok(fused, 'the CPU backend has adamwStep');
  const rng = new T.Rng(17);
  const n = 100_003;
  const init = Float32Array.from({ length: n }, () => (rng.uniform() - 0.5) * 2);
  const grads = Array.from({ length: 4 }, () => Float32Array.from({ length: n }, () => (rng.uniform() - 0.5) * (rng.uniform() < 0.01 ? 1e4 : 1e-2)));
  const run = (opFused: boolean, betas: [number, number], wd: number): Float32Array[] => {
    if (!opFused) delete proto.adamwStep;
    try {
      const p = T.fromArray(init, [n], { dtype: 'f32', requiresGrad: true });
      const opt = new AdamW([['w', p]], { lr: 3e-3, betas, eps: 1e-8, weightDecay: wd });
      for (const g of grads) {
        p.grad = T.fromArray(g, [n], { dtype: 'f32' });
        opt.step();
      }
      const st = opt.stateDict().state.get('w')!;
      return [p.toHost() as Float32Array, st.expAvg.toHost() as Float32Array, st.expAvgSq.toHost() as Float32Array];
    } finally {
      proto.adamwStep = fused;
    }
  };
  for (const betas of [[0.9, 0.95], [0.3, 0.999]] as [number, number][]) {
    for (const wd of [0, 0.1]) {
      const a = run(true, betas, wd);
      const b = run(false, betas, wd);
      ['param', 'exp_avg', 'exp_avg_sq'].forEach((name, k) => {
        const x = a[k]!;
        const y = b[k]!;
        let diff = 0;
        for (let i = 0; i < n; i++) if (!Object.is(x[i], y[i])) diff++;
        assert.equal(diff, 0, `betas ${betas} wd ${wd}: ${diff} of ${n} ${name} values differ`);
      });
    }
  }
});
