// Arithmetic with worked reasoning, as chat conversations: the user asks, the assistant reasons in
// `<think>` the way one does on paper (column addition with carries, subtraction with borrows,
// multiplication by place value, division by repeated subtraction of multiples), then answers.
//
// Held-out questions: issue 15 tests dsv32-mini on arithmetic "held back from its training data".
// `isHeldOut` takes every (a, op, b) whose FNV-1a hash is ≡ 0 mod 20 (5% of all problems, independent
// of the build seed) out of the generator, so an evaluation that draws from `heldOutProblem` is
// guaranteed unseen whatever seed built the corpus.
import type { ChatMessage, ThinkingMode } from '../../chat/message.js';
import { encodeMessages } from '../../chat/encode.js';
import { hashString, type Rng } from '../../envs/rng.js';
import type { CorpusDocument, CorpusSource } from '../source.js';

export type ArithOp = '+' | '-' | '×' | '÷';

export interface ArithProblem {
  a: number;
  b: number;
  op: ArithOp;
  answer: number;
}

export function isHeldOut(p: Pick<ArithProblem, 'a' | 'b' | 'op'>): boolean {
  return hashString(`${p.a}${p.op}${p.b}`) % 20 === 0;
}

function digits(n: number): number[] {
  return String(n).split('').map(Number).reverse(); // least significant first
}

/** Column addition, least significant digit first, naming each carry. */
export function explainAdd(a: number, b: number): string {
  const da = digits(a);
  const db = digits(b);
  const names = ['ones', 'tens', 'hundreds', 'thousands', 'ten-thousands', 'hundred-thousands', 'millions'];
  const steps: string[] = [];
  let carry = 0;
  for (let i = 0; i < Math.max(da.length, db.length); i++) {
    const x = da[i] ?? 0;
    const y = db[i] ?? 0;
    const s = x + y + carry;
    const terms = `${x} + ${y}${carry ? ` + ${carry} (carried)` : ''}`;
    steps.push(`${names[i] ?? `digit ${i + 1}`}: ${terms} = ${s}${s >= 10 ? `, write ${s % 10} and carry 1` : ''}`);
    carry = s >= 10 ? 1 : 0;
  }
  if (carry) steps.push('the final carry 1 becomes the leading digit');
  return `Add ${a} and ${b} column by column.\n${steps.join('.\n')}.\nSo ${a} + ${b} = ${a + b}.`;
}

/** Column subtraction with borrows; a negative result is computed as −(b − a). */
export function explainSub(a: number, b: number): string {
  if (a < b) return `${a} is smaller than ${b}, so the result is negative: ${a} − ${b} = −(${b} − ${a}).\n${explainSub(b, a).replace(/\nSo .*$/, '')}\nSo ${b} − ${a} = ${b - a}, and ${a} − ${b} = ${a - b}.`;
  const da = digits(a);
  const db = digits(b);
  const names = ['ones', 'tens', 'hundreds', 'thousands', 'ten-thousands', 'hundred-thousands'];
  const steps: string[] = [];
  let borrow = 0;
  for (let i = 0; i < da.length; i++) {
    const x = da[i]! - borrow;
    const y = db[i] ?? 0;
    const name = names[i] ?? `digit ${i + 1}`;
    const top = borrow ? `${da[i]} − 1 (borrowed) = ${x}` : `${x}`;
    if (x < y) {
      steps.push(`${name}: ${top} is less than ${y}, borrow 1 from the next column: ${x + 10} − ${y} = ${x + 10 - y}`);
      borrow = 1;
    } else {
      if (i >= db.length && !borrow) break; // the remaining digits of a come down unchanged
      steps.push(`${name}: ${borrow ? `${top}, then ` : ''}${x} − ${y} = ${x - y}`);
      borrow = 0;
    }
  }
  return `Subtract ${b} from ${a} column by column.\n${steps.join('.\n')}.\nSo ${a} − ${b} = ${a - b}.`;
}

