// The RL (GRPO post-training, issue 14) public surface: one module per concept, see ../shared/docs/rl.md.
export * from './keep-sampling-mask.js';
export * from './keep-routing.js';
export * from './indexer-replay.js';
export * from './grpo.js';
export * from './kl.js';
export * from './opsm.js';
export * from './policy-loss.js';
export * from './is-correction.js';
export { type RolloutRecord, type RlBatch, RolloutRecordError, checkRolloutRecord, collateRollouts, overlayRoutes } from './batch.js';
export * from './rewards.js';
export * from './rollout.js';
export * from './config.js';
export * from './trainer.js';
