// An engine request's events gathered per sequence index: the tokens, their events, and the finish.
import type { EngineEvent, FinishEvent, TokenEvent } from '../../src/engine/types.js';

export interface Result { tokens: number[][]; events: TokenEvent[][]; finish: FinishEvent[] }

export async function collect(it: AsyncIterable<EngineEvent>): Promise<Result> {
  const r: Result = { tokens: [], events: [], finish: [] };
  for await (const e of it) {
    if (e.type === 'token') {
      (r.tokens[e.index] ??= []).push(e.tokenId);
      (r.events[e.index] ??= []).push(e);
    } else r.finish[e.index] = e;
  }
  return r;
}