/** Multiplication by splitting the smaller factor into place values: a·b = Σ a·(d_i·10^i). */
export function explainMul(a: number, b: number): string {
  const [big, small] = a >= b ? [a, b] : [b, a];
  const parts = digits(small)
    .map((d, i) => d * 10 ** i)
    .filter((p) => p > 0)
    .reverse();
  if (parts.length <= 1) return `${a} × ${b}: multiply ${big} by ${small} directly: ${big} × ${small} = ${big * small}.\nSo ${a} × ${b} = ${a * b}.`;
  const lines = parts.map((p) => `${big} × ${p} = ${big * p}`);
  const sum = parts.map((p) => big * p);
  return `Split ${small} into ${parts.join(' + ')} and multiply ${big} by each part.\n${lines.join('\n')}\nAdd the parts: ${sum.join(' + ')} = ${a * b}.\nSo ${a} × ${b} = ${a * b}.`;
}

/** Exact division a ÷ b = q by taking off the largest multiples b·(d·10^k) of the divisor. */
export function explainDiv(a: number, b: number): string {
  const q = a / b;
  const steps: string[] = [];
  let rest = a;
  const parts: number[] = [];
  const qd = digits(q);
  for (let k = qd.length - 1; k >= 0; k--) {
    const m = qd[k]! * 10 ** k;
    if (!m) continue;
    steps.push(`${b} × ${m} = ${b * m}; ${rest} − ${b * m} = ${rest - b * m}`);
    rest -= b * m;
    parts.push(m);
  }
  const sum = parts.length > 1 ? `\nThe quotient is ${parts.join(' + ')} = ${q}.` : '';
  return `Divide ${a} by ${b} by taking off multiples of ${b}.\n${steps.join('\n')}\nNothing is left, so the division is exact.${sum}\nCheck: ${b} × ${q} = ${a}.\nSo ${a} ÷ ${b} = ${q}.`;
}

export function explain(p: ArithProblem): string {
  switch (p.op) {
    case '+':
      return explainAdd(p.a, p.b);
    case '-':
      return explainSub(p.a, p.b);
    case '×':
      return explainMul(p.a, p.b);
    case '÷':
      return explainDiv(p.a, p.b);
  }
}

export const QUESTIONS: Record<ArithOp, ((a: number, b: number) => string)[]> = {
  '+': [
    (a, b) => `What is ${a} + ${b}?`,
    (a, b) => `Compute ${a} + ${b}.`,
    (a, b) => `${a} + ${b} = ?`,
    (a, b) => `What is the sum of ${a} and ${b}?`,
    (a, b) => `Add ${a} and ${b}.`,
    (a, b) => `A shop sold ${a} books in the morning and ${b} in the afternoon. How many books did it sell that day?`,
  ],
  '-': [
    (a, b) => `What is ${a} - ${b}?`,
    (a, b) => `Compute ${a} − ${b}.`,
    (a, b) => `${a} - ${b} = ?`,
    (a, b) => `Subtract ${b} from ${a}.`,
    (a, b) => `What is the difference ${a} minus ${b}?`,
  ],
  '×': [
    (a, b) => `What is ${a} × ${b}?`,
    (a, b) => `What is ${a} * ${b}?`,
    (a, b) => `Multiply ${a} by ${b}.`,
    (a, b) => `What is the product of ${a} and ${b}?`,
    (a, b) => `A box holds ${b} eggs. How many eggs are in ${a} boxes?`,
  ],
  '÷': [
    (a, b) => `What is ${a} ÷ ${b}?`,
    (a, b) => `What is ${a} / ${b}?`,
    (a, b) => `Divide ${a} by ${b}.`,
    (a, b) => `${a} sweets are shared equally among ${b} children. How many does each child get?`,
  ],
};

const ANSWERS: ((p: ArithProblem) => string)[] = [
  (p) => `${p.a} ${p.op} ${p.b} = ${p.answer}.`,
  (p) => `The answer is ${p.answer}.`,
  (p) => `**${p.answer}**`,
  (p) => `${p.answer}`,
];

