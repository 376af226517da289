// A scripted LLM for the synthesis tests, served by the agent tests' fake OpenAI server. It plays both
// roles: the synthesis agent (recognised by its system prompt; the stage comes from "Stage: ..." in
// the task) and the policy. Replies depend only on the conversation so far, so a restarted run gets
// the same replies. Category "inventory": products(name, price, stock).
import type { RecordedRequest, ScriptedReply } from '../agent/fake-model-server.js';

const call = (name: string, args: unknown) => ({ name, arguments: JSON.stringify(args) });

export const PRICE_PROMPT = 'What is the price of the product named widget? Submit {"answer": <price>}.';
export const VALUE_PROMPT = 'What is the total stock value (price times stock, summed over all products)? Submit {"answer": <number>}.';
export const OUT_PROMPT = 'How many products are out of stock (stock equal to 0)? Submit {"answer": <count>}.';

const GET_PRODUCT_PY = `import json, os, sqlite3, sys
a = json.load(sys.stdin)
row = sqlite3.connect(os.environ['DSV32_DB']).execute('SELECT name, price, stock FROM products WHERE name = ?', (a['name'],)).fetchone()
if row is None:
    sys.stderr.write('no product named %s\\n' % a['name']); sys.exit(2)
print(json.dumps({'name': row[0], 'price': row[1], 'stock': row[2]}))
`;
const LIST_PRODUCTS_PY = `import json, os, sqlite3, sys
json.load(sys.stdin)
rows = sqlite3.connect(os.environ['DSV32_DB']).execute('SELECT name, price, stock FROM products ORDER BY name').fetchall()
print(json.dumps([{'name': n, 'price': p, 'stock': s} for n, p, s in rows]))
`;
const VALUE_SOLUTION_PY = `from dsv32_env import call, submit
submit({'answer': sum(p['price'] * p['stock'] for p in call('list_products'))})
`;
const VALUE_VERIFIER_PY = `import json, os, sqlite3, sys
inp = json.load(sys.stdin)
(total,) = sqlite3.connect('file:' + os.environ['DSV32_DB'] + '?mode=ro', uri=True).execute('SELECT sum(price * stock) FROM products').fetchone()
ans = inp['answer'].get('answer') if isinstance(inp['answer'], dict) else None
print(json.dumps({'score': 1 if ans == total else 0, 'reason': 'expected %s, got %r' % (total, ans)}))
`;
const schema = (name: string, description: string, properties: Record<string, unknown>, required: string[], examples: unknown[]) =>
  JSON.stringify({ name, description, parameters: { type: 'object', properties, required, additionalProperties: false }, examples });

function synthReply(stage: string, step: number): ScriptedReply {
  if (stage === 'build') {
    return [
      { tool_calls: [call('run_sql', { sql: "CREATE TABLE products (name TEXT PRIMARY KEY, price INTEGER NOT NULL, stock INTEGER NOT NULL); INSERT INTO products VALUES ('widget', 5, 10), ('gadget', 12, 3), ('gizmo', 7, 0);" })] },
      {
        tool_calls: [
          call('write_file', { path: 'tools/get_product.schema.json', content: schema('get_product', 'Price and stock of a product', { name: { type: 'string' } }, ['name'], [{ name: 'gadget' }]) }),
          call('write_file', { path: 'tools/get_product.py', content: GET_PRODUCT_PY }),
        ],
      },
      { tool_calls: [call('run_tool', { name: 'get_product', args: { name: 'widget' } })] },
      { content: 'The products table and get_product are ready.' },
    ][Math.min(step, 3)]!;
  }
  if (stage === 'task level 1') {
    // First a task whose verifier disagrees with its solution (validation must reject it), then the repair.
    const answer = step === 0 ? 6 : 5;
    return { tool_calls: [call('submit_task', { prompt: PRICE_PROMPT, solution: { calls: [{ tool: 'get_product', args: { name: 'widget' } }], answer: { answer } }, verifier: { exact: { answer: 5 } } })] };
  }
  if (stage === 'task level 2') {
    return [
      {
        tool_calls: [
          call('write_file', { path: 'tools/list_products.schema.json', content: schema('list_products', 'All products with price and stock', {}, [], [{}]) }),
          call('write_file', { path: 'tools/list_products.py', content: LIST_PRODUCTS_PY }),
        ],
      },
      {
        tool_calls: [
          call('write_file', { path: 'solutions/stock_value.py', content: VALUE_SOLUTION_PY }),
          call('write_file', { path: 'verifiers/stock_value.py', content: VALUE_VERIFIER_PY }),
        ],
      },
      { tool_calls: [call('submit_task', { prompt: VALUE_PROMPT, solution: { program: 'solutions/stock_value.py' }, verifier: { program: 'verifiers/stock_value.py' } })] },
    ][Math.min(step, 2)]!;
  }
  // Level 3: a re-worded copy of level 1 (must be rejected as a duplicate), then a new task.
  if (step === 0) {
    return { tool_calls: [call('submit_task', { prompt: 'what is the PRICE of the product named   Widget!! Submit {answer: <price>}', solution: { calls: [], answer: { answer: 5 } }, verifier: { exact: { answer: 5 } } })] };
  }
  return { tool_calls: [call('submit_task', { prompt: OUT_PROMPT, solution: { calls: [{ tool: 'list_products', args: {} }], answer: { answer: 1 } }, verifier: { exact: { answer: 1 } } })] };
}

/** The policy solves the price and stock-value tasks and always gets the out-of-stock count wrong. */
function policyReply(prompt: string, step: number): ScriptedReply {
  const price = prompt.includes('price of the product');
  if (step === 0) return { tool_calls: [price ? call('get_product', { name: 'widget' }) : call('list_products', {})] };
  const answer = price ? 5 : prompt.includes('stock value') ? 86 : 7;
  return { tool_calls: [call('submit_result', { answer })] };
}

export interface DoubleState {
  /** Requests seen per role/stage, e.g. "synth:build", "policy". */
  counts: Map<string, number>;
}

export function conversationRole(req: RecordedRequest): string {
  const msgs = req.body.messages as Array<{ role: string; content: string }>;
  const sys = msgs.find((m) => m.role === 'system')?.content ?? '';
  if (!sys.startsWith('You build a tool-use environment')) return 'policy';
  const user = msgs.find((m) => m.role === 'user')?.content ?? '';
  return `synth:${/Stage: ([a-z0-9 ]+)\./.exec(user)?.[1] ?? '?'}`;
}

export function inventoryDouble(state: DoubleState, hook?: (role: string, step: number) => Promise<void> | void) {
  return async (req: RecordedRequest): Promise<ScriptedReply> => {
    const msgs = req.body.messages as Array<{ role: string; content: string }>;
    const step = msgs.filter((m) => m.role === 'assistant').length;
    const role = conversationRole(req);
    state.counts.set(role, (state.counts.get(role) ?? 0) + 1);
    await hook?.(role, step);
    const usage = { prompt_tokens: 100, completion_tokens: 10 };
    if (role === 'policy') return { ...policyReply(msgs.find((m) => m.role === 'user')!.content, step), usage };
    return { ...synthReply(role.slice('synth:'.length), step), usage };
  };
}
