// Checkpoint weights: the expected tensor list derived from the config (Hugging Face names), checked
// name by name against the checkpoint header when it is opened, then read lazily on first use.
//
// Storage kinds (fixtures/README.md "model.safetensors"):
//  - linear weights ("*"): BF16 (F16/F32 accepted), or F8_E4M3 with `<name>_scale_inv` F32
//    [ceil(out/128), ceil(in/128)] where W[i, j] = w8[i, j] · scale_inv[i/128, j/128];
//  - norms, gate weight, weights_proj, embeddings, lm_head: BF16 or F32 (used as exact f32 values);
//  - the gate's e_score_correction_bias: F32 (BF16 accepted).
import { DsvError } from '../errors.js';
import { type DType } from '../tensor/dtype.js';
import { Tensor, fmtShape, fromBits, getDefaultDevice } from '../tensor/tensor.js';
import { getBackend } from '../tensor/backend.js';
import { cast, contiguous, narrow } from '../tensor/ops/view.js';
import { weightDequant } from '../tensor/ops/quant.js';
import type { ModelConfig } from './config.js';
import { checkShardable, type ModelShard, shardRangeOf, type ShardRange, WHOLE } from './parallel.js';

export class WeightError extends DsvError {}

export const FP8_BLOCK = 128;

/** A linear layer's weight as loaded: exact f32 values, or FP8 values with block scales. */
export type LinearWeight =
  | { kind: 'dense'; name: string; out: number; in: number; w: Tensor }
  | {
      kind: 'fp8';
      name: string;
      out: number;
      in: number;
      /** e4m3 codes [out, in] */
      w8: Tensor;
      /** scale_inv f32 [ceil(out/128), ceil(in/128)] */
      scale: Tensor;
    };

type Role = 'linear' | 'float' | 'bias';
interface Spec {
  name: string;
  shape: number[];
  role: Role;
  optional?: boolean;
}

/** Anything that lists tensors with dtype/shape and reads them: a Checkpoint, or an in-memory map. */
export interface WeightSource {
  readonly path: string;
  keys(): string[];
  has(name: string): boolean;
  info(name: string): { dtype: DType; shape: number[] };
  tensor(name: string): Tensor;
}

/** An in-memory WeightSource (random initialisation, tests). */
export function mapSource(tensors: Map<string, Tensor>, path = '<memory>'): WeightSource {
  return {
    path,
    keys: () => [...tensors.keys()],
    has: (n) => tensors.has(n),
    info: (n) => {
      const t = tensors.get(n);
      if (!t) throw new WeightError(`${path}: no tensor named '${n}'`);
      return { dtype: t.dtype, shape: [...t.shape] };
    },
    tensor: (n) => {
      const t = tensors.get(n);
      if (!t) throw new WeightError(`${path}: no tensor named '${n}'`);
      return t;
    },
  };
}

export function layerPrefix(layer: number): string {
  return `model.layers.${layer}`;
}

