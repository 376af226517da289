// Structured record of an agent run: one JSON object per line (JSONL), also kept in memory. Lines are
// written synchronously so a crash or kill leaves every finished step on disk.
import { closeSync, openSync, writeSync } from 'node:fs';
import { DsvError } from '../errors.js';
import type { AgentMessage, AgentToolCall, ModelUsage } from './messages.js';
import type { ToolErrorKind } from './tools.js';

export interface TokenCounts {
  /** Context size before the model call, by the run's counter. */
  prompt: number;
  /** Tokens the model produced (reasoning + content + tool calls), by the run's counter. */
  completion: number;
  /** False when the counter is the approximate heuristic. */
  exact: boolean;
  /** What the server reported, if it did. */
  server?: ModelUsage;
}

export interface ToolResultRecord {
  id: string;
  name: string;
  ok: boolean;
  errorKind?: ToolErrorKind;
  content: string;
  ms: number;
}

export interface DroppedRecord {
  role: AgentMessage['role'];
  /** For assistant messages: the tool calls they made. */
  tool_calls?: { id: string; name: string }[];
  /** For tool messages: which call they answered. */
  tool_call_id?: string;
  chars: number;
}

export type TranscriptEvent =
  | { type: 'run_start'; run: string; model: string; task: string; system?: string; tools: string[]; maxSteps: number; counter: string; context?: { strategy: string; windowTokens: number; threshold: number } }
  | {
      type: 'step';
      run: string;
      step: number;
      reasoning: string;
      content: string;
      tool_calls: AgentToolCall[];
      tool_results: ToolResultRecord[];
      finish_reason: string;
      tokens: TokenCounts;
      warnings?: string[];
      ms: number;
    }
  | {
      type: 'context';
      run: string;
      step: number;
      strategy: string;
      action: 'compact' | 'abandon';
      tokensBefore: number;
      tokensAfter?: number;
      limit: number;
      kept: { role: AgentMessage['role']; chars: number }[];
      dropped: DroppedRecord[];
      summary?: string;
      summaryTokens?: TokenCounts;
    }
  | { type: 'run_end'; run: string; status: string; steps: number; finalAnswer: string | null; error?: string; totalTokens: { prompt: number; completion: number } }
  | { type: 'selection'; run: string; strategy: string; chosen: string | null; candidates: { run: string; status: string; steps: number }[] };

export type TimedEvent = TranscriptEvent & { ts: string };

export class TranscriptError extends DsvError {}

export class Transcript {
  readonly events: TimedEvent[] = [];
  private fd: number | undefined;

  /** `path`: JSONL file to write (truncated); omit to keep events in memory only. */
  constructor(readonly path?: string) {
    if (path) {
      try {
        this.fd = openSync(path, 'w');
      } catch (e) {
        throw new TranscriptError(`--transcript ${path}: cannot open for writing (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, { cause: e });
      }
    }
  }

  write(ev: TranscriptEvent): void {
    const timed = { ts: new Date().toISOString(), ...ev } as TimedEvent;
    this.events.push(timed);
    if (this.fd !== undefined) writeSync(this.fd, JSON.stringify(timed) + '\n');
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}
