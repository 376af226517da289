// Runs kernels/adamw.cu (the fused AdamW step) on the CPU, one host thread per CUDA thread, and compares it
// BIT FOR BIT with the CPU backend's adamwStep (src/backend/cpu/adamw.ts) over 3 steps at n = 1, 3, 5,
// 1023, 4097, 20011, both lerp branches, with and without decay, at element offsets that take each of the
// kernel's paths (all 0: float4 only; all 1: a 3-element scalar head, then float4; 1, 2, 3, 5: scalar
// throughout) and with grids small enough that every grid-stride loop runs several rounds. The storages
// are 8 elements longer than the views and compared whole, so a write outside a view shows too. For a
// machine without a GPU: it checks the kernel's indexing and its order of roundings before the GPU run
// (test/cuda/adamw.test.ts); no substitute for that run (g++ compiles it, not nvcc: nvcc's contraction of
// a·b + c into FMAs, which the __f*_rn intrinsics prevent, is not exercised here).
//   npm run build && node scripts/kernel-emu/run-adamw.mjs [--quick]
// Needs g++ with C++20 (std::barrier). Exit code 1 when a case differs. Shared parts: emu-runner.mjs.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { build, emulate, mulberry32, reporter, setup, writeData } from './emu-runner.mjs';

const { T, quick, dir } = await setup('adamw', { quickMode: true });
const emu = build(dir, { cu: 'adamw.cu', driver: 'adamw-emu.cpp', flags: ['-O1', '-ffp-contract=off'] });
const { check, finish } = reporter('adamw');
const cpu = T.getBackend('cpu');
const f = Math.fround;
const u32 = (x) => new Uint32Array(new Float32Array([x]).buffer)[0];

/** The scalars AdamW.step passes to Backend.adamwStep (src/train/optim.ts), for an f32 parameter. */
function scalars(lr, [b1, b2], eps, wd, step) {
  const w = 1 - b1;
  return {
    decay: wd !== 0 ? f(1 - lr * wd) : 1, lerp: Math.abs(w) < 0.5, w: f(w), oneMinusW: f(1 - w), b2: f(b2), oneMinusB2: f(1 - b2),
    bc2Sqrt: f(Math.sqrt(1 - b2 ** step)), eps: f(eps), negStepSize: f(-lr / (1 - b1 ** step)),
  };
}
const r = mulberry32(11);
/** mostly ~1e-2, 1% ~1e4, zeros and −0, |g| up to 1e-19 and 1e-37 (subnormal intermediates; as test/cuda/adamw.test.ts) */
const grad = () => {
  const a = r();
  const s = r() - 0.5;
  return a < 0.01 ? s * 2e4 : a < 0.02 ? 0 : a < 0.03 ? -0 : a < 0.04 ? s * 2e-19 : a < 0.05 ? s * 2e-37 : s * 2e-2;
};
const firstDiff = (a, b) => {
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return i;
  return -1;
};

const SIZES = quick ? [1, 5, 4097] : [1, 3, 5, 1023, 4097, 20011];
const LAYOUTS = [['offsets 0', [0, 0, 0, 0]], ['offsets 1', [1, 1, 1, 1]], ['offsets 1,2,3,5', [1, 2, 3, 5]]];
const HYPER = [['lerp', [0.9, 0.95], 0], ['lerp+decay', [0.9, 0.95], 0.1], ['1-w', [0.3, 0.999], 0], ['1-w+decay', [0.3, 0.999], 0.1]];
const GRIDS = [[1, 32], [3, 64]];
for (const n of SIZES) {
  for (const [layout, offs] of LAYOUTS) {
    for (const [hname, betas, wd] of HYPER) {
      for (const [gx, threads] of GRIDS) {
        const total = n + 8;
        // m and v are 0 at a tenth of the elements, as in a fresh state (subnormal m' and v' survive there)
        const fresh = (x) => (r() < 0.1 ? 0 : x);
        const init = [() => (r() - 0.5) * 2, () => fresh((r() - 0.5) * 2e-2), () => fresh(r() * 1e-4)].map((gen) => Float32Array.from({ length: total }, gen));
        const [pc, mc, vc] = init.map((a) => T.fromArray(a.slice(), [total]));
        const files = ['p', 'g', 'm', 'v'].map((k) => join(dir, `${k}.bin`));
        writeData(T, files[0], init[0]);
        writeData(T, files[2], init[1]);
        writeData(T, files[3], init[2]);
        let bad = '';
        for (let step = 1; step <= 3 && !bad; step++) {
          const g = new Float32Array(total);
          for (let i = 0; i < n; i++) g[offs[1] + i] = grad();
          writeData(T, files[1], g);
          const h = scalars(3e-3, betas, 1e-8, wd, step);
          const view = (t, k) => T.narrow(t, 0, offs[k], n);
          cpu.adamwStep(view(pc, 0), view(T.fromArray(g, [total]), 1), view(mc, 2), view(vc, 3), h);
          emulate(emu, [n, gx, threads, ...offs, u32(h.decay), h.lerp ? 1 : 0, ...[h.w, h.oneMinusW, h.b2, h.oneMinusB2, h.bc2Sqrt, h.eps, h.negStepSize].map(u32), ...files]);
          for (const [name, t, file] of [['param', pc, files[0]], ['exp_avg', mc, files[2]], ['exp_avg_sq', vc, files[3]]]) {
            const b = readFileSync(file);
            const got = new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
            const want = t.toHost();
            const i = firstDiff(got, want);
            if (i >= 0) {
              bad = `step ${step} ${name} differs first at storage index ${i}: emulated ${got[i]}, cpu ${want[i]}`;
              break;
            }
          }
        }
        check(!bad, `n=${n} ${layout} ${hname} grid ${gx}×${threads}${bad ? `: ${bad}` : ': bit-identical over 3 steps'}`);
      }
    }
  }
}
finish();
