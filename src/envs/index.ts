// Public surface of the agentic environments: sandbox, environment format, episodes, validation,
// built-in families, synthesis pipeline and evaluation.
export * from './errors.js';
export { runSandboxed, runFileSandboxed, sandboxHost, describeSandboxHost, langOfFile, DEFAULT_LIMITS } from './sandbox.js';
export type { SandboxRunSpec, SandboxResult, SandboxLimits, SandboxMount, SandboxLang } from './sandbox.js';
export { loadEnvironment, listTools, type Environment, type LoadedTask, type LoadedTool, type ToolInfo } from './load.js';
export { Episode, type ToolCallResult, type Verdict } from './episode.js';
export { runSolution } from './solution.js';
export { validateEnvironment, validateTask } from './validate.js';
export { registerFamily, getFamily, listFamilies, type EnvFamily } from './families/registry.js';
export { registerBuiltinFamilies } from './families/index.js';
export { runSynth } from './synth/pipeline.js';
export { runEval, formatReportTable } from './eval/run.js';
export { passAtK } from './eval/passk.js';
