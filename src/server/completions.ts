// POST /v1/completions: raw text in, raw text out, no chat format. The prompt is a string, an array of
// token ids (the only form accepted without a tokenizer, --skip-tokenizer-init), or a batch of either;
// batch prompt p's choice j has index p·n + j, as in the OpenAI API. Defaults follow that API too:
// max_tokens 16, special tokens skipped in the text unless skip_special_tokens is false (the agent's
// completion client turns it off to parse `</think>` and the DSML block itself).
import { randomUUID } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { TextCodec } from './codec.js';
import { checkModel, disconnectSignal, engineError, type ServerContext } from './context.js';
import { ApiError, badField } from './errors.js';
import { mergeGenerations, startGeneration, type ChoiceStep, type GenerationResult } from './generation.js';
import { outputOptions, samplingParams, wantsTokenData } from './sampling.js';
import { completionRequestSchema, parseRequest } from './schemas.js';
import { SseWriter, guardStream } from './sse.js';
import { TokenData } from './token-data.js';

const DEFAULT_MAX_TOKENS = 16;

function promptList(prompt: string | number[] | string[] | number[][], codec: TextCodec | null, vocab: number): { ids: number[]; text: string | null }[] {
  const list: (string | number[])[] = typeof prompt === 'string' ? [prompt] : typeof prompt[0] === 'number' ? [prompt as number[]] : (prompt as (string | number[])[]);
  const batch = Array.isArray(prompt) && (Array.isArray(prompt[0]) || typeof prompt[0] === 'string');
  return list.map((p, i) => {
    const where = batch ? `prompt[${i}]` : 'prompt';
    if (typeof p === 'string') {
      if (!codec) throw new ApiError(400, `${where}: this server was started with --skip-tokenizer-init and takes prompts as token ids only`, where, 'tokenizer_unavailable');
      const ids = codec.encode(p);
      if (!ids.length) throw badField(where, 'must not be empty');
      return { ids, text: p };
    }
    p.forEach((id, j) => {
      if (id >= vocab) throw badField(`${where}[${j}]`, `${id} is not a token id (vocabulary size ${vocab})`);
    });
    return { ids: p, text: null };
  });
}

