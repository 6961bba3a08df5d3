/**
 * Temporary directories removed on every exit path: by their owner (removeTemp), on normal process exit, and on
 * SIGINT/SIGTERM/SIGHUP, where the signal keeps its default meaning (the process still dies of it) once every
 * handler has run; Lab's own handler (test/netns/lab.ts) follows the same rule, in whichever order they run.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const dirs = new Set<string>();
let hooked = false;

function removeAllSync(): void {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  dirs.clear();
}

function onSignal(signal: NodeJS.Signals): void {
  removeAllSync();
  process.removeListener(signal, onSignal);
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
}

/** A new directory under the OS temp dir, `prefix` + random suffix, removed at exit if still there. */
export function makeTemp(prefix: string): string {
  if (!hooked) {
    hooked = true;
    process.on('exit', removeAllSync);
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, onSignal);
  }
  const dir = mkdtempSync(join(tmpdir(), prefix));
  dirs.add(dir);
  return dir;
}

export function removeTemp(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  dirs.delete(dir);
}
