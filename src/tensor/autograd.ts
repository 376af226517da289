// Reverse-mode autograd on a dynamic tape: every differentiable op that sees an input with
// requiresGrad records a GradNode on its output; backward() walks the graph in reverse topological
// order, summing gradients where a tensor feeds several ops (accumulating into leaf `.grad`).
import { DsvError } from '../errors.js';
import { type GradNode, Tensor, fmtShape } from './tensor.js';

let gradEnabled = true;

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Run fn with gradient recording off (inference, optimizer updates). Restores the previous mode. */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

export function needsGrad(...xs: (Tensor | null | undefined)[]): boolean {
  if (!gradEnabled) return false;
  for (const x of xs) if (x && x.requiresGrad) return true;
  return false;
}

/**
 * Attach a node to `out` when any input requires grad. `backward` maps dL/dout to one gradient per
 * input (same order as `inputs`); it runs with recording off.
 */
export function record(out: Tensor, name: string, inputs: readonly (Tensor | null)[], backward: (g: Tensor) => (Tensor | null)[]): Tensor {
  if (!needsGrad(...inputs)) return out;
  out.requiresGrad = true;
  out.gradFn = { name, inputs, backward };
  return out;
}

/** A tensor that shares data with t but is cut from the graph. */
export function detach(t: Tensor): Tensor {
  return t._view(t.shape, t.strides, t.offset);
}

export type AddFn = (a: Tensor, b: Tensor) => Tensor;

let addImpl: AddFn | null = null;
/** ops/ registers elementwise add here (breaks the import cycle autograd ↔ ops). */
export function _setGradAdd(fn: AddFn): void {
  addImpl = fn;
}

export interface BackwardOptions {
  /**
   * Keep the graph for another backward through it (PyTorch's retain_graph). By default each node is
   * released once its gradient has been propagated: its saved tensors and its inputs become garbage
   * as the pass goes, so the backward's peak holds the activations not yet visited instead of all of
   * them. A second backward through a released node throws.
   */
  retainGraph?: boolean;
  /**
   * Called once per leaf (a tensor with requiresGrad and no gradFn) as soon as its `.grad` holds every
   * contribution of this pass, i.e. when the last node of the tape that consumes it has propagated
   * (data-parallel training starts a bucket's all-reduce there, while the pass goes on). A leaf that
   * is the root itself is final at once.
   */
  onLeafGrad?: (leaf: Tensor) => void;
}

const RELEASED = (name: string) => (): never => {
  throw new DsvError(`backward: the graph through '${name}' was freed by an earlier backward; pass { retainGraph: true } to the first one to go through it twice`);
};

/**
 * The backward pass as a sequence of node steps (a generator, so backwardAsync can pause between
 * nodes). Yields after each node whose gradient it propagated.
 */
