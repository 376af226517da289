import { readFileSync } from 'node:fs';
// Base class for errors caused by what the user gave (a file, a field, an argument). The CLI prints
// `dsv32: <message>` for these and exits 2, without a stack trace. Every area's typed errors extend it,
// so a message must name the file/field/argument and what was expected.
export class DsvError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/**
 * The JSON value of a config file named on the command line; an unreadable file or bad JSON is the
 * caller's error class (a DsvError) naming the file.
 */
export function readJsonFile(file: string, fail: new (message: string) => DsvError): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new fail(`--config: cannot read ${file} (${(e as Error).message})`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new fail(`${file}: not JSON (${(e as Error).message})`);
  }
}

/** A schema's first `max` issues as "path: message; …" ("(top level)" for the root), for config errors. */
export function issuesText(issues: readonly { path: readonly PropertyKey[]; message: string }[], max = 5): string {
  return issues.slice(0, max).map((i) => `${i.path.map(String).join('.') || '(top level)'}: ${i.message}`).join('; ');
}
