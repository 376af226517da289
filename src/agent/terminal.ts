// Renders an agent run on a terminal as it happens: reasoning dimmed, answer text plain, tool calls and
// their results on their own lines, context-management events noted. Implemented as loop hooks.
import type { AgentHooks } from './loop.js';
import type { AgentToolCall, ModelDelta, ModelResponse } from './messages.js';
import type { ToolResult } from './tools.js';

export interface TerminalOptions {
  /** ANSI styling (dim reasoning, colored markers); default off. */
  color?: boolean;
  /** Tool results longer than this are cut for display (the model still gets all of it). */
  maxResultChars?: number;
}

type Out = { write(s: string): unknown };

export class TerminalRenderer {
  private readonly color: boolean;
  private readonly maxResult: number;
  /** What the current line's text is: nothing yet, reasoning or content (to break lines between kinds). */
  private current: 'none' | 'reasoning' | 'content' = 'none';
  private streamedStep = 0;
  private atLineStart = true;

  constructor(
    private readonly out: Out,
    opts: TerminalOptions = {},
  ) {
    this.color = opts.color ?? false;
    this.maxResult = opts.maxResultChars ?? 600;
  }

  private style(code: string, s: string, reset: string): string {
    return this.color ? `\x1b[${code}m${s}\x1b[${reset}m` : s;
  }
  private dim = (s: string) => this.style('2', s, '22');
  private cyan = (s: string) => this.style('36', s, '39');
  private red = (s: string) => this.style('31', s, '39');
  private green = (s: string) => this.style('32', s, '39');
  private yellow = (s: string) => this.style('33', s, '39');

  private write(s: string): void {
    if (!s) return;
    this.out.write(s);
    this.atLineStart = s.endsWith('\n');
  }

  private line(s: string): void {
    if (!this.atLineStart) this.write('\n');
    this.write(s + '\n');
    this.current = 'none';
  }

  private text(kind: 'reasoning' | 'content', s: string): void {
    if (this.current !== kind) {
      if (!this.atLineStart) this.write('\n');
      if (kind === 'reasoning') this.write(this.dim('thinking: '));
      this.current = kind;
    }
    this.write(kind === 'reasoning' ? this.dim(s) : s);
  }

  /** Loop hooks that draw the run; combine with your own hooks by spreading. */
  hooks(): AgentHooks {
    return {
      beforeStep: ({ step }) => {
        this.line(this.cyan(`── step ${step} ──`));
      },
      onDelta: (step: number, d: ModelDelta) => {
        this.streamedStep = step;
        if (d.type === 'reasoning' || d.type === 'content') this.text(d.type, d.text);
      },
      onModelResponse: (step: number, res: ModelResponse) => {
        // Non-streaming clients: show the whole response now.
        if (this.streamedStep !== step) {
          if (res.message.reasoning_content) this.text('reasoning', res.message.reasoning_content);
          if (res.message.content) this.text('content', res.message.content);
        }
        if (!this.atLineStart) this.write('\n');
        this.current = 'none';
        for (const w of res.warnings ?? []) this.line(this.yellow(`warning: ${w}`));
      },
      onToolCall: (_step: number, call: AgentToolCall) => {
        this.line(`${this.cyan('→')} ${call.function.name}(${call.function.arguments})`);
      },
      onToolResult: (_step: number, call: AgentToolCall, r: ToolResult) => {
        let body = r.content.length > this.maxResult ? `${r.content.slice(0, this.maxResult)}… [${r.content.length - this.maxResult} more chars]` : r.content;
        body = body.replace(/\n/g, '\n  ');
        this.line(`${r.ok ? this.green('←') : this.red('✗')} ${call.function.name}: ${r.ok ? body : this.red(body)}`);
      },
      onContext: (ev) => {
        this.line(
          this.yellow(
            ev.action === 'abandon'
              ? `context: ${ev.tokensBefore} tokens over the limit; trajectory abandoned (${ev.strategy})`
              : `context: ${ev.strategy} dropped ${ev.dropped} messages, ${ev.tokensBefore} → ${ev.tokensAfter} tokens`,
          ),
        );
      },
    };
  }
}
