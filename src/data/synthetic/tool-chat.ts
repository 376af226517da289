// Conversations that use tools, in the V3.2 chat format: a system prompt declares tools, the user
// asks, the assistant calls tools with DSML blocks, results come back, the assistant answers. The tool
// results are computed (a calculator, a unit converter, a weather table derived from a hash of city and
// date), so every answer in the data is consistent with the results it cites.
//
// Patterns (each a way the post-trained model must behave): one call then an answer; two calls in
// one block (parallel lookups) then a comparison; a chain of two rounds where the second call depends
// on the first result; and a question the assistant answers without a tool although tools are offered.
// Thinking mode carries reasoning in every assistant turn after the last user message (the
// reasoning-retention rule of V3.2: reasoning between tool calls is kept until the next user turn).
import type { AssistantMessage, ChatMessage, ThinkingMode, ToolDefinition } from '../../chat/message.js';
import { encodeMessages } from '../../chat/encode.js';
import { hashString, type Rng } from '../../envs/rng.js';
import type { CorpusSource } from '../source.js';
import { explainAdd, randomProblem, explain } from './arithmetic.js';

export const TOOLS: ToolDefinition[] = [
  {
    type: 'function',
    function: {
      name: 'calculator',
      description: 'Evaluate an arithmetic expression with + - * / and parentheses; returns the exact result.',
      parameters: { type: 'object', properties: { expression: { type: 'string', description: 'e.g. "(12 + 7) * 3"' } }, required: ['expression'] },
    },
  },
  {
    type: 'function',
    function: {
      name: 'get_weather',
      description: 'Weather forecast for a city on a date (YYYY-MM-DD).',
      parameters: { type: 'object', properties: { city: { type: 'string' }, date: { type: 'string' } }, required: ['city', 'date'] },
    },
  },
  {
    type: 'function',
    function: {
      name: 'convert_units',
      description: 'Convert a quantity between units of length, mass or temperature.',
      parameters: {
        type: 'object',
        properties: { value: { type: 'number' }, from: { type: 'string', enum: Object.keys(linearUnits()).concat(['C', 'F']) }, to: { type: 'string' } },
        required: ['value', 'from', 'to'],
      },
    },
  },
];

function linearUnits(): Record<string, { dim: string; si: number }> {
  // factor to the SI unit of the dimension
  return {
    km: { dim: 'length', si: 1000 },
    m: { dim: 'length', si: 1 },
    mile: { dim: 'length', si: 1609.344 },
    ft: { dim: 'length', si: 0.3048 },
    kg: { dim: 'mass', si: 1 },
    lb: { dim: 'mass', si: 0.45359237 },
    g: { dim: 'mass', si: 0.001 },
  };
}

const CITIES = ['Lisbon', 'Oslo', 'Nairobi', 'Lima', 'Osaka', 'Toronto', 'Cairo', 'Hanoi', 'Zurich', 'Perth', 'Quito', 'Dublin', 'Seoul', 'Tunis', 'Denver', 'Kraków'];
const CONDITIONS = ['sunny', 'partly cloudy', 'cloudy', 'light rain', 'heavy rain', 'windy', 'foggy', 'snow showers'];

/** The weather "database": a pure function of (city, date), so calls and answers always agree. */
export function weather(city: string, date: string): { city: string; date: string; condition: string; high_c: number; low_c: number } {
  const h = hashString(`${city}|${date}`);
  const high = (h % 30) + 2;
  const low = high - 3 - ((h >>> 8) % 9);
  return { city, date, condition: CONDITIONS[(h >>> 16) % CONDITIONS.length]!, high_c: high, low_c: low };
}

function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export function convert(value: number, from: string, to: string): number {
  if (from === 'C' && to === 'F') return round((value * 9) / 5 + 32);
  if (from === 'F' && to === 'C') return round(((value - 32) * 5) / 9);
  const u = linearUnits();
  return round((value * u[from]!.si) / u[to]!.si);
}

function date(rng: Rng): string {
  return `2026-${String(rng.int(1, 12)).padStart(2, '0')}-${String(rng.int(1, 28)).padStart(2, '0')}`;
}

const SYSTEMS = ['You are a helpful assistant with access to tools.', 'You are a concise assistant. Use the tools when they help.', 'You help users with everyday questions. Today is 2026-06-01.'];

type Turns = ChatMessage[];

function think(mode: ThinkingMode, reasoning: string, rest: Omit<AssistantMessage, 'role'>): AssistantMessage {
  return mode === 'thinking' ? { role: 'assistant', reasoning_content: reasoning, ...rest } : { role: 'assistant', ...rest };
}

function weatherOne(rng: Rng, mode: ThinkingMode): Turns {
  const city = rng.pick(CITIES);
  const d = date(rng);
  const w = weather(city, d);
  return [
    { role: 'user', content: rng.pick([`What's the weather in ${city} on ${d}?`, `Will it rain in ${city} on ${d}?`, `Forecast for ${city}, ${d}, please.`]) },
    think(mode, `The user wants the forecast for ${city} on ${d}. I'll call get_weather.`, { content: '', tool_calls: [{ type: 'function', function: { name: 'get_weather', arguments: { city, date: d } } }] }),
    { role: 'tool', content: JSON.stringify(w) },
    think(mode, `The tool says ${w.condition}, high ${w.high_c} °C, low ${w.low_c} °C.`, {
      content: `On ${d}, ${city} will be ${w.condition} with a high of ${w.high_c} °C and a low of ${w.low_c} °C.`,
    }),
  ];
}

