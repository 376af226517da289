#!/usr/bin/env node
// dsv32 command-line entry point. Each command lives in its own module and registers itself here.
import { Command } from 'commander';
import { runProgram } from './run.js';
import { register as registerSandbox } from './sandbox.js';
import { register as registerEnv } from './env.js';
import { register as registerAgent } from './agent.js';
import { register as registerEncode } from './encode.js';
import { register as registerParse } from './parse.js';
import { register as registerLogits } from './logits.js';
import { register as registerSynth } from './synth.js';
import { register as registerWorker } from './worker.js';
import { register as registerEval } from './eval.js';
import { register as registerGolden } from './golden.js';
import { register as registerBench } from './bench.js';
import { register as registerData } from './data.js';
import { register as registerServe } from './serve.js';
import { register as registerChat } from './chat.js';
import { register as registerTrain } from './train.js';
import { register as registerRl } from './rl.js';
import { register as registerLaunch } from './launch.js';
import { register as registerQuantize } from './quantize.js';
import { register as registerPlot } from './plot.js';

const program = new Command();
program
  .name('dsv32')
  .description('DeepSeek-V3.2 (DeepSeek Sparse Attention) in TypeScript: model, engine, agents, environments')
  .version('0.1.0')
  .showHelpAfterError()
  .exitOverride();

// command registrations (one line each)
registerSandbox(program);
registerEnv(program);
registerAgent(program);
registerEncode(program);
registerParse(program);
registerLogits(program);
registerSynth(program);
registerWorker(program);
registerEval(program);
registerGolden(program);
registerBench(program);
registerData(program);
registerQuantize(program);
registerServe(program);
registerChat(program);
registerTrain(program);
registerRl(program);
registerLaunch(program);
registerPlot(program);

await runProgram(program);