function decoderLayerSpecs(cfg: ModelConfig, layer: number, moe: boolean): Spec[] {
  const p = layerPrefix(layer);
  const a = `${p}.self_attn`;
  const H = cfg.nHeads;
  const s: Spec[] = [
    { name: `${p}.input_layernorm.weight`, shape: [cfg.dim], role: 'float' },
    { name: `${p}.post_attention_layernorm.weight`, shape: [cfg.dim], role: 'float' },
    { name: `${a}.q_a_proj.weight`, shape: [cfg.qLoraRank, cfg.dim], role: 'linear' },
    { name: `${a}.q_a_layernorm.weight`, shape: [cfg.qLoraRank], role: 'float' },
    { name: `${a}.q_b_proj.weight`, shape: [H * cfg.qkHeadDim, cfg.qLoraRank], role: 'linear' },
    { name: `${a}.kv_a_proj_with_mqa.weight`, shape: [cfg.kvLoraRank + cfg.qkRopeHeadDim, cfg.dim], role: 'linear' },
    { name: `${a}.kv_a_layernorm.weight`, shape: [cfg.kvLoraRank], role: 'float' },
    { name: `${a}.kv_b_proj.weight`, shape: [H * (cfg.qkNopeHeadDim + cfg.vHeadDim), cfg.kvLoraRank], role: 'linear' },
    { name: `${a}.o_proj.weight`, shape: [cfg.dim, H * cfg.vHeadDim], role: 'linear' },
    { name: `${a}.indexer.wq_b.weight`, shape: [cfg.indexNHeads * cfg.indexHeadDim, cfg.qLoraRank], role: 'linear' },
    { name: `${a}.indexer.wk.weight`, shape: [cfg.indexHeadDim, cfg.dim], role: 'linear' },
    { name: `${a}.indexer.k_norm.weight`, shape: [cfg.indexHeadDim], role: 'float' },
    { name: `${a}.indexer.k_norm.bias`, shape: [cfg.indexHeadDim], role: 'float' },
    { name: `${a}.indexer.weights_proj.weight`, shape: [cfg.indexNHeads, cfg.dim], role: 'float' },
  ];
  const mlp = (q: string, inter: number): Spec[] => [
    { name: `${q}.gate_proj.weight`, shape: [inter, cfg.dim], role: 'linear' },
    { name: `${q}.up_proj.weight`, shape: [inter, cfg.dim], role: 'linear' },
    { name: `${q}.down_proj.weight`, shape: [cfg.dim, inter], role: 'linear' },
  ];
  if (!moe) return [...s, ...mlp(`${p}.mlp`, cfg.interDim)];
  s.push({ name: `${p}.mlp.gate.weight`, shape: [cfg.nRoutedExperts, cfg.dim], role: 'float' });
  // noaux_tc routes with a selection bias; the other methods have none
  s.push({ name: `${p}.mlp.gate.e_score_correction_bias`, shape: [cfg.nRoutedExperts], role: 'bias', optional: true });
  for (let e = 0; e < cfg.nRoutedExperts; e++) s.push(...mlp(`${p}.mlp.experts.${e}`, cfg.moeInterDim));
  if (cfg.nSharedExperts > 0) s.push(...mlp(`${p}.mlp.shared_experts`, cfg.nSharedExperts * cfg.moeInterDim));
  return s;
}

/** Every tensor the config calls for (optional ones flagged). */
export function expectedTensors(cfg: ModelConfig): Spec[] {
  const s: Spec[] = [
    { name: 'model.embed_tokens.weight', shape: [cfg.vocabSize, cfg.dim], role: 'float' },
    { name: 'model.norm.weight', shape: [cfg.dim], role: 'float' },
    { name: 'lm_head.weight', shape: [cfg.vocabSize, cfg.dim], role: 'float' },
  ];
  for (let l = 0; l < cfg.nLayers; l++) s.push(...decoderLayerSpecs(cfg, l, l >= cfg.nDenseLayers));
  for (let m = 0; m < cfg.nMtpLayers; m++) {
    const l = cfg.nLayers + m;
    const p = layerPrefix(l);
    s.push(...decoderLayerSpecs(cfg, l, true));
    s.push(
      { name: `${p}.eh_proj.weight`, shape: [cfg.dim, 2 * cfg.dim], role: 'linear' },
      { name: `${p}.enorm.weight`, shape: [cfg.dim], role: 'float' },
      { name: `${p}.hnorm.weight`, shape: [cfg.dim], role: 'float' },
      { name: `${p}.shared_head.norm.weight`, shape: [cfg.dim], role: 'float' },
      // DeepSeek checkpoints repeat the embedding and the head inside the MTP layer; when absent the
      // main model's are shared
      { name: `${p}.shared_head.head.weight`, shape: [cfg.vocabSize, cfg.dim], role: 'float', optional: true },
      { name: `${p}.embed_tokens.weight`, shape: [cfg.vocabSize, cfg.dim], role: 'float', optional: true },
    );
  }
  return s;
}

const DENSE_DTYPES: readonly DType[] = ['bf16', 'f16', 'f32'];

export interface WeightOptions {
  /**
   * Training: hold every dense weight as an owned copy in this dtype (the master weights: 'f32', or
   * 'f64' for gradient checks) that an optimizer may update in place. Default: inference (f32 values,
   * possibly sharing the source's memory).
   */
  master?: 'f32' | 'f64';
  /**
   * Tensor-parallel inference (parallel.ts): hold only this rank's share of the split tensors and of the
   * routed experts. Default: the whole model.
   */
  shard?: ModelShard;
}