function weatherCompare(rng: Rng, mode: ThinkingMode): Turns {
  const [c1, c2] = rng.sample(CITIES, 2) as [string, string];
  const d = date(rng);
  const w1 = weather(c1, d);
  const w2 = weather(c2, d);
  const warmer = w1.high_c === w2.high_c ? null : w1.high_c > w2.high_c ? w1 : w2;
  const verdict = warmer ? `${warmer.city} will be warmer (${warmer.high_c} °C vs ${(warmer === w1 ? w2 : w1).high_c} °C).` : `Both will reach ${w1.high_c} °C.`;
  return [
    { role: 'user', content: `Which will be warmer on ${d}, ${c1} or ${c2}?` },
    think(mode, `I need both forecasts for ${d}; the two lookups are independent, so I call get_weather twice at once.`, {
      content: '',
      tool_calls: [
        { type: 'function', function: { name: 'get_weather', arguments: { city: c1, date: d } } },
        { type: 'function', function: { name: 'get_weather', arguments: { city: c2, date: d } } },
      ],
    }),
    { role: 'tool', content: JSON.stringify(w1) },
    { role: 'tool', content: JSON.stringify(w2) },
    think(mode, `${c1}: high ${w1.high_c} °C. ${c2}: high ${w2.high_c} °C. Compare the highs.`, { content: verdict }),
  ];
}

function conversion(rng: Rng, mode: ThinkingMode): Turns {
  const pairs: [string, string][] = [['km', 'mile'], ['mile', 'km'], ['kg', 'lb'], ['lb', 'kg'], ['C', 'F'], ['F', 'C'], ['ft', 'm'], ['m', 'ft'], ['g', 'lb']];
  const [from, to] = rng.pick(pairs);
  const value = from === 'C' ? rng.int(-20, 40) : from === 'F' ? rng.int(0, 100) : rng.int(1, 500);
  const result = convert(value, from, to);
  return [
    { role: 'user', content: rng.pick([`Convert ${value} ${from} to ${to}.`, `How many ${to} is ${value} ${from}?`]) },
    think(mode, `A unit conversion from ${from} to ${to}; convert_units does it exactly.`, { content: '', tool_calls: [{ type: 'function', function: { name: 'convert_units', arguments: { value, from, to } } }] }),
    { role: 'tool', content: JSON.stringify({ value: result, unit: to }) },
    think(mode, `The converter returned ${result} ${to}.`, { content: `${value} ${from} is ${result} ${to}.` }),
  ];
}

function calculatorChain(rng: Rng, mode: ThinkingMode): Turns {
  // (a × b) then + c: the second call needs the first result
  const a = rng.int(100, 9999);
  const b = rng.int(100, 9999);
  const c = rng.int(1000, 99999);
  const ab = a * b;
  return [
    { role: 'user', content: `A warehouse has ${a} crates of ${b} bolts each, plus ${c} loose bolts. How many bolts in total?` },
    think(mode, `First the bolts in crates: ${a} × ${b}. That is a large product, so I use the calculator.`, { content: '', tool_calls: [{ type: 'function', function: { name: 'calculator', arguments: { expression: `${a} * ${b}` } } }] }),
    { role: 'tool', content: JSON.stringify({ result: ab }) },
    think(mode, `${ab} bolts in crates. Now add the ${c} loose bolts.`, { content: '', tool_calls: [{ type: 'function', function: { name: 'calculator', arguments: { expression: `${ab} + ${c}` } } }] }),
    { role: 'tool', content: JSON.stringify({ result: ab + c }) },
    think(mode, `Total ${ab + c}.`, { content: `${a} × ${b} = ${ab} bolts in crates, plus ${c} loose: ${ab + c} bolts in total.` }),
  ];
}

function noToolNeeded(rng: Rng, mode: ThinkingMode): Turns {
  const p = randomProblem(rng);
  const reasoning = p.op === '+' && p.a < 100 && p.b < 100 ? `This is small enough to do directly, no tool needed.\n${explainAdd(p.a, p.b)}` : `No tool needed; I can work it out.\n${explain(p)}`;
  return [
    { role: 'user', content: `Quick one: what is ${p.a} ${p.op} ${p.b}?` },
    think(mode, reasoning, { content: `${p.answer}` }),
  ];
}

const PATTERNS = [weatherOne, weatherCompare, conversion, calculatorChain, noToolNeeded];

export function toolConversation(rng: Rng): { messages: ChatMessage[]; mode: ThinkingMode } {
  const mode: ThinkingMode = rng.chance(0.7) ? 'thinking' : 'chat';
  const messages: ChatMessage[] = [{ role: 'system', content: rng.pick(SYSTEMS), tools: TOOLS }];
  // sometimes a second exchange in the same conversation (earlier reasoning is then dropped by the encoder)
  const n = rng.chance(0.25) ? 2 : 1;
  for (let i = 0; i < n; i++) messages.push(...rng.pick(PATTERNS)(rng, mode));
  return { messages, mode };
}

export const toolChatSource: CorpusSource = {
  name: 'tool-chat',
  kind: 'synthetic',
  package: 'dsv32',
  install: '(generated by src/data/synthetic/tool-chat.ts)',
  licence: 'MIT (generated by dsv32)',
  description: 'Chat conversations with DSML tool calls (calculator, weather, unit conversion): single, parallel and chained calls, 70% thinking mode',
  requiredByDefault: true,
  defaultBudgetBytes: 4 * 2 ** 20,
  weight: 4,
  probe: () => ({ found: true, version: 'generated', location: 'src/data/synthetic/tool-chat.ts' }),
  async *documents(ctx) {
    let used = 0;
    for (let i = 0; used < ctx.budgetBytes; i++) {
      const { messages, mode } = toolConversation(ctx.rng);
      const text = encodeMessages(messages, { mode });
      used += Buffer.byteLength(text);
      yield { id: `tool-chat/${String(i).padStart(7, '0')}`, source: 'tool-chat', text, messages, mode };
    }
  },
};