function operand(rng: Rng): number {
  // mostly two digits (the usefulness floor asks "What is 38 + 46?"), some one, three and four
  const r = rng.next();
  const width = r < 0.15 ? 1 : r < 0.65 ? 2 : r < 0.9 ? 3 : 4;
  return rng.int(width === 1 ? 0 : 10 ** (width - 1), 10 ** width - 1);
}

/** A random problem that is not held out. */
export function randomProblem(rng: Rng): ArithProblem {
  for (;;) {
    const op = rng.pick<ArithOp>(['+', '+', '-', '×', '÷']);
    let a = operand(rng);
    let b = operand(rng);
    if (op === '×' && a >= 1000 && b >= 100) b = rng.int(2, 99); // keep products readable
    if (op === '÷') {
      // choose divisor and quotient, so every division is exact
      b = rng.int(2, 99);
      const q = rng.int(2, 999);
      a = b * q;
    }
    const answer = op === '+' ? a + b : op === '-' ? a - b : op === '×' ? a * b : a / b;
    const p = { a, b, op, answer };
    if (!isHeldOut(p)) return p;
  }
}

/** Every held-out two-digit addition (for the usefulness evaluation), in (a, b) order; never generated above. */
export function heldOutAdditions(): ArithProblem[] {
  const out: ArithProblem[] = [];
  for (let a = 10; a < 100; a++) {
    for (let b = 10; b < 100; b++) if (isHeldOut({ a, b, op: '+' })) out.push({ a, b, op: '+', answer: a + b });
  }
  return out;
}

/** The n-th held-out two-digit addition problem (heldOutAdditions()[n]). */
export function heldOutProblem(n: number): ArithProblem {
  const all = heldOutAdditions();
  const p = all[n];
  if (!p) throw new RangeError(`there are only ${all.length} held-out two-digit additions, asked for number ${n}`);
  return p;
}

export function arithmeticConversation(rng: Rng, turns: number): { messages: ChatMessage[]; mode: ThinkingMode } {
  const mode: ThinkingMode = rng.chance(0.8) ? 'thinking' : 'chat';
  const messages: ChatMessage[] = [];
  if (rng.chance(0.3)) messages.push({ role: 'system', content: rng.pick(['You are a careful assistant who checks arithmetic.', 'You are a helpful assistant.', 'Answer math questions accurately.']) });
  for (let t = 0; t < turns; t++) {
    const p = randomProblem(rng);
    const q = rng.pick(QUESTIONS[p.op])(p.a, p.b);
    messages.push({ role: 'user', content: q });
    const content = rng.pick(ANSWERS)(p);
    // reasoning is rendered only for the turn after the last user message; earlier turns carry it
    // anyway so the stored messages are complete for SFT
    messages.push(mode === 'thinking' ? { role: 'assistant', reasoning_content: explain(p), content } : { role: 'assistant', content });
  }
  return { messages, mode };
}

export const arithmeticSource: CorpusSource = {
  name: 'arithmetic',
  kind: 'synthetic',
  package: 'dsv32',
  install: '(generated by src/data/synthetic/arithmetic.ts)',
  licence: 'MIT (generated by dsv32)',
  description: 'Arithmetic questions with worked reasoning in <think>, as V3.2 chat conversations (80% thinking mode); 5% of problems held out for evaluation',
  requiredByDefault: true,
  defaultBudgetBytes: 4 * 2 ** 20,
  weight: 4,
  probe: () => ({ found: true, version: 'generated', location: 'src/data/synthetic/arithmetic.ts' }),
  async *documents(ctx) {
    let used = 0;
    for (let i = 0; used < ctx.budgetBytes; i++) {
      const { messages, mode } = arithmeticConversation(ctx.rng, ctx.rng.chance(0.8) ? 1 : ctx.rng.int(2, 3));
      const text = encodeMessages(messages, { mode });
      used += Buffer.byteLength(text);
      const doc: CorpusDocument = { id: `arithmetic/${String(i).padStart(7, '0')}`, source: 'arithmetic', text, messages, mode };
      yield doc;
    }
  },
};
