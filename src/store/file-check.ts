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
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { StoreError } from './errors';

const MDB_MAGIC = 0xbeefc0de;
const MDB_DATA_VERSION = 2;
/** sizeof(MDB_page_header): the meta struct follows it on pages 0 and 1. */
const PAGE_HEADER = 24;
/** Offsets inside MDB_meta (64-bit build): magic, version, address, mapsize, dbs[2] of 48 bytes, last_pg, txnid. */
const META = { magic: 0, version: 4, dbs: 24, dbSize: 48, lastPg: 120, txnid: 128 } as const;
/** Offsets inside MDB_db: md_pad (the page size, in the free db's entry), md_root. */
const DB = { pad: 0, root: 40 } as const;

interface Meta {
  pageSize: number;
  roots: bigint[];
  txnid: bigint;
}

function readMeta(buf: Buffer, at: number): Meta | undefined {
  const m = at + PAGE_HEADER;
  if (buf.length < m + META.txnid + 8) return undefined;
  if (buf.readUInt32LE(m + META.magic) !== MDB_MAGIC || buf.readUInt32LE(m + META.version) !== MDB_DATA_VERSION) return undefined;
  const pageSize = buf.readUInt32LE(m + META.dbs + DB.pad);
  if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) return undefined;
  const roots = [0, 1].map((i) => buf.readBigUInt64LE(m + META.dbs + i * META.dbSize + DB.root));
  return { pageSize, roots, txnid: buf.readBigUInt64LE(m + META.txnid) };
}

/** Throws a StoreError when `dataFile` (existing, not empty) cannot be a whole LMDB data file. */
export function checkDataFile(dataFile: string, dir: string): void {
  let fd: number;
  try {
    fd = openSync(dataFile, 'r');
  } catch (e) {
    throw new StoreError(`cannot open key store ${dir}: ${(e as Error).message}`);
  }
  try {
    const size = fstatSync(fd).size;
    // A new store: the file is created empty before LMDB opens it for the first time.
    if (size === 0) return;
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
  } finally {
    closeSync(fd);
  }
}