/** A trainable tensor of the model: its checkpoint name and the live master weight. */
export type NamedParameter = [name: string, weight: Tensor];

function ceilDiv(a: number, b: number): number {
  return Math.ceil(a / b);
}

/**
 * The model's weights over a source. `open` validates every expected tensor's presence, shape and
 * dtype (and rejects tensors the config does not account for); reads happen on first access and are
 * cached as f32 (exact: bf16/f16/e4m3 values are all representable in f32).
 */
export class ModelWeights {
  private readonly specs = new Map<string, Spec>();
  private readonly cache = new Map<string, Tensor | LinearWeight>();

  /** The device every weight is placed on when first read (CUDA uploads go through pinned staging). */
  readonly device: string;
  /** dtype of the dense weights' values: 'f32' for inference (bf16 matrices stay bf16 on a backend that keepsBf16Weights), the master dtype when training */
  readonly dtype: 'f32' | 'f64';
  private readonly owned: boolean;
  /**
   * Bumped by update() after the weights change in place (an optimizer step). Tensors derived from
   * weights and cached for inference (the stacked experts of moe.ts, the absorbed wkv_b of mla.ts)
   * remember the generation they were built at and rebuild when it moved.
   */
  generation = 0;
  /** the share of the model these weights hold (parallel.ts); rank 0 of 1 for the whole model */
  readonly shard: ModelShard;

  private constructor(readonly cfg: ModelConfig, readonly source: WeightSource, device?: string, opts: WeightOptions = {}) {
    this.device = device ?? getDefaultDevice();
    getBackend(this.device); // an unknown or unavailable device fails here, before any read
    this.dtype = opts.master ?? 'f32';
    this.owned = opts.master !== undefined;
    this.shard = opts.shard ?? WHOLE;
    checkShardable(cfg, this.shard.worldSize);
    if (this.shard.worldSize > 1 && this.owned) throw new WeightError(`${source.path}: training needs the whole model; tensor-parallel shards are for inference (data-parallel training holds the whole model on every rank)`);
  }

  static open(cfg: ModelConfig, source: WeightSource, device?: string, opts: WeightOptions = {}): ModelWeights {
    const w = new ModelWeights(cfg, source, device, opts);
    w.validate();
    return w;
  }

  /** Record that the weights were changed in place (see `generation`). */
  update(): void {
    this.generation++;
  }

  /**
   * The trainable weights in checkpoint order, each read now as an owned master copy with requiresGrad
   * set (opened with `master`). Excluded: the gate's e_score_correction_bias (the reference steers it by
   * load, not by gradient: it only biases the discrete choice, which has no gradient). FP8 linears are
   * dequantised into the master dtype when read for training (linear()). `keep`
   * narrows the set (e.g. the indexer's weights only, for the dense warm-up).
   */
  parameters(keep: (name: string) => boolean = () => true): NamedParameter[] {
    this.requireWhole('parameters()');
    if (!this.owned) throw new WeightError(`${this.source.path}: parameters() needs weights opened for training (ModelWeights.open(..., { master: 'f32' }))`);
    const out: NamedParameter[] = [];
    for (const spec of this.specs.values()) {
      if (spec.role === 'bias' || !this.source.has(spec.name) || !keep(spec.name)) continue;
      let t: Tensor;
      if (spec.role === 'linear') {
        const lw = this.linear(spec.name);
        if (lw.kind === 'fp8') throw new WeightError(`${this.source.path}: '${spec.name}' is FP8 in a model opened for training (linear() dequantises it)`);
        t = lw.w;
      } else t = this.float(spec.name);
      t.requiresGrad = true;
      out.push([spec.name, t]);
    }
    return out;
  }

  /** Every dense weight by checkpoint name (current values; the gate bias included): what a checkpoint saves. */
  stateTensors(): Map<string, Tensor> {
    this.requireWhole('stateTensors() (a checkpoint)');
    const out = new Map<string, Tensor>();
    for (const spec of this.specs.values()) {
      if (!this.source.has(spec.name)) continue;
      if (spec.role === 'linear') {
        const lw = this.linear(spec.name);
        if (lw.kind === 'fp8') {
          out.set(spec.name, lw.w8);
          out.set(`${spec.name}_scale_inv`, lw.scale);
        } else out.set(spec.name, lw.w);
      } else out.set(spec.name, this.float(spec.name));
    }
    return out;
  }

