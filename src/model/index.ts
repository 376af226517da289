// Public surface of the DeepSeek-V3.2 model.
export { ConfigError, type ModelConfig, type HfConfig, parseConfig, loadConfig } from './config.js';
export { type Numerics, actDtype } from './numerics.js';
export { WeightError, ModelWeights, type WeightSource, type LinearWeight, mapSource, expectedTensors, dequantize } from './weights.js';
export { LayerCache, ModelCache, CachePool, PAGE, stepLayout, slotOf, type StepLayout, type ChunkGroup, type LayoutOptions } from './cache.js';
export { type RaggedBatch, type SequenceChunk, BatchError, checkBatch, lastRows } from './batch.js';
export { Gate, RouteError, type Routing } from './gate.js';
export { MoE } from './moe.js';
export { Mlp } from './mlp.js';
export { Indexer, ForcedSelectionError, type Selection, type IndexerOptions, type IndexerQK, selectionIndices } from './indexer.js';
export { MLA, type AttentionMode, type AttentionStep } from './mla.js';
export { DecoderLayer } from './decoder-layer.js';
export { MtpModule, type MtpOutput } from './mtp.js';
export { DeepseekV32, TokenError, checkTokens, type ForwardOptions, type ForwardResult, type StepOptions, type StepResult } from './model.js';
export { DecodeGraphs, type DecodeGraphOptions, type DecodeGraphStats, type DecodeRunner, type CapturedGraph, type GraphCapture, decodeBuckets, deviceCapture } from './decode-graph.js';
export { RotaryTables, yarnFrequencies } from './rope.js';
export { QUANT_BLOCK } from './fp8.js';
export { applyLinear } from './fp8-linear.js';
export { randomCheckpoint, type RandomConfigOverrides, randomConfig } from './random-weights.js';
