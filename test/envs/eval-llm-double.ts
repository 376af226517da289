// A scripted policy for the counter test environment (counter-env.ts): it adds to counter a when
// asked, then submits a total. `correct(prompt, n)` decides whether the n-th conversation (0-based)
// about that prompt submits the right total, so tests control c out of n exactly.
import type { RecordedRequest, ScriptedReply } from '../agent/fake-model-server.js';

export function counterPolicy(correct: (prompt: string, n: number) => boolean) {
  const seen = new Map<string, number>();
  return (req: RecordedRequest): ScriptedReply => {
    const msgs = req.body.messages as Array<{ role: string; content: string }>;
    const prompt = msgs.find((m) => m.role === 'user')!.content;
    const step = msgs.filter((m) => m.role === 'assistant').length;
    const delta = Number(/Add (\d+)/.exec(prompt)?.[1] ?? 0);
    if (step === 0) {
      const n = seen.get(prompt) ?? 0;
      seen.set(prompt, n + 1);
      if (delta) return { tool_calls: [{ name: 'add_to_counter', arguments: JSON.stringify({ name: 'a', delta }) }] };
    }
    const n = (seen.get(prompt) ?? 1) - 1;
    const total = 1 + delta + 5 + (correct(prompt, n) ? 0 : 100);
    return { tool_calls: [{ name: 'submit_answer', arguments: JSON.stringify({ total }) }] };
  };
}
