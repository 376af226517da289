// What the synthesis agent is told: the environment format in brief (docs/env-format.md is the full
// text), and one instruction per stage. Stage names appear verbatim ("Stage: build", "Stage: task
// level N") so transcripts and logs are easy to follow.
import type { TaskRow } from './store.js';

export function synthSystemPrompt(category: string, envId: string): string {
  return [
    `You build a tool-use environment for the task category "${category}" (environment id ${envId}).`,
    'An environment is: an SQLite database (the state); tools, each a Python (or Node) program with a JSON schema;',
    'and tasks, each with a prompt, a reference solution and a verifier. Tasks must be hard to solve and easy to verify.',
    'Files and protocols:',
    '- tools/<name>.schema.json: {"name", "description", "parameters": JSON Schema of an object, "examples": [argument objects]}.',
    '- tools/<name>.py: reads its JSON arguments on stdin, opens the database at os.environ["DSV32_DB"] with sqlite3, prints one JSON result',
    '  on stdout and exits 0; for a user error write a sentence to stderr and exit 2. Tools must be deterministic.',
    '- submit_result is the submit tool: its arguments are the answer ({"answer": ...} unless you rewrite tools/submit_result.schema.json).',
    '- solutions/<file>.py: `from dsv32_env import task, call, submit`; it may only call tools (call("tool", arg=...)) and compute;',
    '  it has no database access. It ends with submit(answer). Or give a fixed solution {"calls": [{"tool", "args"}], "answer": ...}.',
    '- verifiers/<file>.py: reads {"task": {id, prompt, params}, "answer": A} on stdin, may read the final database (read-only) at',
    '  DSV32_DB, and prints {"score": 0..1, "reason": "..."} as its last line. Or use {"exact": value} or {"numeric": x, "tolerance": t}.',
    'The verifier must give 1 to the reference answer and reject wrong answers (automatic perturbations of it are tried).',
    'Your tools: list_files, read_file, write_file, run_sql (SQL on the database), run_tool (try a tool on a copy of the state),',
    'run_validate (full `env validate` of the tasks written so far) and, in task stages, submit_task.',
  ].join('\n');
}

export function buildStagePrompt(category: string): string {
  return [
    'Stage: build.',
    `Create the database for "${category}": tables and enough realistic rows (at least a few dozen) for non-trivial tasks.`,
    'Then write the query tools an agent needs (schema + code each) and check each with run_tool.',
    'Reply with a short summary and no tool call when the database and tools are ready.',
  ].join('\n');
}

export function taskStagePrompt(level: number, previous: TaskRow | undefined, previousFile: string | undefined): string {
  if (level === 1 || !previous) {
    return [
      'Stage: task level 1.',
      'Propose a simple task that needs the tools, with a reference solution and a verifier, and call submit_task.',
      'submit_task runs `env validate`; if it reports a problem, fix the solution, verifier or tools and submit again.',
    ].join('\n');
  }
  return [
    `Stage: task level ${level}.`,
    `The last accepted task (level ${previous.level}) was:`,
    previousFile ?? previous.prompt,
    'Propose a harder task: more steps, more constraints, more information to combine, or a state change to make.',
    'If the current tools are not enough, add tools first (write_file, then run_tool). Do not break earlier tasks.',
    'Call submit_task; if validation fails, repair and submit again.',
  ].join('\n');
}
