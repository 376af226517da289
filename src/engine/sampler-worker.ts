// A thread of the sampler pool (sampler-pool.ts): it waits for a new generation, then claims and samples
// jobs from the shared buffers it was last sent, if they are the generation's.
import { parentPort, workerData } from 'node:worker_threads';
import { BUFGEN, GEN, work, type PoolBuffers } from './sampler-pool.js';

const ctl = (workerData as { ctl: Int32Array }).ctl;
// Atomics.waitAsync (Node ≥ 16; not yet in TypeScript's ES2022 lib): waits without blocking the thread's
// event loop, so the buffers the pool sends still arrive
type WaitAsync = (a: Int32Array, i: number, v: number) => { async: false; value: string } | { async: true; value: Promise<string> };
const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;
let buf: PoolBuffers | null = null;
parentPort!.on('message', (b: PoolBuffers) => {
  buf = b;
});

async function loop(): Promise<never> {
  let seen = Atomics.load(ctl, GEN);
  for (;;) {
    const w = waitAsync(ctl, GEN, seen);
    if (w.async) await w.value;
    seen = Atomics.load(ctl, GEN);
    // buffers older than the step's (grown ones still in flight) are skipped: the main thread samples too
    if (buf && buf.gen === Atomics.load(ctl, BUFGEN)) work(ctl, buf);
  }
}
void loop();