function* backwardSteps(root: Tensor, grad: Tensor | undefined, opts: BackwardOptions): Generator<void, void, void> {
  if (!root.requiresGrad) throw new DsvError('backward: the tensor does not require grad (no parameter with requiresGrad reached it)');
  if (!grad) {
    if (root.numel !== 1) throw new DsvError(`backward: root has shape ${fmtShape(root.shape)}; pass a gradient or reduce to a scalar first`);
    grad = onesLike(root);
  } else if (grad.shape.length !== root.shape.length || grad.shape.some((d, i) => d !== root.shape[i])) {
    throw new DsvError(`backward: gradient shape ${fmtShape(grad.shape)} does not match root shape ${fmtShape(root.shape)}`);
  }
  const add = addImpl!;
  // Topological order by iterative DFS (deep graphs must not overflow the JS stack).
  // Each leaf's consumer edges are counted on the way: a leaf's gradient is final once that many edges
  // have been walked back, which can be well before the leaf's own (late) place in the order.
  const order: (Tensor | null)[] = [];
  const seen = new Set<Tensor>();
  const pending = new Map<Tensor, number>();
  const stack: [Tensor, number][] = [[root, 0]];
  seen.add(root);
  while (stack.length) {
    const top = stack[stack.length - 1]!;
    const [t, i] = top;
    const inputs = t.gradFn?.inputs ?? [];
    if (i < inputs.length) {
      top[1]++;
      const inp = inputs[i];
      if (inp && inp.requiresGrad && !inp.gradFn) pending.set(inp, (pending.get(inp) ?? 0) + 1);
      if (inp && inp.requiresGrad && !seen.has(inp)) {
        seen.add(inp);
        stack.push([inp, 0]);
      }
    } else {
      stack.pop();
      order.push(t);
    }
  }
  seen.clear();
  const grads = new Map<Tensor, Tensor>();
  grads.set(root, grad);
  /** Accumulate a leaf's summed gradient of this pass into its .grad (the pass is done with it). */
  const settle = (leaf: Tensor): void => {
    const g = grads.get(leaf);
    if (g) {
      grads.delete(leaf);
      leaf.grad = leaf.grad ? add(leaf.grad, g) : g;
    }
    opts.onLeafGrad?.(leaf);
  };
  /** One consumer edge of each leaf input of t has been walked back (t propagated, or got no gradient). */
  const consumed = (t: Tensor): void => {
    for (const inp of t.gradFn?.inputs ?? []) {
      if (!inp || !inp.requiresGrad || inp.gradFn) continue;
      const left = pending.get(inp)! - 1;
      pending.set(inp, left);
      if (left === 0) settle(inp);
    }
  };
  /** Propagate t's gradient g to t's inputs (a leaf root settles itself). */
  const step = (t: Tensor, g: Tensor): void => {
    const node: GradNode | null = t.gradFn;
    if (!node) {
      grads.set(t, g);
      settle(t);
      return;
    }
    const gin = node.backward(g);
    node.inputs.forEach((inp, j) => {
      const gi = gin[j];
      if (!inp || !inp.requiresGrad || !gi) return;
      if (gi.shape.length !== inp.shape.length || gi.shape.some((d, q) => d !== inp.shape[q])) {
        throw new Error(`autograd: ${node.name} returned a gradient of shape ${fmtShape(gi.shape)} for an input of shape ${fmtShape(inp.shape)}`);
      }
      const prev = grads.get(inp);
      grads.set(inp, prev ? add(prev, gi) : gi);
    });
    consumed(t);
    if (!opts.retainGraph) {
      // drop the closure (its saved activations) and the edges; t keeps a node that says it was freed
      const n = node as { inputs: readonly (Tensor | null)[]; backward: GradNode['backward'] };
      n.inputs = [];
      n.backward = RELEASED(node.name);
    }
  };
  for (let k = order.length - 1; k >= 0; k--) {
    const t = order[k]!;
    order[k] = null; // the pass holds no tensor it has visited
    // a leaf other than the root was settled by its last consumer (above), never here
    if (t !== root && !t.gradFn) continue;
    const g = grads.get(t);
    if (!g) {
      noGrad(() => consumed(t));
      continue;
    }
    grads.delete(t);
    // recording stays off for the node's work, and only for it (the pass may pause between nodes)
    noGrad(() => step(t, g));
    yield;
  }
}

/**
 * Backpropagate from `root`. A scalar root needs no seed; otherwise pass `grad` of root's shape.
 * Leaf tensors with requiresGrad receive (accumulate into) `.grad`.
 */
export function backward(root: Tensor, grad?: Tensor, opts: BackwardOptions = {}): void {
  for (const _ of backwardSteps(root, grad, opts));
}

/**
 * backward() that pauses between nodes whenever `pause()` says so and awaits `release()` there: on a
 * device, the memory of tensors the pass has let go of comes back only after the running job ends (a
 * WeakRef made during a job keeps its target alive until then, and finalizers run as separate tasks),
 * so a long synchronous backward holds every temporary it made. src/tensor/memory.ts has the pair the
 * trainer uses through backwardReleasing (device memory above a share of the card → collect and yield a macrotask).
 */
export async function backwardAsync(root: Tensor, pause: () => boolean, release: () => Promise<void>, grad?: Tensor, opts: BackwardOptions = {}): Promise<void> {
  for (const _ of backwardSteps(root, grad, opts)) if (pause()) await release();
}

function onesLike(t: Tensor): Tensor {
  const o = new Tensor(t.backend.alloc(t.dtype, t.numel), t.shape);
  t.backend.fill(o, 1);
  return o;
}
