// `dsv32 quantize --model DIR --out DIR`: a trained (f32/bf16) checkpoint → DeepSeek-V3.2's FP8 layout
// (src/model/quantize.ts), in shards of at most --shard-mb MB, with its tokenizer beside it.
import { Command } from 'commander';
import { intArg } from './args.js';
import { quantizeCheckpoint } from '../model/quantize.js';

export function register(program: Command): void {
  program
    .command('quantize')
    .description('write a checkpoint\'s linear weights as FP8 e4m3 with 128×128 ue8m0 block scales (DeepSeek-V3.2\'s layout), the rest bf16')
    .requiredOption('--model <dir>', 'source checkpoint (config.json + safetensors, f32 or bf16)')
    .requiredOption('--out <dir>', 'output directory')
    .option('--shard-mb <n>', 'largest shard in MB (2^20 bytes)', intArg('--shard-mb', 1), 16)
    .action((o: { model: string; out: string; shardMb: number }) => {
      const r = quantizeCheckpoint(o.model, o.out, { maxShardBytes: o.shardMb * 2 ** 20 });
      process.stdout.write(
        `wrote ${o.out}: ${(r.linear / 1e6).toFixed(2)} M linear weights in FP8, ${(r.other / 1e6).toFixed(2)} M others in bf16/f32, ` +
          `${(r.bytes / 2 ** 20).toFixed(1)} MiB in ${r.files.length} shard${r.files.length > 1 ? 's' : ''}\n`,
      );
    });
}
