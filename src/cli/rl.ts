// `dsv32 rl --config FILE`: GRPO post-training with the paper's stabilizers (src/rl/trainer.ts; docs/rl.md):
// rollouts on the in-process engine over an environment, minibatch updates, a JSONL log at <out>/rl.jsonl,
// checkpoints under <out>. Run it again with the same config to resume from <out>/latest.
import { type Command, Option } from 'commander';
import { intArg } from './args.js';
import { progress } from './progress.js';
import { loadRlConfig } from '../rl/config.js';
import { rlTrain } from '../rl/trainer.js';

export function register(program: Command): void {
  program
    .command('rl')
    .description('GRPO RL on an environment (unbiased KL, OPSM, Keep Routing, Keep Sampling Mask); resumes from <out>/latest')
    .requiredOption('--config <file>', 'RL config JSON (model, env, n_samples_per_prompt, tasks_per_step, lr, ...; see docs/rl.md)')
    .option('--steps <n>', "override the config's total steps", intArg('--steps', 1))
    .option('--out <dir>', "override the config's output directory")
    .option('--max-seconds <s>', 'checkpoint and stop after the step that spends this much wall time (run again to resume)', intArg('--max-seconds', 1))
    .addOption(new Option('--device <name>', "override the config's device (auto: cuda when a GPU is usable, else cpu)").choices(['auto', 'cpu', 'cuda']))
    .option('--no-progress', 'no progress bar')
    .action(async (o: { config: string; steps?: number; out?: string; maxSeconds?: number; device?: 'auto' | 'cpu' | 'cuda'; progress: boolean }) => {
      const cfg = loadRlConfig(o.config);
      if (o.steps !== undefined) cfg.steps = o.steps;
      if (o.out !== undefined) cfg.out = o.out;
      if (o.maxSeconds !== undefined) cfg.max_seconds = o.maxSeconds;
      if (o.device !== undefined) cfg.device = o.device;
      let bar: ReturnType<typeof progress> | null = null;
      const r = await rlTrain(cfg, {
        onStart: (i) => {
          bar = progress('rl', i.steps, { enabled: o.progress });
          bar.update(i.startStep);
          bar.line(`rl: ${(i.params / 1e6).toFixed(2)} M trainable parameters on ${i.device}, ${i.tasks} tasks, G = ${cfg.n_samples_per_prompt}; ${i.startStep ? `resuming at step ${i.startStep}` : 'from step 0'} of ${i.steps}`, 'stderr');
        },
        onStep: (l) => bar?.update(l.step, `reward ${l.reward.toFixed(3)} · pass ${(100 * l.pass_rate).toFixed(0)}% · kl ${l.kl.toExponential(2)} · masked ${(100 * l.opsm_masked_fraction).toFixed(0)}%`),
        onCheckpoint: (dir) => bar?.line(`checkpoint ${dir}`, 'stderr'),
        onEval: (e) => bar?.line(`eval at step ${e.step}: pass@1 ${(100 * e.pass_at_1).toFixed(1)}%, pass@${e.samples} ${(100 * e.pass_at_k).toFixed(1)}% over ${e.tasks} tasks, reward ${e.reward.toFixed(3)} (${e.seconds.toFixed(0)} s)`, 'stderr'),
      });
      (bar as ReturnType<typeof progress> | null)?.stop();
      process.stdout.write(`${r.done ? 'done' : 'stopped'} at step ${r.step}/${cfg.steps}${r.checkpoint ? `; checkpoint ${r.checkpoint}` : ''}\n`);
    });
}
