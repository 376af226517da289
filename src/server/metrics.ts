// Prometheus metrics of one server (its own registry, so several servers in one process, as in tests,
// do not collide). Engine state (queue depth, running sequences, cache use, preemptions, prefix hits,
// MTP acceptance) is read from engine.stats() at scrape time; latencies are observed by the request
// handlers: TTFT from the request's arrival to its first token, TPOT as every gap between two tokens
// of one sequence (vLLM's definition). Throughput is generated tokens over the last WINDOW seconds,
// counted in one-second buckets, so a scrape shows the current rate rather than a lifetime average.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Engine } from '../engine/types.js';

const WINDOW = 10;

export class ServerMetrics {
  readonly registry = new Registry();
  readonly ttft: Histogram;
  readonly tpot: Histogram;
  readonly e2e: Histogram;
  readonly requests: Counter<'endpoint' | 'status'>;
  readonly promptTokens: Counter;
  readonly generationTokens: Counter;
  private readonly buckets = new Float64Array(WINDOW + 1);
  private bucketSecond = 0;
  private started = performance.now();

  /** `engine`: the engine serving now (read at each scrape: a weight update swaps it) */
  constructor(engine: () => Engine) {
    const r = this.registry;
    const fromStats = (name: string, help: string, read: (s: ReturnType<Engine['stats']>) => number) =>
      new Gauge({ name, help, registers: [r], collect() { this.set(read(engine().stats())); } });
    fromStats('dsv32_queue_depth', 'requests waiting for admission to the engine', (s) => s.waiting);
    fromStats('dsv32_running_sequences', 'sequences being generated', (s) => s.running);
    fromStats('dsv32_cache_usage_ratio', 'fraction of KV-cache blocks in use (0..1)', (s) => s.cacheUsage);
    fromStats('dsv32_cache_blocks', 'KV-cache blocks in the pool', (s) => s.totalBlocks);
    fromStats('dsv32_preemptions', 'sequences preempted since start', (s) => s.preempted);
    fromStats('dsv32_prefix_cache_hit_tokens', 'prompt tokens served from the prefix cache since start', (s) => s.prefixHitTokens);
    fromStats('dsv32_spec_decode_draft_tokens', 'MTP draft tokens proposed since start', (s) => s.draftProposed);
    fromStats('dsv32_spec_decode_accepted_tokens', 'MTP draft tokens accepted since start', (s) => s.draftAccepted);
    fromStats('dsv32_spec_decode_acceptance_ratio', 'accepted / proposed MTP draft tokens since start (0 when none proposed)', (s) => (s.draftProposed ? s.draftAccepted / s.draftProposed : 0));
    const self = this;
    new Gauge({ name: 'dsv32_generation_tokens_per_second', help: `generated tokens per second over the last ${WINDOW} s`, registers: [r], collect() { this.set(self.tokensPerSecond()); } });
    this.ttft = new Histogram({
      name: 'dsv32_time_to_first_token_seconds',
      help: 'time from request arrival to its first generated token',
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80],
      registers: [r],
    });
    this.tpot = new Histogram({
      name: 'dsv32_time_per_output_token_seconds',
      help: 'time between two consecutive tokens of one sequence',
      buckets: [0.005, 0.01, 0.02, 0.04, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5],
      registers: [r],
    });
    this.e2e = new Histogram({
      name: 'dsv32_e2e_request_latency_seconds',
      help: 'time from request arrival to its last byte',
      buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160],
      registers: [r],
    });
    this.requests = new Counter({ name: 'dsv32_requests_total', help: 'HTTP requests answered, by endpoint and status', labelNames: ['endpoint', 'status'], registers: [r] });
    this.promptTokens = new Counter({ name: 'dsv32_prompt_tokens_total', help: 'prompt tokens of finished requests', registers: [r] });
    this.generationTokens = new Counter({ name: 'dsv32_generation_tokens_total', help: 'tokens generated', registers: [r] });
  }

  tokenGenerated(): void {
    this.generationTokens.inc();
    this.roll();
    this.buckets[this.bucketSecond % (WINDOW + 1)]!++;
  }

  /** Tokens in the last WINDOW whole seconds (the current, partial second excluded) per second. */
  tokensPerSecond(): number {
    this.roll();
    let sum = 0;
    for (let i = 1; i <= WINDOW; i++) sum += this.buckets[(this.bucketSecond - i + (WINDOW + 1) * 2) % (WINDOW + 1)]!;
    const elapsed = Math.min(WINDOW, this.bucketSecond);
    return elapsed > 0 ? sum / elapsed : 0;
  }

  /** Advance to the current second, clearing the buckets of the seconds that passed. */
  private roll(): void {
    const now = Math.floor((performance.now() - this.started) / 1000);
    for (let s = this.bucketSecond + 1; s <= now && s <= this.bucketSecond + WINDOW + 1; s++) this.buckets[s % (WINDOW + 1)] = 0;
    this.bucketSecond = Math.max(this.bucketSecond, now);
  }
}
