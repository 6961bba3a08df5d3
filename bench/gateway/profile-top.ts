/**
 * `node dist/bench/gateway/profile-top.js FILE.cpuprofile [N] [SKIP_SECONDS]`: the N functions with the most
 * self time in a V8 CPU profile (from `node --cpu-prof`, e.g. CSTP_BENCH_PROFILE=DIR npm run bench), with their
 * share of the samples that were not idle, and the same summed by source file. SKIP_SECONDS leaves out the
 * start of the profile (process start-up: module loading, key generation for the STARTTLS certificate).
 */
import { readFileSync } from 'node:fs';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
}

const [file, n = '30', skip = '0'] = process.argv.slice(2);
if (!file) {
  console.error('usage: profile-top FILE.cpuprofile [N] [SKIP_SECONDS]');
  process.exit(2);
}
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(profile.nodes.map((node) => [node.id, node]));
const self = new Map<number, number>();
let elapsed = 0;
profile.samples.forEach((id, i) => {
  elapsed += profile.timeDeltas[i] ?? 0;
  if (elapsed >= Number(skip) * 1e6) self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
});

const total = [...self.values()].reduce((a, b) => a + b, 0);
const idle = [...self.entries()].filter(([id]) => byId.get(id)?.callFrame.functionName === '(idle)').reduce((a, [, t]) => a + t, 0);
const busy = total - idle;
const short = (url: string): string => url.replace(/^file:\/\//, '').replace(/^.*\/node_modules\//, 'node_modules/').replace(/^.*\/dist\//, 'dist/');

const fns = new Map<string, number>();
const files = new Map<string, number>();
for (const [id, t] of self) {
  const f = byId.get(id)!.callFrame;
  if (f.functionName === '(idle)') continue;
  const key = `${f.functionName || '(anonymous)'} ${short(f.url)}:${f.lineNumber + 1}`;
  fns.set(key, (fns.get(key) ?? 0) + t);
  const fileKey = short(f.url) || f.functionName;
  files.set(fileKey, (files.get(fileKey) ?? 0) + t);
}
console.log(`${file}: ${(total / 1e6).toFixed(1)} s sampled, ${(busy / 1e6).toFixed(1)} s busy (${((100 * busy) / total).toFixed(0)}%)`);
console.log('\nself time, % of busy');
for (const [k, t] of [...fns].sort((a, b) => b[1] - a[1]).slice(0, Number(n))) console.log(`${((100 * t) / busy).toFixed(1).padStart(6)}%  ${k}`);
console.log('\nby file, % of busy');
for (const [k, t] of [...files].sort((a, b) => b[1] - a[1]).slice(0, 20)) console.log(`${((100 * t) / busy).toFixed(1).padStart(6)}%  ${k}`);
