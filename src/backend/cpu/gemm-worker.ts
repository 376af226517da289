// Worker-thread side of the GEMM pool (see gemm-pool.ts). The thread sleeps in Atomics.wait on its mailbox
// word, drains its MessagePort synchronously when woken, and claims chunks of C from the task's shared
// counter until none are left. Blocking instead of using the event loop lets the main thread, which is
// itself blocked inside the synchronous sgemm call, hand out work without yielding.
import { receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { GemmScratch } from './gemm-kernel.js';
import { runChunks, type GemmTask } from './gemm-pool.js';

interface GemmWorkerData {
  ctl: Int32Array;
  index: number;
  readyIndex: number;
  port: MessagePort;
}

const { ctl, index, readyIndex, port } = workerData as GemmWorkerData;
const scratch = new GemmScratch();
Atomics.store(ctl, readyIndex, 1);
Atomics.notify(ctl, readyIndex);
let seen = 0;
for (;;) {
  Atomics.wait(ctl, index, seen);
  seen = Atomics.load(ctl, index);
  for (let m = receiveMessageOnPort(port); m !== undefined; m = receiveMessageOnPort(port)) {
    runChunks(m.message as GemmTask, scratch);
  }
}
