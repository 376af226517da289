// Page-locked (pinned) host memory and the staging ring every host↔device copy goes through.
//
// Why stage: a JS typed array is pageable memory. The driver copies pageable memory through its own
// bounce buffers with rules that vary by driver and platform (whether cuMemcpyHtoDAsync has consumed the
// source when it returns, whether a device-to-host copy is synchronous), and it runs at a fraction of
// the pinned-memory bandwidth. With a ring of our own pinned slots the rule is explicit: a slot's bytes
// belong to the copy until the event recorded after it completes, and the next use of the slot waits
// for that event. The caller's array is copied into a slot on the host before the call returns, so it
// may be reused or collected at once, and uploads stay asynchronous with respect to the device.
//
// Chunking: a copy of n bytes is split into ceil(n / slotBytes) chunks over `count` slots, so a large
// upload (checkpoint weights) overlaps the host memcpy into slot i + 1 with the DMA of slot i.
import koffi from 'koffi';
import { DsvError } from '../../errors.js';
import * as C from './cuda-consts.js';
import { check, type Driver, type Handle } from './ffi.js';

/** A block of pinned host memory with a JS view of it (no copy). */
export class PinnedBuffer {
  private freed = false;
  /** Recorded on the stream after the last asynchronous copy that reads or writes this buffer. */
  private event: Handle | null = null;
  private pending = false;

  constructor(private readonly cu: Driver, private readonly raw: unknown, readonly bytes: number, readonly u8: Uint8Array) {}

  /** Host address (for tests and pointer tables). */
  get address(): bigint {
    return BigInt(koffi.address(this.raw as never) as bigint);
  }

  /** @internal mark the buffer busy until the work enqueued on `stream` so far (its async copy) completes */
  _recordOn(stream: Handle): void {
    if (!this.event) {
      const e: Handle[] = [null];
      check(this.cu.cuEventCreate(e, C.CU_EVENT_DISABLE_TIMING), 'cuEventCreate(pinned buffer)');
      this.event = e[0]!;
    }
    check(this.cu.cuEventRecord(this.event, stream), 'cuEventRecord(pinned buffer)');
    this.pending = true;
  }

  /** Block until every copy that uses this buffer has completed (then its bytes may be rewritten or read). */
  wait(): void {
    if (this.pending) {
      check(this.cu.cuEventSynchronize(this.event), 'cuEventSynchronize(pinned buffer)');
      this.pending = false;
    }
  }

  get isFreed(): boolean {
    return this.freed;
  }

  free(): void {
    if (this.freed) return;
    this.wait();
    this.freed = true;
    if (this.event) check(this.cu.cuEventDestroy(this.event), 'cuEventDestroy(pinned buffer)');
    check(this.cu.cuMemFreeHost(this.raw), 'cuMemFreeHost');
  }
}

/** cuMemHostAlloc of `bytes` (portable across contexts), viewed as a Uint8Array. */
export function hostAlloc(cu: Driver, bytes: number): PinnedBuffer {
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new DsvError(`pinned host allocation: size must be a positive integer number of bytes, got ${bytes}`);
  const out: unknown[] = [null];
  check(cu.cuMemHostAlloc(out, bytes, C.CU_MEMHOSTALLOC_PORTABLE), `cuMemHostAlloc(${bytes} bytes)`);
  const u8 = new Uint8Array(koffi.view(out[0] as never, bytes));
  return new PinnedBuffer(cu, out[0], bytes, u8);
}

/** A ring of pinned slots for copies of pageable JS memory to and from the device (see the file comment). */
export class StagingRing {
  private readonly slots: PinnedBuffer[] = [];
  private next = 0;

  constructor(private readonly cu: Driver, private readonly stream: () => Handle, readonly slotBytes = 8 << 20, readonly count = 4) {}

  private slot(): PinnedBuffer {
    const i = this.next;
    this.next = (i + 1) % this.count;
    const s = (this.slots[i] ??= hostAlloc(this.cu, this.slotBytes));
    s.wait();  // the slot's previous copy has finished with its bytes
    return s;
  }

  /** dst (device address) ← src; returns once src has been copied into pinned memory. */
  upload(dst: number, src: Uint8Array): void {
    for (let off = 0; off < src.length; off += this.slotBytes) {
      const n = Math.min(this.slotBytes, src.length - off);
      const s = this.slot();
      s.u8.set(src.subarray(off, off + n));
      check(this.cu.cuMemcpyHtoDAsync(dst + off, s.u8, n, this.stream()), 'cuMemcpyHtoDAsync');
      s._recordOn(this.stream());
    }
  }

  /** dst ← src (device address); returns when dst holds the data (waits for the stream up to the copy). */
  download(dst: Uint8Array, src: number): void {
    const inFlight: [PinnedBuffer, number, number][] = [];
    const drain = (): void => {
      const [s, off, n] = inFlight.shift()!;
      s.wait();
      dst.set(s.u8.subarray(0, n), off);
    };
    for (let off = 0; off < dst.length; off += this.slotBytes) {
      if (inFlight.length === this.count) drain();  // the ring is full: empty the oldest slot first
      const n = Math.min(this.slotBytes, dst.length - off);
      const s = this.slot();
      check(this.cu.cuMemcpyDtoHAsync(s.u8, src + off, n, this.stream()), 'cuMemcpyDtoHAsync');
      s._recordOn(this.stream());
      inFlight.push([s, off, n]);
    }
    while (inFlight.length) drain();
  }

  /** Pinned bytes held by the ring. */
  get reserved(): number {
    return this.slots.filter(Boolean).length * this.slotBytes;
  }

  dispose(): void {
    for (const s of this.slots) s?.free();
    this.slots.length = 0;
  }
}
