// Training utilities: AdamW, gradient clipping, learning-rate schedules.
export * from './optim.js';
export * from './clip.js';
export * from './schedule.js';
