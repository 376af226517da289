// The model's weights resident on one device, for the device-generic forward (device-forward.ts).
//
// Every tensor the main model uses (MTP layers excluded) is uploaded once, when the DeviceWeights is
// built. Dense weights keep their exact f32 values. FP8 linear weights are dequantised on the device
// with weightDequant: W[i, j] = w8[i, j] · scale_inv[i/128, j/128], the reference's weight_dequant in
// f32. The forward then multiplies the round-tripped activation by that W (see DeviceLinear), which is
// the reference's fp8_gemm up to the summation order of the f32 accumulation.
import { getBackend } from '../tensor/backend.js';
import { Tensor, fromArray, fromBits } from '../tensor/tensor.js';
import { weightDequant } from '../tensor/ops/quant.js';
import { linear } from '../tensor/ops/matmul.js';
import { contiguous, narrow, reshape } from '../tensor/ops/view.js';
import { actDequant, actQuant } from '../tensor/ops/quant.js';
import { FP8_BLOCK, expectedTensors, WeightError, type ModelWeights } from './weights.js';
import type { ModelConfig } from './config.js';

/** A linear layer's weight on the device: dense f32 [out, in]; `fp8` marks a dequantised FP8 weight. */
export interface DeviceLinear {
  name: string;
  w: Tensor;
  fp8: boolean;
}

/** A copy of t on `device` (t itself when it is already there). */
export function toDevice(t: Tensor, device: string): Tensor {
  if (t.device === device) return t;
  return fromBits(t.toHost(), t.dtype, t.shape, { device });
}

/** The layer index of a `model.layers.N.…` name, or −1. */
function layerOf(name: string): number {
  const m = /^model\.layers\.(\d+)\./.exec(name);
  return m ? Number(m[1]) : -1;
}

export class DeviceWeights {
  private readonly floats = new Map<string, Tensor>();
  private readonly linears = new Map<string, DeviceLinear>();
  private readonly absorbed = new Map<string, { uk: Tensor; uv: Tensor }>();

  /** Upload every main-model tensor of `weights` to `device` (throws the backend's error if it is unusable). */
  constructor(readonly cfg: ModelConfig, readonly host: ModelWeights, readonly device: string) {
    getBackend(device);
    for (const spec of expectedTensors(cfg)) {
      if (layerOf(spec.name) >= cfg.nLayers) continue; // MTP layers: not part of this forward
      if (!host.has(spec.name)) continue; // optional tensors the checkpoint does not hold
      if (spec.role === 'linear') this.loadLinear(spec.name);
      else this.floats.set(spec.name, toDevice(host.float(spec.name), device));
    }
  }

  private loadLinear(name: string): void {
    const lw = this.host.linear(name);
    if (lw.kind === 'dense') {
      this.linears.set(name, { name, w: toDevice(lw.w, this.device), fp8: false });
      return;
    }
    this.linears.set(name, { name, w: weightDequant(toDevice(lw.w8, this.device), toDevice(lw.scale, this.device), FP8_BLOCK), fp8: true });
  }

  has(name: string): boolean {
    return this.floats.has(name);
  }

  float(name: string): Tensor {
    const t = this.floats.get(name);
    if (!t) throw new WeightError(`device weights (${this.device}): no float tensor '${name}' was uploaded`);
    return t;
  }

  /**
   * wkv_b [H·(nope+dv), c] split per head for the absorbed (MQA) attention: W_UK [H, nope, c] and
   * W_UV [H, dv, c], contiguous on the device, made once per layer.
   */
  absorbedKvB(name: string, H: number, nope: number, dv: number, c: number): { uk: Tensor; uv: Tensor } {
    let a = this.absorbed.get(name);
    if (!a) {
      const w = reshape(this.linear(name).w, [H, nope + dv, c]);
      a = { uk: contiguous(narrow(w, 1, 0, nope)), uv: contiguous(narrow(w, 1, nope, dv)) };
      this.absorbed.set(name, a);
    }
    return a;
  }

  linear(name: string): DeviceLinear {
    const l = this.linears.get(name);
    if (!l) throw new WeightError(`device weights (${this.device}): no linear weight '${name}' was uploaded`);
    return l;
  }
}

/**
 * y = x·Wᵀ (f32). For an FP8 weight the input first takes the reference's act_quant round trip per
 * 128-block of the last dim (e4m3 values times their scale, exact in f32 for ue8m0 power-of-two
 * scales), so each product is the one fp8_gemm forms; only the f32 summation order differs.
 */
export function applyDeviceLinear(x: Tensor, lw: DeviceLinear, ue8m0: boolean): Tensor {
  if (!lw.fp8) return linear(x, lw.w);
  const { q, s } = actQuant(x, FP8_BLOCK, { ue8m0 });
  return linear(actDequant(q, s, FP8_BLOCK), lw.w);
}
