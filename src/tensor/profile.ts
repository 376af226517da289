// Where a step's time goes, per backend operation. Every method of a backend instance is wrapped: an
// outermost call (ops that call other ops on the same backend count once, as the caller) is timed
// between two synchronize() calls, so on a device the time is the op's own device time plus one launch
// and sync round trip (~10–30 µs), the price of attributing asynchronous work. Per op the table keeps
// the calls, the total, and the argument shapes that cost the most (shape and strides of each View
// argument), which is what tells a fast layout from one that falls back to a slow kernel.
// With a timer (device events), nothing is synchronised: a mark is recorded on the stream before and after
// each outermost op and the times are read at table(). Behind a held stream (bench/harness.ts gpuTimedOnce)
// the kernels then run back to back and an op's time is its kernels' device time alone.
import type { Backend } from './backend.js';

/** Marks recorded in stream order (CUDA events) and the ms between two of them once both completed. */
export interface OpTimer<M> {
  mark(): M;
  ms(from: M, to: M): number;
  release(m: M): void;
}

interface Shaped {
  shape: readonly number[];
  strides: readonly number[];
  dtype: string;
}

export interface OpProfile {
  calls: number;
  ms: number;
  /** the longest host time of one call (with a timer, where the host waited on the device shows here) */
  hostMaxMs: number;
  /** argument signature → [calls, ms] */
  bySig: Map<string, [number, number]>;
  /** names noted (e.g. kernels launched) while this op ran → count */
  notes: Map<string, number>;
}

export interface BackendProfile {
  readonly ops: Map<string, OpProfile>;
  /** Attribute a name (a kernel launched, a library call) to the op running now. */
  note(name: string): void;
  reset(): void;
  /** Unwrap the backend. */
  stop(): void;
  /** The ops by total time, with the top `sigs` signatures of each. */
  table(sigs?: number): string;
}

const isView = (a: unknown): a is Shaped => typeof a === 'object' && a !== null && Array.isArray((a as Shaped).shape) && Array.isArray((a as Shaped).strides);

function signature(args: unknown[]): string {
  return args.map((a) => (isView(a) ? `${a.dtype}[${a.shape.join(',')}]/${a.strides.join(',')}` : typeof a === 'string' ? a : typeof a === 'number' ? '#' : Array.isArray(a) ? `(${a.join(',')})` : '·')).join(' ');
}

/** Methods that are not operations: synchronisation, timing and capture. */
const NOT_OPS = new Set(['constructor', 'synchronize', 'event', 'hold', 'captureGraph', 'memoryStats', 'resetPeakMemory']);

export function profileBackend<M>(be: Backend, timer?: OpTimer<M>): BackendProfile {
  const ops = new Map<string, OpProfile>();
  const target = be as unknown as Record<string, unknown>;
  const names = new Set<string>();
  for (let p = Object.getPrototypeOf(be); p && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    for (const n of Object.getOwnPropertyNames(p)) if (!NOT_OPS.has(n) && typeof target[n] === 'function') names.add(n);
  }
  let depth = 0;
  let current: OpProfile | null = null;
  const sync = (): void => be.synchronize();
  const account = (op: OpProfile, sig: string, ms: number): void => {
    op.calls++;
    op.ms += ms;
    const s = op.bySig.get(sig) ?? [0, 0];
    s[0]++;
    s[1] += ms;
    op.bySig.set(sig, s);
  };
  // with a timer: [op, signature, mark before, mark after], read at settle()
  const pending: [OpProfile, string, M, M][] = [];
  const settle = (): void => {
    if (!timer || pending.length === 0) return;
    sync();
    for (const [op, sig, a, b] of pending) {
      account(op, sig, timer.ms(a, b));
      timer.release(a);
      timer.release(b);
    }
    pending.length = 0;
  };
  for (const n of names) {
    const orig = target[n] as (...a: unknown[]) => unknown;
    target[n] = function (this: unknown, ...args: unknown[]) {
      if (depth > 0) return orig.apply(this, args);
      let op = ops.get(n);
      if (!op) ops.set(n, (op = { calls: 0, ms: 0, hostMaxMs: 0, bySig: new Map(), notes: new Map() }));
      if (!timer) sync();
      const t = performance.now();
      const m0 = timer?.mark();
      depth++;
      current = op;
      try {
        return orig.apply(this, args);
      } finally {
        if (!timer) sync();
        depth--;
        current = null;
        const host = performance.now() - t;
        if (host > op.hostMaxMs) op.hostMaxMs = host;
        if (timer) pending.push([op, signature(args), m0!, timer.mark()]);
        else account(op, signature(args), host);
      }
    };
  }
  return {
    ops,
    note(name: string) {
      if (current) current.notes.set(name, (current.notes.get(name) ?? 0) + 1);
    },
    reset() {
      settle();
      ops.clear();
    },
    stop() {
      settle();
      for (const n of names) delete target[n];
    },
    table(sigs = 3) {
      settle();
      const total = [...ops.values()].reduce((a, o) => a + o.ms, 0);
      const lines = [`${'op'.padEnd(24)} ${'calls'.padStart(7)} ${'ms'.padStart(9)} ${'share'.padStart(6)}`];
      for (const [n, o] of [...ops].sort((a, b) => b[1].ms - a[1].ms)) {
        lines.push(`${n.padEnd(24)} ${String(o.calls).padStart(7)} ${o.ms.toFixed(1).padStart(9)} ${((100 * o.ms) / Math.max(total, 1e-9)).toFixed(1).padStart(5)}%${o.notes.size ? '  ' + [...o.notes].map(([k, c]) => `${k}×${c}`).join(' ') : ''}`);
        for (const [s, [c, ms]] of [...o.bySig].sort((a, b) => b[1][1] - a[1][1]).slice(0, sigs)) lines.push(`    ${ms.toFixed(1).padStart(8)} ms ×${c}  ${s}`);
      }
      lines.push(`${'total'.padEnd(24)} ${''.padStart(7)} ${total.toFixed(1).padStart(9)}`);
      return lines.join('\n');
    },
  };
}
