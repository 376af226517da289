// Progress of long CLI jobs (env validate, eval): a bar on stderr when stderr is a terminal, drawn with
// cli-progress; the job's own lines keep flowing (printed above the bar while it is shown). Without a
// terminal there is no bar and the lines go out as they are, so logs and pipes get plain text.
import cliProgress from 'cli-progress';

export interface Progress {
  /** one more unit done; `note` is shown after the counts */
  tick(note?: string): void;
  /** `done` units are done (a resumed job starts part-way) */
  update(done: number, note?: string): void;
  /** print a line of the job's output (stdout normally; above the bar when both streams are a terminal) */
  line(text: string, to?: 'stdout' | 'stderr'): void;
  stop(): void;
}

export function progress(label: string, total: number, o: { enabled?: boolean } = {}): Progress {
  const bar = (o.enabled ?? true) && process.stderr.isTTY && total > 0 ? new cliProgress.MultiBar(
    { format: `${label} [{bar}] {value}/{total} {percentage}% · {duration_formatted} · eta {eta_formatted} {note}`, stream: process.stderr, hideCursor: true, clearOnComplete: true, etaBuffer: 20 },
    cliProgress.Presets.shades_classic,
  ) : null;
  const b = bar?.create(total, 0, { note: '' }) ?? null;
  // cli-progress redraws on a timer, which a synchronous job (a model forward) never lets run: redraw
  // from the job's own ticks, at most every 100 ms
  let drawn = 0;
  const draw = (): void => {
    const now = Date.now();
    if (bar && now - drawn >= 100) {
      drawn = now;
      bar.update();
    }
  };
  return {
    tick(note = '') {
      b?.increment(1, { note });
      draw();
    },
    update(done, note = '') {
      b?.update(done, { note });
      draw();
    },
    line(text, to = 'stdout') {
      // with the bar on the same terminal, a raw write would be overdrawn: route it through the bar
      if (bar && (to === 'stderr' || process.stdout.isTTY)) bar.log(`${text}\n`);
      else (to === 'stdout' ? process.stdout : process.stderr).write(`${text}\n`);
    },
    stop() {
      bar?.stop();
    },
  };
}