  /** Throws unless these weights are the whole model (what needs every tensor: training, saving). */
  requireWhole(what: string): void {
    if (this.shard.worldSize > 1) throw new WeightError(`${this.source.path}: ${what} needs the whole model; these weights are rank ${this.shard.rank}'s share of ${this.shard.worldSize}`);
  }

  /** raw → dtype: an owned copy when training (in-place updates must not write into the source). */
  private value(raw: Tensor): Tensor {
    if (!this.owned) return cast(raw, this.dtype);
    const out = new Tensor(raw.backend.alloc(this.dtype, raw.numel), [...raw.shape]);
    raw.backend.copy(out, raw);
    return out;
  }

  private validate(): void {
    const src = this.source;
    const where = src.path;
    const accounted = new Set<string>();
    for (const spec of expectedTensors(this.cfg)) {
      this.specs.set(spec.name, spec);
      if (!src.has(spec.name)) {
        if (spec.optional) continue;
        throw new WeightError(`${where}: missing tensor '${spec.name}' (expected shape ${fmtShape(spec.shape)})`);
      }
      accounted.add(spec.name);
      const info = src.info(spec.name);
      if (info.shape.length !== spec.shape.length || info.shape.some((d, i) => d !== spec.shape[i])) {
        throw new WeightError(`${where}: tensor '${spec.name}' has shape ${fmtShape(info.shape)}, expected ${fmtShape(spec.shape)} from the config`);
      }
      if (spec.role === 'linear' && info.dtype === 'f8e4m3') {
        if (!this.cfg.fp8Weights) {
          throw new WeightError(`${where}: tensor '${spec.name}' is F8_E4M3 but config.json has no quantization_config`);
        }
        this.fp8Share(spec);
        const sn = `${spec.name}_scale_inv`;
        if (!src.has(sn)) throw new WeightError(`${where}: FP8 tensor '${spec.name}' has no block scales '${sn}'`);
        accounted.add(sn);
        const si = src.info(sn);
        const want = [ceilDiv(spec.shape[0]!, FP8_BLOCK), ceilDiv(spec.shape[1]!, FP8_BLOCK)];
        if (si.dtype !== 'f32') throw new WeightError(`${where}: tensor '${sn}' has dtype ${si.dtype}, expected f32 (F32)`);
        if (si.shape.length !== 2 || si.shape[0] !== want[0] || si.shape[1] !== want[1]) {
          throw new WeightError(`${where}: tensor '${sn}' has shape ${fmtShape(si.shape)}, expected ${fmtShape(want)} (128×128 blocks of ${fmtShape(spec.shape)})`);
        }
      } else if (spec.role === 'bias') {
        if (info.dtype !== 'f32' && info.dtype !== 'bf16') throw new WeightError(`${where}: tensor '${spec.name}' has dtype ${info.dtype}, expected f32`);
      } else if (!DENSE_DTYPES.includes(info.dtype)) {
        throw new WeightError(`${where}: tensor '${spec.name}' has dtype ${info.dtype}, expected one of ${DENSE_DTYPES.join(', ')}${spec.role === 'linear' ? ' or f8e4m3 (FP8 with _scale_inv)' : ''}`);
      }
    }
    for (const k of src.keys()) {
      if (!accounted.has(k)) {
        throw new WeightError(`${where}: unexpected tensor '${k}' (not part of the model described by config.json: wrong config, or another model's checkpoint)`);
      }
    }
  }

  has(name: string): boolean {
    return this.specs.has(name) && this.source.has(name);
  }

  private spec(name: string): Spec {
    const s = this.specs.get(name);
    if (!s) throw new WeightError(`internal: tensor '${name}' is not part of the model's expected tensors`);
    return s;
  }

  /**
   * Every rank's share of an FP8 linear must start on a 128 boundary (a block scale cannot straddle two
   * ranks): the shares, rank·len, all do exactly when len does. Checked on every rank alike.
   */
  private fp8Share(spec: Spec): void {
    const r = shardRangeOf(spec.name, spec.shape, this.cfg, this.shard);
    if (r && r !== 'absent' && r.len % FP8_BLOCK !== 0) {
      throw new WeightError(`${this.source.path}: '${spec.name}' is FP8 with ${FP8_BLOCK}×${FP8_BLOCK} block scales, and ${this.shard.worldSize} ranks split its ${r.dim === 0 ? 'rows' : 'columns'} ` +
        `into shares of ${r.len}, not a multiple of ${FP8_BLOCK}: a scale block would straddle two ranks; use fewer ranks or a bf16 checkpoint`);
    }
  }

