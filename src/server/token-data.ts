// Per-token data in responses: OpenAI logprobs (the chat and the legacy completions shapes) and the RL
// extension fields. The shapes (README.md in this folder):
//   token_ids:       number[]                one id per generated token (stop tokens included)
//   sampling_mask:   number[][]              per token, the ascending ids the top-k/top-p/min-p filters kept
//   routed_experts:  number[][][]            [token][MoE layer][k], the experts each token was routed to
//   prompt_routed_experts: number[][][]      [prompt position 0 .. P − 2][MoE layer][k], with routed_experts:
//                                            the rows that produced prompt tokens 1 .. P − 1 (row P − 1 is the
//                                            first generated token's routed_experts), so the two cover every
//                                            input position of a forward over prompt + completion
//   indexer_topk:    number[][][]            [token][layer][index_topk], key positions the indexer kept (−1 = none)
//   prompt_indexer_topk: number[][][]        [prompt position 0 .. P − 2][layer][selected key positions] (holes
//                                            dropped): with indexer_topk, the selections of every input position
// In a stream each chunk carries these for the tokens generated in that step; prompt_routed_experts and
// prompt_indexer_topk come once, on the chunk with the choice's first token (the engine sends it on that token's event).
import type { TokenEvent } from '../engine/types.js';
import { tokenBytes, tokenText, type TextCodec } from './codec.js';
import type { OutputOptions } from './sampling.js';

export interface ChatLogprob {
  token: string;
  logprob: number;
  bytes: number[] | null;
  top_logprobs: { token: string; logprob: number; bytes: number[] | null }[];
}

/** The experts of a routed token, [layer][k] when the shape is known, else one flat list per token. */
export interface RouteShape {
  layers: number;
  k: number;
}

export class TokenData {
  readonly tokenIds: number[] = [];
  readonly chatLogprobs: ChatLogprob[] = [];
  readonly samplingMask: number[][] = [];
  readonly routedExperts: (number[][] | number[])[] = [];
  readonly indexerTopk: number[][][] = [];
  /** set by the choice's first token event when routes were asked for */
  promptRoutedExperts: (number[][] | number[])[] | null = null;
  /** set likewise when indexer selections were asked for */
  promptIndexerTopk: number[][][] | null = null;
  // legacy completions logprobs
  readonly tokens: string[] = [];
  readonly tokenLogprobs: number[] = [];
  readonly topLogprobs: Record<string, number>[] = [];
  readonly textOffset: number[] = [];
  private offset = 0;

  constructor(
    private readonly codec: TextCodec | null,
    private readonly out: OutputOptions,
    private readonly routeShape: RouteShape | undefined,
    /** where text offsets start (the echoed prompt's length) */
    startOffset = 0,
    /** the engine's index_topk (Engine.info.indexTopk), the width of promptIndexerTopk's rows */
    private readonly indexTopk?: number,
  ) {
    this.offset = startOffset;
  }

  /** the text offset after the last token added (legacy logprobs) */
  get textOffsetEnd(): number {
    return this.offset;
  }

