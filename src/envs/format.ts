// Schemas of the on-disk environment format (docs/env-format.md describes the layout and protocols).
// Everything a user can get wrong in a JSON file is checked here with zod; cross-file rules (a task's
// program exists, a tool has exactly one code file) live in load.ts.
import { z } from 'zod';

export const FORMAT_VERSION = 1;

const ID = /^[a-z0-9][a-z0-9._-]{0,127}$/;
const TOOL_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
const SEMVER = /^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?$/;

export const difficultySchema = z.enum(['easy', 'medium', 'hard', 'mixed']);

export const manifestSchema = z.strictObject({
  formatVersion: z.literal(FORMAT_VERSION),
  id: z.string().regex(ID, 'lower-case letters, digits, ".", "_" or "-", starting with a letter or digit'),
  family: z.string().regex(ID, 'lower-case letters, digits, ".", "_" or "-"'),
  description: z.string().min(1),
  provenance: z.strictObject({
    /** Who or what made it: a generator command, an LLM synthesis run, a person. */
    source: z.string().min(1),
    seed: z.number().int().optional(),
    notes: z.string().optional(),
  }),
  difficulty: difficultySchema,
  version: z.string().regex(SEMVER, 'a semantic version such as 1.0.0'),
  /** The tool that ends an episode; its arguments are the submitted answer. It has a schema but no code. */
  submitTool: z.string().regex(TOOL_NAME),
  /** Sandbox limits for tool calls (per call). */
  toolLimits: z
    .strictObject({ timeoutMs: z.number().int().positive().max(600_000), memoryMb: z.number().int().positive().max(65_536) })
    .partial()
    .optional(),
  /**
   * For short-answer families: when an episode ends with a reply and no submit call, the last integer of
   * the reply's text (not its reasoning) is submitted as `{answer: n}` (Episode.submitFinalText).
   */
  finalAnswer: z.enum(['last-integer']).optional(),
});
export type Manifest = z.infer<typeof manifestSchema>;

/** tools/<name>.schema.json */
export const toolSchemaFileSchema = z.strictObject({
  name: z.string().regex(TOOL_NAME, 'a function name: letters, digits and "_"'),
  description: z.string().min(1),
  /** JSON Schema of the arguments object (draft 2020-12 / draft-07 subset understood by ajv). */
  parameters: z.looseObject({ type: z.literal('object') }),
  /** Example argument objects; `env validate` runs each twice on fresh state to check determinism. */
  examples: z.array(z.record(z.string(), z.unknown())).optional(),
});
export type ToolSchemaFile = z.infer<typeof toolSchemaFileSchema>;

const relPath = z
  .string()
  .min(1)
  .refine((p) => !p.startsWith('/') && !p.split('/').includes('..'), 'a relative path inside the environment');

export const toolCallSchema = z.strictObject({
  tool: z.string().regex(TOOL_NAME),
  args: z.record(z.string(), z.unknown()).default({}),
});
export type ToolCall = z.infer<typeof toolCallSchema>;

export const solutionSchema = z.union([
  /** A Python/Node program under solutions/ that talks to the tools through the dsv32_env helper. */
  z.strictObject({ program: relPath }),
  /** A fixed list of tool calls followed by a literal answer. */
  z.strictObject({ calls: z.array(toolCallSchema), answer: z.unknown() }),
]);
export type SolutionSpec = z.infer<typeof solutionSchema>;

export const verifierSchema = z.union([
  /** A Python/Node program under verifiers/ reading {task, answer} and the final DB; prints {score, reason}. */
  z.strictObject({ program: relPath }),
  /** Answer must deep-equal this JSON value. */
  z.strictObject({ exact: z.unknown() }),
  /** Answer (or answer[field]) must be a number within tolerance of this value. */
  z.strictObject({ numeric: z.number(), tolerance: z.number().nonnegative().default(1e-6), field: z.string().optional() }),
]);
export type VerifierSpec = z.infer<typeof verifierSchema>;

/** tasks/<id>.json */
export const taskFileSchema = z.strictObject({
  id: z.string().regex(ID),
  prompt: z.string().min(1),
  difficulty: difficultySchema.optional(),
  /** Structured task data, given to the solution and the verifier (never shown to the agent). */
  params: z.record(z.string(), z.unknown()).default({}),
  solution: solutionSchema,
  verifier: verifierSchema,
});
export type TaskFile = z.infer<typeof taskFileSchema>;

/** What a verifier program must print as the last line of its stdout. */
export const verdictSchema = z.strictObject({
  score: z.number().min(0).max(1),
  reason: z.string(),
});

/** Flattens zod issues to "field: message; field: message". */
export function describeZodError(e: z.ZodError): string {
  return e.issues.map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`).join('; ');
}
