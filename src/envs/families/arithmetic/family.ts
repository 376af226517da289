// The arithmetic family: one exact-integer question per task (additions and subtractions of 2–4
// digits, multiplications of a 2–3-digit by a 1–2-digit number, exact divisions), phrased with the
// question templates dsv32-mini was trained on (src/data/synthetic/arithmetic.ts) and drawn only from
// the problems that generator holds out (`isHeldOut`), so the environment measures generalisation.
// Small models get some of these right and some wrong, so a GRPO group's rewards vary (issue 14).
//
// The prompt is the bare question; the runtime's system prompt says how to answer.
// Answers: the submit tool `submit_answer {answer: integer}`, or — the manifest sets
// `finalAnswer: "last-integer"` — a plain final reply, whose last integer is submitted ("38 + 46 = 84.",
// "The answer is 84.", "**84**": the formats the model was trained to answer in). The verifier is the
// declarative `{"exact": {"answer": N}}`: the submission must be exactly the right integer. It needs no
// sandboxed program, so verifying costs no process per episode (GRPO verifies tasks_per_step · G episodes
// a step) and works where bubblewrap does not, e.g. the GPU machine the RL ablation runs on.
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { isHeldOut, QUESTIONS, type ArithOp } from '../../../data/synthetic/arithmetic.js';
import { FamilyError } from '../../errors.js';
import { FORMAT_VERSION, type Manifest } from '../../format.js';
import { Rng } from '../../rng.js';
import { type EnvFamily, type GenerateOptions, type GenerateResult, checkGenerateOptions, writeEnvFile } from '../registry.js';

export const ARITH_MAX_TASKS = 5000;
export type ArithDifficulty = 'easy' | 'medium' | 'hard';

export interface ArithTask {
  a: number;
  op: ArithOp;
  b: number;
  answer: number;
  difficulty: ArithDifficulty;
  question: string;
}

export const SUBMIT_TOOL = {
  name: 'submit_answer',
  description: 'Submit the final answer, an integer. Ends the task.',
  parameters: {
    type: 'object',
    properties: { answer: { type: 'integer', description: 'the exact result' } },
    required: ['answer'],
    additionalProperties: false,
  },
};

const SOLUTION = `"""Reference solution: compute the result from the task's operands and submit it."""
from dsv32_env import submit, task

p = task["params"]
a, op, b = p["a"], p["op"], p["b"]
if op == "+":
    r = a + b
elif op == "-":
    r = a - b
elif op == "\\u00d7":
    r = a * b
else:
    q, rest = divmod(a, b)
    if rest:
        raise SystemExit("%d is not divisible by %d" % (a, b))
    r = q
submit({"answer": r})
`;

const width = (rng: Rng, digits: number) => rng.int(10 ** (digits - 1), 10 ** digits - 1);

/** Operands of one problem of the given operation and difficulty (not yet checked for being held out). */
function operands(rng: Rng, op: ArithOp, d: ArithDifficulty): [number, number] {
  const order = (x: number, y: number): [number, number] => (rng.chance(0.5) ? [x, y] : [y, x]);
  switch (op) {
    case '+':
    case '-':
      // easy 2+2 digits; medium one 3-digit and a 2–3-digit; hard one 4-digit and a 2–4-digit
      if (d === 'easy') return [width(rng, 2), width(rng, 2)];
      if (d === 'medium') return order(width(rng, 3), width(rng, rng.int(2, 3)));
      return order(width(rng, 4), width(rng, rng.int(2, 4)));
    case '×':
      // easy 2-digit × 1-digit; medium 3-digit × 1-digit or 2-digit × 2-digit; hard 3-digit × 2-digit
      if (d === 'easy') return [width(rng, 2), rng.int(2, 9)];
      if (d === 'medium') return rng.chance(0.5) ? [width(rng, 3), rng.int(2, 9)] : [width(rng, 2), width(rng, 2)];
      return [width(rng, 3), width(rng, 2)];
    case '÷': {
      // exact: divisor and quotient are chosen. easy 1-digit divisor, 2-digit quotient; medium 1-digit
      // divisor and 3-digit quotient or 2-digit divisor and quotient; hard 2-digit divisor, 3-digit quotient
      let b: number;
      let q: number;
      if (d === 'easy') (b = rng.int(2, 9)), (q = width(rng, 2));
      else if (d === 'medium') [b, q] = rng.chance(0.5) ? [rng.int(2, 9), width(rng, 3)] : [width(rng, 2), width(rng, 2)];
      else (b = width(rng, 2)), (q = width(rng, 3));
      return [b * q, b];
    }
  }
}

function result(a: number, op: ArithOp, b: number): number {
  return op === '+' ? a + b : op === '-' ? a - b : op === '×' ? a * b : a / b;
}

