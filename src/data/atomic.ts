// Resume-safe output: a file is written under a temporary name in the same directory and renamed over
// the final name, so a reader (or a build resumed after a kill) sees either the old file or the whole
// new one, never a torn one. rename(2) within a directory is atomic on POSIX file systems.
import { renameSync, writeFileSync } from 'node:fs';

export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, data);
  renameSync(tmp, path);
}
