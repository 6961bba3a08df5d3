/**
 * A directory built once and shared by every test process: cached under the OS temp dir, keyed
 * by the content of the file that describes it, built in a private directory and renamed into
 * place, so concurrent test files never see a half-built one.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** `describedBy` is the file whose content keys the cache; `complete` a file the build writes last. */
export function buildOnce(name: string, describedBy: string, complete: string, build: (dir: string) => void): string {
  const key = createHash('sha256').update(readFileSync(describedBy)).digest('hex').slice(0, 12);
  const dir = join(tmpdir(), `cstp-${name}-${key}`);
  if (!existsSync(join(dir, complete))) {
    const work = mkdtempSync(join(tmpdir(), `cstp-${name}-build-`));
    build(work);
    try {
      renameSync(work, dir);
    } catch {
      rmSync(work, { recursive: true, force: true }); // another process won the race
    }
  }
  return dir;
}