/**
 * `count` distinct held-out problems drawn from `seed`: difficulty easy/medium/hard with weights 3/4/3,
 * operation + + − × ÷ (as the training generator), each phrased with one of its training templates.
 */
export function arithmeticTasks(seed: number, count: number): ArithTask[] {
  const rng = new Rng(seed).fork('arithmetic-tasks');
  const seen = new Set<string>();
  const out: ArithTask[] = [];
  for (let tries = 0; out.length < count; tries++) {
    if (tries > count * 2000) throw new FamilyError(`could only draw ${out.length} distinct held-out arithmetic problems for seed ${seed}`);
    const r = rng.next();
    const difficulty: ArithDifficulty = r < 0.3 ? 'easy' : r < 0.7 ? 'medium' : 'hard';
    const op = rng.pick<ArithOp>(['+', '+', '-', '×', '÷']);
    const [a, b] = operands(rng, op, difficulty);
    const key = `${a}${op}${b}`;
    // only problems the corpus generator never produces (5% of all), each once
    if (!isHeldOut({ a, op, b }) || seen.has(key)) continue;
    seen.add(key);
    out.push({ a, op, b, answer: result(a, op, b), difficulty, question: rng.pick(QUESTIONS[op])(a, b) });
  }
  return out;
}

export function generateArithmetic(opts: GenerateOptions): GenerateResult {
  const dir = checkGenerateOptions(opts, ARITH_MAX_TASKS);
  const tasks = arithmeticTasks(opts.seed, opts.tasks);
  mkdirSync(dir, { recursive: true });

  const envId = `arithmetic-s${opts.seed}`;
  const manifest: Manifest = {
    formatVersion: FORMAT_VERSION,
    id: envId,
    family: 'arithmetic',
    description:
      'Exact integer arithmetic (2–4-digit additions and subtractions, 2–3-digit by 1–2-digit multiplications, exact divisions), ' +
      'held out from the dsv32 arithmetic corpus; answer with submit_answer or a final reply ending in the number.',
    provenance: { source: 'dsv32 env generate arithmetic (offline, deterministic)', seed: opts.seed, notes: 'problems chosen by isHeldOut (src/data/synthetic/arithmetic.ts)' },
    difficulty: 'mixed',
    version: '1.0.0',
    submitTool: SUBMIT_TOOL.name,
    finalAnswer: 'last-integer',
  };
  writeEnvFile(dir, 'manifest.json', JSON.stringify(manifest, null, 2) + '\n');
  writeEnvFile(dir, `tools/${SUBMIT_TOOL.name}.schema.json`, JSON.stringify(SUBMIT_TOOL, null, 2) + '\n');
  writeEnvFile(dir, 'solutions/solve.py', SOLUTION);

  // The state: the problems asked, for people reading the environment (no tool reads it; answers are not stored).
  const db = new Database(join(dir, 'db.sqlite'));
  try {
    db.exec('CREATE TABLE problems (id TEXT PRIMARY KEY, a INTEGER NOT NULL, op TEXT NOT NULL, b INTEGER NOT NULL, difficulty TEXT NOT NULL)');
    const ins = db.prepare('INSERT INTO problems VALUES (?, ?, ?, ?, ?)');
    db.transaction(() => tasks.forEach((t, i) => ins.run(taskId(i), t.a, t.op, t.b, t.difficulty)))();
  } finally {
    db.close();
  }

  tasks.forEach((t, i) => {
    const id = taskId(i);
    const task = {
      id,
      // the bare training question: how to answer is said once, in the runtime's system prompt
      // (policySystemPrompt: submit_answer, or a reply whose last integer is the answer). An extra
      // sentence here derailed dsv32-mini (at temperature 0, "What is 31 + 59? Reply with the result as
      // a whole number, ..." was answered as 31 − 59), which only knows the bare templates.
      prompt: t.question,
      difficulty: t.difficulty,
      params: { a: t.a, op: t.op, b: t.b, answer: t.answer },
      solution: { program: 'solutions/solve.py' },
      verifier: { exact: { answer: t.answer } },
    };
    writeEnvFile(dir, `tasks/${id}.json`, JSON.stringify(task, null, 2) + '\n');
  });
  return { dir, envId, tasks: tasks.length, tools: 1 };
}

const taskId = (i: number) => `arith-${String(i).padStart(4, '0')}`;

export const arithmeticFamily: EnvFamily = {
  name: 'arithmetic',
  description: 'arithmetic: held-out exact-integer questions (+ − × ÷) in the training templates; verifiable reward for small models',
  maxTasks: ARITH_MAX_TASKS,
  generate: generateArithmetic,
};
