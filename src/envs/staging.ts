// A host-side temporary directory holding what one sandbox run (or one episode) may see.
//
// bwrap resolves mount sources with the sandbox's credentials (uid 65534 when the host is root), so a
// file under a private directory such as /root cannot be bound directly. Staging copies exactly the
// files a run needs into a world-readable directory under the OS temp dir; that is also what keeps the
// project checkout and the host's home out of the sandbox. Writable subdirectories are mode 0777 so
// the sandbox user can create SQLite journals next to the database.
import { chmodSync, copyFileSync, cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

export class StagingDir {
  readonly root: string;
  private removed = false;

  constructor(prefix = 'dsv32-sbx-') {
    this.root = mkdtempSync(join(tmpdir(), prefix));
    chmodSync(this.root, 0o755);
  }

  /** Absolute host path of `rel` inside the staging dir, creating parent directories (mode 0755). */
  path(rel: string): string {
    const p = join(this.root, rel);
    if (!p.startsWith(this.root + '/')) throw new Error(`staging path escapes its root: ${rel}`);
    mkdirSync(dirname(p), { recursive: true, mode: 0o755 });
    return p;
  }

  copyFile(src: string, rel: string, mode = 0o644): string {
    const dst = this.path(rel);
    copyFileSync(src, dst);
    chmodSync(dst, mode);
    return dst;
  }

  writeFile(rel: string, data: string | Buffer, mode = 0o644): string {
    const dst = this.path(rel);
    writeFileSync(dst, data);
    chmodSync(dst, mode);
    return dst;
  }

  copyDir(src: string, rel: string): string {
    const dst = this.path(rel);
    cpSync(src, dst, { recursive: true });
    makeReadable(dst);
    return dst;
  }

  /** A directory the sandbox user may write into (bound with writable: true). */
  writableDir(rel: string): string {
    const p = this.path(rel + '/.keep');
    rmSync(p, { force: true });
    const d = dirname(p);
    chmodSync(d, 0o777);
    return d;
  }

  remove(): void {
    if (this.removed) return;
    this.removed = true;
    rmSync(this.root, { recursive: true, force: true });
  }
}

function makeReadable(dir: string): void {
  chmodSync(dir, 0o755);
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) makeReadable(p);
    else if (e.isFile()) chmodSync(p, 0o644);
  }
}
