// A seccomp filter for the sandbox: memory that no mount size or rlimit caps.
//
// RLIMIT_AS counts mapped memory and the tmpfs mounts are size-capped, but two kinds of kernel-backed
// memory escape both: memfd_create files filled with write() (never mapped; RLIMIT_FSIZE caps each one,
// not their sum — measured: 512 MiB under --memory-mb 64) and SysV shared memory (shmget, limits per IPC
// namespace, defaults far above any sandbox budget), plus memfd_secret. The filter makes these calls fail
// with EPERM; everything else is allowed. Python and Node start without them (shm_open goes through the
// capped /dev/shm). x32-ABI calls on x86-64 (nr | 0x40000000) are refused outright, so the x32 numbering
// cannot be used to get around the list.
//
// Classic BPF, as bwrap --seccomp reads it: struct sock_filter { u16 code; u8 jt; u8 jf; u32 k }, little
// endian. The program (jumps are relative to the next instruction):
//    0 ld  [4]                     arch
//    1 jeq AUDIT_ARCH_X86_64       → 2, else → 8
//    2 ld  [0]                     nr
//    3 jge 0x40000000              → 14 (x32)
//    4 jeq 319 memfd_create        → 14
//    5 jeq 29  shmget              → 14
//    6 jeq 447 memfd_secret        → 14
//    7 ret ALLOW
//    8 jeq AUDIT_ARCH_AARCH64      → 9, else → 13
//    9 ld  [0]
//   10 jeq 279 memfd_create        → 14
//   11 jeq 194 shmget              → 14
//   12 jeq 447 memfd_secret        → 14
//   13 ret ALLOW
//   14 ret ERRNO(EPERM)

const LD_W_ABS = 0x20;
const JEQ_K = 0x15;
const JGE_K = 0x35;
const RET_K = 0x06;
const ALLOW = 0x7fff0000;
const ERRNO_EPERM = 0x00050000 | 1;
const ARCH_X86_64 = 0xc000003e;
const ARCH_AARCH64 = 0xc00000b7;

const PROGRAM: [code: number, jt: number, jf: number, k: number][] = [
  [LD_W_ABS, 0, 0, 4],
  [JEQ_K, 0, 6, ARCH_X86_64],
  [LD_W_ABS, 0, 0, 0],
  [JGE_K, 10, 0, 0x40000000],
  [JEQ_K, 9, 0, 319],
  [JEQ_K, 8, 0, 29],
  [JEQ_K, 7, 0, 447],
  [RET_K, 0, 0, ALLOW],
  [JEQ_K, 0, 4, ARCH_AARCH64],
  [LD_W_ABS, 0, 0, 0],
  [JEQ_K, 3, 0, 279],
  [JEQ_K, 2, 0, 194],
  [JEQ_K, 1, 0, 447],
  [RET_K, 0, 0, ALLOW],
  [RET_K, 0, 0, ERRNO_EPERM],
];

/** The filter's bytes, for bwrap --seccomp FD. */
export function sandboxSeccompFilter(): Buffer {
  const b = Buffer.alloc(PROGRAM.length * 8);
  PROGRAM.forEach(([code, jt, jf, k], i) => {
    b.writeUInt16LE(code, i * 8);
    b.writeUInt8(jt, i * 8 + 2);
    b.writeUInt8(jf, i * 8 + 3);
    b.writeUInt32LE(k >>> 0, i * 8 + 4);
  });
  return b;
}
