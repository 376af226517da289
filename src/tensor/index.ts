// The tensor runtime's public surface. Importing it registers the CPU backend.
import '../backend/cpu/index.js';

export * from './dtype.js';
export * from './tensor.js';
export * from './backend.js';
export * from './autograd.js';
export * from './random.js';
export * from './ops/shape.js';
export * from './ops/view.js';
export * from './ops/elementwise.js';
export * from './ops/reduce.js';
export * from './ops/matmul.js';
export * from './ops/softmax.js';
export * from './gradcheck.js';
export * from './ops/norm.js';
export * from './ops/rope.js';
export * from './ops/hadamard.js';
export * from './ops/topk.js';
export * from './ops/indexing.js';
export * from './ops/loss.js';
export * from './ops/quant.js';
export * from './ops/dsa-indexer.js';
export * from './ops/sparse-mla.js';
export * from './ops/moe.js';
export * from './ops/fp8-linear.js';
export * from './safetensors.js';
export * from './module.js';
