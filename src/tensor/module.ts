// Parameters and modules.
//
// A module's state is found by walking its own properties (in definition order, like PyTorch's
// attribute registration): a tensor marked with param() is a trainable parameter, one marked with
// buffer() is non-trained state (fp8 scales, routing biases) that still belongs in the state dict, a
// Module is a child, and an array of Modules is a list of children named `prop.0`, `prop.1`, ...
// Unmarked tensors (caches such as RoPE tables) are not state. Loading copies into the existing
// tensors, so references held elsewhere (an optimizer) stay valid.
import { DsvError } from '../errors.js';
import { noGrad } from './autograd.js';
import { getBackend } from './backend.js';
import { Tensor, fmtShape } from './tensor.js';

export class StateDictError extends DsvError {}

const PARAMS = new WeakSet<Tensor>();
const BUFFERS = new WeakMap<Tensor, { persistent: boolean }>();

/** Mark t as a trainable parameter (sets requiresGrad) and return it. */
export function param(t: Tensor): Tensor {
  BUFFERS.delete(t);
  PARAMS.add(t);
  t.requiresGrad = true;
  return t;
}
export function isParameter(t: Tensor): boolean {
  return PARAMS.has(t);
}

/** Mark t as module state that is not trained; non-persistent buffers stay out of the state dict. */
export function buffer(t: Tensor, opts: { persistent?: boolean } = {}): Tensor {
  PARAMS.delete(t);
  BUFFERS.set(t, { persistent: opts.persistent ?? true });
  return t;
}

export type StateSource = Map<string, Tensor> | Record<string, Tensor> | { keys(): string[]; tensor(name: string): Tensor };

export interface LoadResult {
  missing: string[];
  unexpected: string[];
}

export abstract class Module {
  /** Direct children with their names, in definition order. */
  namedChildren(): [string, Module][] {
    const out: [string, Module][] = [];
    for (const [k, v] of Object.entries(this)) {
      if (v instanceof Module) out.push([k, v]);
      else if (Array.isArray(v) && v.length && v.every((x) => x instanceof Module)) v.forEach((m, i) => out.push([`${k}.${i}`, m as Module]));
    }
    return out;
  }

  /** Every parameter of this module and its descendants, as ["a.b.weight", tensor]; shared tensors once. */
  namedParameters(prefix = ''): [string, Tensor][] {
    const seen = new Set<Tensor>();
    return this.namedTensors(prefix, (t) => PARAMS.has(t)).filter(([, t]) => (seen.has(t) ? false : (seen.add(t), true)));
  }

  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }

  namedBuffers(prefix = ''): [string, Tensor][] {
    return this.namedTensors(prefix, (t) => BUFFERS.has(t));
  }

  /** Drop every parameter's gradient (set to null, so the next backward starts fresh). */
  zeroGrad(): void {
    for (const p of this.parameters()) p.grad = null;
  }

  /** Turn gradient tracking of all parameters on or off (e.g. off for inference). */
  setRequiresGrad(flag: boolean): this {
    for (const p of this.parameters()) p.requiresGrad = flag;
    return this;
  }

  /** Parameters and persistent buffers by full name. The tensors are the module's own (not copies). */
  stateDict(prefix = ''): Map<string, Tensor> {
    return new Map(this.namedTensors(prefix, (t) => PARAMS.has(t) || BUFFERS.get(t)?.persistent === true));
  }

  /**
   * Copy tensors from `src` into this module's state (casting dtype and moving device as needed).
   * Shapes must match exactly. strict (the default): any missing or unexpected key is an error;
   * otherwise they are returned. A Checkpoint works as `src`: tensors are then read one at a time.
   */
  loadStateDict(src: StateSource, opts: { strict?: boolean } = {}): LoadResult {
    const strict = opts.strict ?? true;
    const own = this.stateDict();
    const get = sourceGetter(src);
    const keys = sourceKeys(src);
    const missing = [...own.keys()].filter((k) => !keys.has(k));
    const unexpected = [...keys].filter((k) => !own.has(k));
    if (strict && (missing.length || unexpected.length)) {
      const parts: string[] = [];
      if (missing.length) parts.push(`missing keys (${missing.length}): ${listNames(missing)}`);
      if (unexpected.length) parts.push(`unexpected keys (${unexpected.length}): ${listNames(unexpected)}`);
      throw new StateDictError(`loadStateDict(${this.constructor.name}): ${parts.join('; ')}`);
    }
    // Check every shape before copying anything, so a failed load leaves the module untouched when
    // the source can tell shapes without reading data.
    const infoShape = 'info' in src && typeof (src as { info?: unknown }).info === 'function'
      ? (k: string): readonly number[] => (src as unknown as { info(n: string): { shape: number[] } }).info(k).shape
      : (k: string): readonly number[] => get(k).shape;
    const bad: string[] = [];
    for (const [k, t] of own) {
      if (!keys.has(k)) continue;
      const s = infoShape(k);
      if (!sameShape(s, t.shape)) bad.push(`${k}: checkpoint ${fmtShape(s)} vs module ${fmtShape(t.shape)}`);
    }
    if (bad.length) throw new StateDictError(`loadStateDict(${this.constructor.name}): mis-shaped keys (${bad.length}): ${listNames(bad)}`);
    noGrad(() => {
      for (const [k, t] of own) {
        if (!keys.has(k)) continue;
        let s = get(k);
        if (s.device !== t.device) s = new Tensor(getBackend(t.device).fromHost(s.toHost(), s.dtype), s.shape);
        t.backend.copy(t, s);
      }
    });
    return { missing, unexpected };
  }

  private namedTensors(prefix: string, keep: (t: Tensor) => boolean): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    const walk = (m: Module, pre: string, path: Set<Module>): void => {
      if (path.has(m)) throw new DsvError(`module tree has a cycle at '${pre.replace(/\.$/, '')}'`);
      path.add(m);
      for (const [k, v] of Object.entries(m)) if (v instanceof Tensor && keep(v)) out.push([pre + k, v]);
      for (const [k, c] of m.namedChildren()) walk(c, `${pre}${k}.`, path);
      path.delete(m);
    };
    walk(this, prefix ? `${prefix}.` : '', new Set());
    return out;
  }
}

function sourceKeys(src: StateSource): Set<string> {
  if (src instanceof Map) return new Set(src.keys());
  if (typeof (src as { keys?: unknown }).keys === 'function' && typeof (src as { tensor?: unknown }).tensor === 'function') {
    return new Set((src as { keys(): string[] }).keys());
  }
  return new Set(Object.keys(src));
}

function sourceGetter(src: StateSource): (k: string) => Tensor {
  if (src instanceof Map) return (k) => src.get(k)!;
  if (typeof (src as { tensor?: unknown }).tensor === 'function') return (k) => (src as { tensor(n: string): Tensor }).tensor(k);
  return (k) => (src as Record<string, Tensor>)[k]!;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function listNames(names: string[]): string {
  const shown = names.slice(0, 20).join(', ');
  return names.length > 20 ? `${shown}, ... (${names.length - 20} more)` : shown;
}
