// Typed errors of the environments area. Messages name the file/field and what was expected, because
// the CLI prints them verbatim to the user (see src/errors.ts).
import { DsvError } from '../errors.js';

/** bubblewrap/prlimit/an interpreter is missing or cannot create namespaces on this host. */
export class SandboxUnavailableError extends DsvError {}

/** A sandbox request itself is malformed (bad limits, bad mount path, unknown language). */
export class SandboxSpecError extends DsvError {}

export interface FormatProblem {
  /** Path relative to the environment root (or "." for the directory itself). */
  file: string;
  problem: string;
}

/** An environment directory breaks the format; every problem names the offending file. */
export class EnvFormatError extends DsvError {
  constructor(
    readonly envDir: string,
    readonly problems: FormatProblem[],
  ) {
    super(
      `environment ${envDir} is invalid:\n` + problems.map((p) => `  ${p.file}: ${p.problem}`).join('\n'),
    );
  }
}

/** A runtime misuse of an episode: unknown tool, bad arguments, submitting twice, verifying before submit. */
export class EpisodeError extends DsvError {}

/** A family name or generator option is wrong. */
export class FamilyError extends DsvError {}
