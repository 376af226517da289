// dsv32 library entry point. The tensor runtime is exported flat (Tensor, ops, autograd, safetensors);
// the other layers as namespaces: `model`, `chat`, `agent`, `envs`, `train`.
// Importing this module registers the 'cpu' backend and, lazily, 'cuda' (the driver is only touched
// when a tensor is first created on 'cuda'; without one that raises CudaUnavailableError).
import './backend/cuda/index.js';

export * from './tensor/index.js';
export { DsvError } from './errors.js';
export { cudaUnavailableReason, CudaUnavailableError } from './backend/cuda/index.js';
export * as model from './model/index.js';
export * as chat from './chat/index.js';
export * as agent from './agent/index.js';
export * as envs from './envs/index.js';
export * as train from './train/index.js';