export async function completions(ctx: ServerContext, request: FastifyRequest, reply: FastifyReply): Promise<void> {
  const arrivedAt = performance.now();
  const req = parseRequest(completionRequestSchema, request.body);
  checkModel(ctx, req.model);
  if (req.suffix) throw badField('suffix', 'is not supported (DeepSeek-V3.2 has no fill-in-the-middle format)', 'unsupported_parameter');
  if (req.best_of != null && req.best_of !== (req.n ?? 1)) throw badField('best_of', 'must equal n (sequences are not ranked server-side)', 'unsupported_value');
  if (req.echo && req.logprobs != null) throw badField('echo', 'with logprobs would need prompt logprobs, which the engine does not compute', 'unsupported_value');
  const info = ctx.engine.info;
  const prompts = promptList(req.prompt, ctx.codec, info.vocabSize);
  const logprobs = req.logprobs ?? -1;
  const skipSpecial = req.skip_special_tokens ?? true;
  // An explicit max_tokens must fit the context; the default shrinks to what is left of it.
  const params = prompts.map((p) => samplingParams(req, info, p.ids.length, 'max_tokens', req.max_tokens ?? Math.max(1, Math.min(DEFAULT_MAX_TOKENS, info.maxModelLen - p.ids.length)), logprobs));
  const out = outputOptions(req, logprobs);
  const id = `cmpl-${randomUUID().replace(/-/g, '')}`;
  const created = Math.floor(Date.now() / 1000);
  const n = req.n ?? 1;
  const signal = disconnectSignal(reply);
  const echoText = prompts.map((p) => (req.echo ? (p.text ?? (ctx.codec ? ctx.codec.decode(p.ids, { skipSpecialTokens: skipSpecial }) : '')) : ''));

  const gens: Awaited<ReturnType<typeof startGeneration>>[] = [];
  try {
    for (let i = 0; i < prompts.length; i++) {
      const leave = ctx.admission.enter();
      try {
        const g = await startGeneration({ engine: ctx.engine, codec: ctx.codec, metrics: ctx.metrics, requestId: `${id}-${i}`, promptIds: prompts[i]!.ids, params: params[i]!, skipSpecialTokens: skipSpecial, signal, arrivedAt });
        gens.push(g);
      } finally {
        leave();
      }
    }
  } catch (e) {
    for (const g of gens) g.abort();
    await Promise.all(gens.map((g) => g.steps.return({ promptTokens: 0, completionTokens: 0 })));
    throw engineError(e, 'prompt');
  }
  const merged = mergeGenerations<ChoiceStep, GenerationResult>(gens.map((g) => g.steps), () => gens.forEach((g) => g.abort()));
  const choices = Array.from({ length: prompts.length * n }, (_, k) => ({ text: echoText[Math.floor(k / n)]!, data: new TokenData(ctx.codec, out, ctx.routeShape, echoText[Math.floor(k / n)]!.length, ctx.engine.info.indexTopk), finish: null as string | null, offset: echoText[Math.floor(k / n)]!.length }));
  const base = { id, created, model: ctx.modelName };
  const promptFields = (p: number) => (out.returnTokenIds ? { prompt_token_ids: prompts[p]!.ids } : {});
  const usageOf = (rs: GenerationResult[]) => {
    const pt = rs.reduce((s, r) => s + r.promptTokens, 0);
    const ct = rs.reduce((s, r) => s + r.completionTokens, 0);
    ctx.metrics.promptTokens.inc(pt);
    return { prompt_tokens: pt, completion_tokens: ct, total_tokens: pt + ct };
  };

  if (!req.stream) {
    let r;
    for (;;) {
      r = await merged.next();
      if (r.done) break;
      const { source, value: step } = r.value;
      const c = choices[source * n + step.index]!;
      for (const t of step.tokens) c.data.add(t, true);
      c.text += step.text;
      if (step.finish) c.finish = step.finish.reason;
    }
    const usage = usageOf(r.value);
    ctx.metrics.e2e.observe((performance.now() - arrivedAt) / 1000);
    await reply.send({
      ...base,
      object: 'text_completion',
      choices: choices.map((c, index) => ({
        index,
        text: c.text,
        logprobs: c.data.legacyLogprobsField(),
        finish_reason: c.finish ?? 'abort',
        ...promptFields(Math.floor(index / n)),
        ...c.data.extensionFields(),
      })),
      usage,
    });
    return;
  }

  reply.hijack();
  const sse = new SseWriter(reply.raw);
  const includeUsage = req.stream_options?.include_usage ?? false;
  let generated = 0;
  const promptTotal = prompts.reduce((s, p) => s + p.ids.length, 0);
  const chunk = (choice: Record<string, unknown>) => ({
    ...base,
    object: 'text_completion',
    choices: [choice],
    ...(includeUsage ? { usage: req.stream_options?.continuous_usage_stats ? { prompt_tokens: promptTotal, completion_tokens: generated, total_tokens: promptTotal + generated } : null } : {}),
  });
  await guardStream(sse, request.log, async () => {
    const started = new Set<number>();
    let r;
    for (;;) {
      r = await merged.next();
      if (r.done || sse.closed) break;
      const { source, value: step } = r.value;
      const index = source * n + step.index;
      const c = choices[index]!;
      generated += step.tokens.length;
      const fresh = new TokenData(ctx.codec, out, ctx.routeShape, c.offset, ctx.engine.info.indexTopk);
      for (const t of step.tokens) fresh.add(t, true);
      c.offset = fresh.textOffsetEnd;
      // The first chunk of a choice carries its echoed prompt (and prompt ids, when asked for).
      let text = step.text;
      let first = {};
      if (!started.has(index)) {
        started.add(index);
        text = c.text + text;
        first = promptFields(source);
      }
      const hasTokenData = wantsTokenData(out, step.tokens.length);
      if (!text && !step.finish && !hasTokenData && !Object.keys(first).length) continue;
      await sse.send(chunk({ index, text, logprobs: fresh.legacyLogprobsField(), finish_reason: step.finish ? step.finish.reason : null, ...first, ...fresh.extensionFields() }));
    }
    if (r.done && !sse.closed) {
      const usage = usageOf(r.value);
      if (includeUsage) await sse.send({ ...base, object: 'text_completion', choices: [], usage });
      await sse.done();
      ctx.metrics.e2e.observe((performance.now() - arrivedAt) / 1000);
    }
  }, () => merged.return([]));
}
