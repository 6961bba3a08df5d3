/**
 * A look at the LMDB data file before LMDB maps it. LMDB trusts its file: a damaged header or a truncated
 * file makes the opening process die of SIGSEGV or SIGBUS inside LMDB, with no message at all (seen with
 * lmdb-js 3: a file of garbage, and a store cut at 8 KiB). So the two meta pages are checked here first and a
 * damaged store is a StoreError that names the file and says what is wrong.
 *
 * What is checked (the layout of mdb.c, MDB_DATA_VERSION 2, 64-bit): each meta page's magic and version, a
 * plausible page size, and that the root pages of the newest valid meta lie inside the file. Damage inside
 * the data pages themselves is not visible here (LMDB keeps no checksums); restoring a backup is the remedy.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { StoreError } from './errors';

const MDB_MAGIC = 0xbeefc0de;
const MDB_DATA_VERSION = 2;
/** sizeof(MDB_page_header): the meta struct follows it on pages 0 and 1. */
const PAGE_HEADER = 24;
/** Offsets inside MDB_meta (64-bit build): magic, version, address, mapsize, dbs[2] of 48 bytes, last_pg, txnid. */
const META = { magic: 0, version: 4, dbs: 24, dbSize: 48, lastPg: 120, txnid: 128 } as const;
/** Offsets inside MDB_db: md_pad (the page size, in the free db's entry), md_entries, md_root. */
const DB = { pad: 0, entries: 32, root: 40 } as const;

interface Meta {
  pageSize: number;
  roots: bigint[];
  txnid: bigint;
  /** Entries of the main database: one per named database. */
  mainEntries: bigint;
}

function readMeta(buf: Buffer, at: number): Meta | undefined {
  const m = at + PAGE_HEADER;
  if (buf.length < m + META.txnid + 8) return undefined;
  if (buf.readUInt32LE(m + META.magic) !== MDB_MAGIC || buf.readUInt32LE(m + META.version) !== MDB_DATA_VERSION) return undefined;
  const pageSize = buf.readUInt32LE(m + META.dbs + DB.pad);
  if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) return undefined;
  const roots = [0, 1].map((i) => buf.readBigUInt64LE(m + META.dbs + i * META.dbSize + DB.root));
  const mainEntries = buf.readBigUInt64LE(m + META.dbs + META.dbSize + DB.entries);
  return { pageSize, roots, txnid: buf.readBigUInt64LE(m + META.txnid), mainEntries };
}

/**
 * Throws a StoreError when `dataFile` (existing, not empty) cannot be a whole LMDB data file; returns how many
 * named databases its newest meta page lists (0 for a new, empty file).
 */
export function checkDataFile(dataFile: string, dir: string): number {
  let fd: number;
  try {
    fd = openSync(dataFile, 'r');
  } catch (e) {
    throw new StoreError(`cannot open key store ${dir}: ${(e as Error).message}`);
  }
  try {
    const size = fstatSync(fd).size;
    // A new store: the file is created empty before LMDB opens it for the first time.
    if (size === 0) return 0;
    const damaged = (why: string): StoreError =>
      new StoreError(`key store ${dir} is damaged: ${dataFile} ${why}; restore it from a backup (or move it away to start an empty store)`);
    const head = Buffer.alloc(Math.min(size, 2 * 65536));
    readSync(fd, head, 0, head.length, 0);
    const first = readMeta(head, 0);
    if (!first) throw damaged('is not an LMDB data file (no valid meta page)');
    const second = readMeta(head, first.pageSize);
    const newest = second && second.txnid > first.txnid ? second : first;
    const pages = BigInt(Math.floor(size / newest.pageSize));
    if (pages < 2n) throw damaged(`is truncated (${size} bytes)`);
    for (const root of newest.roots) {
      // P_INVALID (~0) marks an empty tree.
      if (root !== 0xffffffffffffffffn && root >= pages) throw damaged(`is truncated (${size} bytes, a root page is at ${root * BigInt(newest.pageSize)})`);
    }
    return Number(newest.mainEntries);
  } finally {
    closeSync(fd);
  }
}

/**
 * Reads every record of every named database in a child process. Damage inside the data pages (a wild page
 * number or offset) kills LMDB with a signal on first use, and here only the child dies: the caller gets a
 * StoreError instead of a gateway that crashes on its first message or at startup without a word. Costs one
 * short-lived Node process (a fraction of a second), so it is meant for a long-running process's startup.
 */
export function probeDataFile(dataFile: string, dir: string, names: readonly string[], databases: number): void {
  const script = [
    `const { open } = require(${JSON.stringify(require.resolve('lmdb'))});`,
    'const root = open({ path: process.argv[1], noSubdir: true, maxDbs: 16, readOnly: true });',
    'let n = 0, dbs = 0;',
    '// The main database holds the named ones: walk it too (a damaged one crashes here, or lists fewer).',
    'for (const key of root.getKeys()) dbs += String(key).length > 0 ? 1 : 0;',
    'for (const name of JSON.parse(process.argv[2])) {',
    '  let db; try { db = root.openDB({ name, encoding: "json" }); } catch { continue; }',
    '  if (!db) continue;',
    '  for (const { key, value } of db.getRange()) n += String(key).length + (value === undefined ? 0 : 1);',
    '}',
    'process.stdout.write(JSON.stringify({ n, dbs }));',
  ].join('\n');
  const r = spawnSync(process.execPath, ['-e', script, dataFile, JSON.stringify(names)], { encoding: 'utf8', timeout: 60_000 });
  if (r.status === 0) {
    const seen = (JSON.parse(r.stdout || '{}') as { dbs?: number }).dbs ?? 0;
    if (seen >= databases) return;
    // LMDB reads a damaged main database as empty; opening it to write would then crash.
    throw new StoreError(`key store ${dir} is damaged: ${dataFile}: its meta page lists ${databases} databases, ${seen} can be read; restore it from a backup (or move it away to start an empty store)`);
  }
  const why = r.signal
    ? `reading it crashed LMDB (${r.signal})`
    : `a record cannot be read (${(r.stderr || r.error?.message || `exit ${r.status}`).split('\n').find((l) => /Error/.test(l))?.trim() ?? 'unknown error'})`;
  throw new StoreError(`key store ${dir} is damaged: ${dataFile}: ${why}; restore it from a backup (or move it away to start an empty store)`);
}
