export { LLMEngine, EngineClosedError, type EngineModel, type EngineOptions } from './engine.js';
export { BLOCK_TOKENS, BlockPool, BlockPoolError, blockHash } from './block-pool.js';
export { Scheduler, type ScheduledChunk, type SchedulerLimits } from './scheduler.js';
export { Sequence } from './sequence.js';
export { type Distribution, type FilterParams, type Sampled, SamplerError, distribution, drawFrom, logprobs, sampleRow, packMasks } from './sampler.js';
export { verifyDrafts, type Verified } from './speculative.js';
export { StopChecker, type Detokenize, type StopRule, type StopResult } from './stop.js';
export * from './types.js';
export { BroadcastModel, followSteps, encodeStep, decodeStep, encodePool, decodePool, StepBroadcastError, type BroadcastStepOptions, type FollowOptions, type FollowSummary, type StepModel } from './step-broadcast.js';