  add(ev: TokenEvent, legacy: boolean): void {
    const o = this.out;
    this.tokenIds.push(ev.tokenId);
    if (o.logprobs >= 0) {
      const codec = o.tokensAsIds ? null : this.codec; // no codec: tokens are named token_id:<id>
      const text = tokenText(codec, ev.tokenId);
      const top = (ev.topLogprobs ?? []).slice(0, o.logprobs);
      if (legacy) {
        this.tokens.push(text);
        this.tokenLogprobs.push(ev.logprob);
        const m: Record<string, number> = {};
        for (const [id, lp] of top) m[tokenText(codec, id)] ??= lp;
        this.topLogprobs.push(m);
        this.textOffset.push(this.offset);
        this.offset += text.length;
      } else {
        const bytes = (id: number) => (this.codec ? tokenBytes(this.codec, id) : null);
        this.chatLogprobs.push({
          token: text,
          logprob: ev.logprob,
          bytes: bytes(ev.tokenId),
          top_logprobs: top.map(([id, lp]) => ({ token: tokenText(codec, id), logprob: lp, bytes: bytes(id) })),
        });
      }
    }
    if (o.returnSamplingMask) this.samplingMask.push(ev.samplingMask ? Array.from(ev.samplingMask) : []);
    if (o.returnRoutedExperts) this.routedExperts.push(routesOf(ev.routedExperts, this.routeShape));
    if (o.returnRoutedExperts && ev.promptRoutedExperts) this.promptRoutedExperts = promptRoutesOf(ev.promptRoutedExperts, ev.routedExperts?.length ?? 0, this.routeShape);
    if (o.returnIndexerTopk && ev.promptIndexerTopk) this.promptIndexerTopk = promptTopkOf(ev.promptIndexerTopk, ev.indexerTopk?.length ?? 0, this.indexTopk ?? 0);
    if (o.returnIndexerTopk) this.indexerTopk.push((ev.indexerTopk ?? []).map((a) => Array.from(a)));
  }

  /** The RL/extension fields of a choice (only those asked for). */
  extensionFields(): Record<string, unknown> {
    const o = this.out;
    const f: Record<string, unknown> = {};
    if (o.returnTokenIds) f.token_ids = this.tokenIds;
    if (o.returnSamplingMask) f.sampling_mask = this.samplingMask;
    if (o.returnRoutedExperts) f.routed_experts = this.routedExperts;
    if (o.returnRoutedExperts && this.promptRoutedExperts) f.prompt_routed_experts = this.promptRoutedExperts;
    if (o.returnIndexerTopk) f.indexer_topk = this.indexerTopk;
    if (o.returnIndexerTopk && this.promptIndexerTopk) f.prompt_indexer_topk = this.promptIndexerTopk;
    return f;
  }

  chatLogprobsField(): { content: ChatLogprob[] } | null {
    return this.out.logprobs >= 0 ? { content: this.chatLogprobs } : null;
  }

  legacyLogprobsField(): Record<string, unknown> | null {
    if (this.out.logprobs < 0) return null;
    return { tokens: this.tokens, token_logprobs: this.tokenLogprobs, top_logprobs: this.topLogprobs, text_offset: this.textOffset };
  }
}

function routesOf(r: Int16Array | undefined, shape: RouteShape | undefined): number[][] | number[] {
  if (!r) return [];
  if (!shape || shape.layers * shape.k !== r.length) return Array.from(r);
  return Array.from({ length: shape.layers }, (_, l) => Array.from(r.subarray(l * shape.k, (l + 1) * shape.k)));
}

/**
 * The prompt rows' routes [position][layer][k]; without a known shape, one flat list per position, whose
 * length is that of a generated token's routes (`per`, the same layers·k).
 */
function promptRoutesOf(r: Int16Array, per: number, shape: RouteShape | undefined): (number[][] | number[])[] {
  const size = shape ? shape.layers * shape.k : per;
  if (size <= 0 || r.length % size !== 0) return r.length ? [Array.from(r)] : [];
  return Array.from({ length: r.length / size }, (_, p) => routesOf(r.subarray(p * size, (p + 1) * size), shape));
}

/**
 * The prompt rows' selections [position][layer][kept positions] from the engine's [(P − 1), layers, index_topk]
 * layout with −1 holes (types.ts); index_topk is the engine's (Engine.info.indexTopk).
 */
function promptTopkOf(t: Int32Array, layers: number, k: number): number[][][] {
  const per = layers * k;
  if (!t.length || per <= 0 || t.length % per !== 0) return t.length ? [[Array.from(t).filter((x) => x >= 0)]] : [];
  return Array.from({ length: t.length / per }, (_, p) =>
    Array.from({ length: layers }, (_, l) => Array.from(t.subarray(p * per + l * k, p * per + (l + 1) * k)).filter((x) => x >= 0)));
}