  /** This rank's share of checkpoint tensor `spec` (null: held whole); throws for another rank's routed expert. */
  private range(spec: Spec): ShardRange | null {
    const r = shardRangeOf(spec.name, spec.shape, this.cfg, this.shard);
    if (r === 'absent') throw new WeightError(`internal: '${spec.name}' is a routed expert of another rank (this is rank ${this.shard.rank} of ${this.shard.worldSize})`);
    return r;
  }

  /** The stored tensor (this rank's range of it), moved to the weights' device with its bits unchanged. */
  private read(name: string, range: ShardRange | null = null): Tensor {
    try {
      let t = this.source.tensor(name);
      if (range) t = contiguous(narrow(t, range.dim, range.start, range.len));
      return t.device === this.device ? t : fromBits(t.toHost(), t.dtype, t.shape, { device: this.device });
    } catch (e) {
      if (e instanceof DsvError) throw new WeightError(`${this.source.path}: cannot read tensor '${name}': ${e.message}`, { cause: e });
      throw e;
    }
  }

  /** A non-linear tensor (norm weight, embedding, gate, bias...) as exact f32 (master dtype) values. */
  float(name: string): Tensor {
    const c = this.cache.get(name);
    if (c) return c as Tensor;
    const t = this.value(this.read(name, this.range(this.spec(name))));
    checkFinite(t, name, this.source.path);
    this.cache.set(name, t);
    return t;
  }

  /** A linear layer's weight (dense f32 or FP8 blocks). */
  linear(name: string): LinearWeight {
    const c = this.cache.get(name);
    if (c) return c as LinearWeight;
    const spec = this.spec(name);
    const range = this.range(spec);
    const [out, inF] = spec.shape.map((d, i) => (range?.dim === i ? range.len : d)) as [number, number];
    const raw = this.read(name, range);
    let lw: LinearWeight;
    if (raw.dtype === 'f8e4m3') {
      // the blocks of this rank's share: its start is a block boundary; a partial last block comes along
      const sr = range && { dim: range.dim, start: range.start / FP8_BLOCK, len: ceilDiv(range.start + range.len, FP8_BLOCK) - range.start / FP8_BLOCK };
      const scale = cast(this.read(`${name}_scale_inv`, sr), 'f32');
      checkFinite(scale, `${name}_scale_inv`, this.source.path);
      lw = { kind: 'fp8', name, out, in: inF, w8: raw, scale };
      // training: the master copy is the dequantised matrix (e4m3 code × its block's scale is exact in
      // f32), so an FP8 checkpoint — the shipped dsv32-mini — can be trained on (RL, fine-tuning)
      if (this.owned) lw = { kind: 'dense', name, out, in: inF, w: this.value(dequantize(lw)) };
    } else {
      // a bf16 matrix stays bf16 for inference where the backend keeps it so (#12: the CUDA GEMMs read it as
      // stored; an f32-numerics product widens it exactly); training's masters are always f32/f64
      const w = !this.owned && raw.dtype === 'bf16' && getBackend(this.device).keepsBf16Weights ? raw : this.value(raw);
      checkFinite(w, name, this.source.path);
      lw = { kind: 'dense', name, out, in: inF, w };
    }
    this.cache.set(name, lw);
    return lw;
  }
}

function checkFinite(t: Tensor, name: string, where: string): void {
  const v = t.toFloat32();
  for (let i = 0; i < v.length; i++) {
    if (!Number.isFinite(v[i]!)) throw new WeightError(`${where}: tensor '${name}' holds a non-finite value (${v[i]}) at flat index ${i}: the checkpoint is corrupt`);
  }
}

/** The dense f32 matrix [out, in] of a linear weight (FP8 dequantised blockwise: w8 · scale_inv, exact). */
export function dequantize(lw: LinearWeight): Tensor {
  return lw.kind === 'dense' ? lw.w : weightDequant(lw.w8, lw.scale, FP8_BLOCK);
}
