// Stop strings in streamed text. The engine ends a sequence when a stop string appears, but tokens do not
// end where the stop string does, so the server cuts the text itself: it releases text only up to the
// last (longest stop − 1) characters, which might be the start of a stop string still being written, and
// at the first complete stop string releases what precedes it and drops the rest (OpenAI semantics: the
// stop string is not part of the output).
export class StopTrimmer {
  private held = '';
  private stopped = false;
  private readonly keep: number;

  constructor(private readonly stops: readonly string[]) {
    this.keep = stops.length ? Math.max(...stops.map((s) => s.length)) - 1 : 0;
  }

  /** True once a stop string was seen; later text is dropped. */
  get done(): boolean {
    return this.stopped;
  }

  push(text: string): string {
    if (this.stopped || !text) return '';
    if (!this.stops.length) return text;
    this.held += text;
    let cut = -1;
    for (const s of this.stops) {
      const at = this.held.indexOf(s);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) {
      this.stopped = true;
      const out = this.held.slice(0, cut);
      this.held = '';
      return out;
    }
    const release = Math.max(0, this.held.length - this.keep);
    const out = this.held.slice(0, release);
    this.held = this.held.slice(release);
    return out;
  }

  /** End of the sequence: what was held for a stop string that never completed. */
  flush(): string {
    const out = this.stopped ? '' : this.held;
    this.held = '';
    return out;
  }
}
