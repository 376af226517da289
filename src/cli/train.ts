// `dsv32 train pretrain|dsa|sft --config FILE`: the training loop (src/train/trainer.ts) with a progress
// bar on stderr (when it is a terminal), a JSONL log at <out>/train.jsonl and checkpoints under <out>
// (Hugging Face layout, shards ≤ 16 MB). Run it again with the same config to resume from the latest
// checkpoint: a killed or time-limited run (config maxSeconds) continues exactly where it stopped.
// Under `dsv32 launch --gpus N` it trains data-parallel (src/train/trainer.ts), data.batchSize being the
// global batch.
import { Command, InvalidArgumentError, Option } from 'commander';
import { intArg } from './args.js';
import { progress } from './progress.js';
import { STAGES, type Stage, loadTrainConfig } from '../train/config.js';
import { train } from '../train/trainer.js';

function stageArg(v: string): Stage {
  if (!(STAGES as readonly string[]).includes(v)) throw new InvalidArgumentError(`stage must be one of ${STAGES.join(', ')}, got "${v}"`);
  return v as Stage;
}

export function register(program: Command): void {
  program
    .command('train')
    .description('train a DeepSeek-V3.2-architecture model: pretrain (dense), dsa (indexer warm-up, then sparse), sft; resumes from <out>/latest')
    .argument('<stage>', `training stage: ${STAGES.join(' | ')}`, stageArg)
    .requiredOption('--config <file>', 'training config JSON (model, data, steps, optim, schedule, out, ...; see src/train/config.ts)')
    .option('--steps <n>', 'override the config\'s total steps', intArg('--steps', 1))
    .option('--out <dir>', 'override the config\'s output directory')
    .addOption(new Option('--device <name>', 'override the config\'s device (auto: cuda when a GPU is usable, else cpu)').choices(['auto', 'cpu', 'cuda']))
    .option('--no-progress', 'no progress bar')
    .action(async (stage: Stage, o: { config: string; steps?: number; out?: string; device?: 'auto' | 'cpu' | 'cuda'; progress: boolean }) => {
      const cfg = loadTrainConfig(o.config);
      if (o.steps !== undefined) cfg.steps = o.steps;
      if (o.out !== undefined) cfg.out = o.out;
      if (o.device !== undefined) cfg.device = o.device;
      let bar: ReturnType<typeof progress> | null = null;
      const r = await train(stage, cfg, {
        onStart: (i) => {
          // under dsv32 launch every rank runs this; rank 0 speaks for them (the others' numbers are the same)
          if (i.rank !== 0) return;
          bar = progress(`train ${stage}`, i.steps, { enabled: o.progress });
          bar.update(i.startStep);
          const dp = i.worldSize > 1 ? `, data-parallel over ${i.worldSize} ranks (${cfg.data.batchSize / i.worldSize} rows each)` : '';
          bar.line(`${stage}: ${(i.params / 1e6).toFixed(2)} M trainable parameters on ${i.device}, ${i.rows} rows of ${cfg.data.seqLen} tokens${dp}; ${i.startStep ? `resuming at step ${i.startStep}` : 'from step 0'} of ${i.steps}`, 'stderr');
        },
        onStep: (l) => bar?.update(l.step, `${l.phase} loss ${l.loss.toFixed(4)} · ${l.tokens_per_s.toFixed(0)} tok/s`),
        onCheckpoint: (dir) => bar?.line(`checkpoint ${dir}`, 'stderr'),
        onEval: (e) => bar?.line(`eval at step ${e.step}: held-out LM loss ${e.val_lm?.toFixed(4) ?? '-'}, indexer KL ${e.val_indexer?.toFixed(4) ?? '-'}`, 'stderr'),
      });
      (bar as ReturnType<typeof progress> | null)?.stop();
      process.stdout.write(`${r.done ? 'done' : 'stopped'} at step ${r.step}/${cfg.steps}${r.checkpoint ? `; checkpoint ${r.checkpoint}` : ''}${r.done ? '' : ' (run the same command again to resume)'}\n`);
    });
}
