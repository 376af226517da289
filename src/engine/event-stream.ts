// A request's events as an async iterable: the engine loop pushes, the consumer pulls at its own pace
// (events queue up unboundedly; a consumer that stops early — break, return() — calls onCancel, which
// the engine turns into an abort).
export class EventStream<T> implements AsyncIterable<T> {
  private readonly queue: T[] = [];
  private waiter: ((r: IteratorResult<T>) => void) | null = null;
  private failWaiter: ((e: unknown) => void) | null = null;
  private ended = false;
  private error: unknown = null;
  private iterated = false;

  constructor(private readonly onCancel: () => void) {}

  push(v: T): void {
    if (this.ended) return;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = this.failWaiter = null;
      w({ value: v, done: false });
    } else this.queue.push(v);
  }

  end(error: unknown = null): void {
    if (this.ended) return;
    this.ended = true;
    this.error = error;
    if (this.waiter) {
      const w = this.waiter;
      const f = this.failWaiter!;
      this.waiter = this.failWaiter = null;
      if (error !== null) f(error);
      else w({ value: undefined, done: true });
    }
  }

  get isEnded(): boolean {
    return this.ended;
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    if (this.iterated) throw new Error('EventStream: a request\'s events can be iterated once');
    this.iterated = true;
    return {
      next: () => {
        if (this.queue.length) return Promise.resolve({ value: this.queue.shift()!, done: false });
        if (this.ended) {
          if (this.error !== null) {
            const e = this.error;
            this.error = null;
            return Promise.reject(e);
          }
          return Promise.resolve({ value: undefined, done: true });
        }
        return new Promise((resolve, reject) => {
          this.waiter = resolve;
          this.failWaiter = reject;
        });
      },
      return: () => {
        if (!this.ended) this.onCancel();
        this.ended = true;
        this.queue.length = 0;
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}
