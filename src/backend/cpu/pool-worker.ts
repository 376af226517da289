// Worker-thread side of the CPU pool (see pool.ts). The thread sleeps in Atomics.wait on its mailbox
// word, drains its MessagePort synchronously when woken, and claims chunks of the task from its shared
// counter until none are left. Blocking instead of using the event loop lets the main thread, which is
// itself blocked inside a synchronous op, hand out work without yielding.
import { receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { GemmScratch } from './gemm-kernel.js';
import { runChunks, type PoolTask } from './pool.js';
import { ROW_KERNELS } from './row-kernels.js';

interface PoolWorkerData {
  ctl: Int32Array;
  index: number;
  readyIndex: number;
  port: MessagePort;
}

const { ctl, index, readyIndex, port } = workerData as PoolWorkerData;
const scratch = new GemmScratch();
Atomics.store(ctl, readyIndex, 1);
Atomics.notify(ctl, readyIndex);
const lookup = (name: string) => (Object.hasOwn(ROW_KERNELS, name) ? (ROW_KERNELS as Record<string, (a: never, r0: number, r1: number) => void>)[name] : undefined);
let seen = 0;
for (;;) {
  Atomics.wait(ctl, index, seen);
  seen = Atomics.load(ctl, index);
  for (let m = receiveMessageOnPort(port); m !== undefined; m = receiveMessageOnPort(port)) {
    runChunks(m.message as PoolTask, scratch, lookup);
  }
}
