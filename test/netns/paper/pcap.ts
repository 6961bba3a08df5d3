/**
 * Just enough of the pcap format (tcpdump -w, Ethernet link type) to rebuild the byte streams of TCP connections:
 * IPv4/TCP only, each direction's payload ordered by sequence number with retransmitted segments counted once.
 */
import { readFileSync } from 'node:fs';

export interface TcpStream {
  /** "src:sport > dst:dport" */
  key: string;
  src: string;
  sport: number;
  dst: string;
  dport: number;
  /** The payload sent in this direction, in sequence order. */
  data: Buffer;
  /** Whether a SYN (without ACK) was seen: this side opened the connection. */
  syn: boolean;
  /** Whether an RST was seen in this direction. */
  rst: boolean;
}

const ip4 = (b: Buffer, o: number): string => `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;

/** The TCP streams of a capture file, one per direction, in order of their first packet. */
export function tcpStreams(file: string): TcpStream[] {
  const buf = readFileSync(file);
  if (buf.length < 24) return [];
  const magic = buf.readUInt32LE(0);
  let le: boolean;
  if (magic === 0xa1b2c3d4 || magic === 0xa1b23c4d) le = true;
  else if (buf.readUInt32BE(0) === 0xa1b2c3d4 || buf.readUInt32BE(0) === 0xa1b23c4d) le = false;
  else throw new Error(`${file}: not a pcap file`);
  const u32 = (o: number): number => (le ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
  const linktype = u32(20);
  if (linktype !== 1) throw new Error(`${file}: link type ${linktype}, only Ethernet (1) is read`);
  // Streams in order of their first packet; `active` maps a key to its current stream (a new SYN on a key already
  // carrying data, i.e. a reused port, starts a new stream).
  const all: { s: TcpStream; segments: Map<number, Buffer> }[] = [];
  const active = new Map<string, { s: TcpStream; segments: Map<number, Buffer> }>();
  let off = 24;
  while (off + 16 <= buf.length) {
    const incl = u32(off + 8);
    const start = off + 16;
    off = start + incl;
    if (off > buf.length) break; // a record still being written
    let p = start + 12;
    let type = buf.readUInt16BE(p);
    p += 2;
    if (type === 0x8100) {
      type = buf.readUInt16BE(p + 2);
      p += 4;
    }
    if (type !== 0x0800) continue;
    const ihl = (buf[p] & 0x0f) * 4;
    const total = buf.readUInt16BE(p + 2);
    if (buf[p + 9] !== 6) continue;
    const src = ip4(buf, p + 12);
    const dst = ip4(buf, p + 16);
    const t = p + ihl;
    const sport = buf.readUInt16BE(t);
    const dport = buf.readUInt16BE(t + 2);
    const seq = buf.readUInt32BE(t + 4);
    const dataOff = (buf[t + 12] >> 4) * 4;
    const flags = buf[t + 13];
    const end = Math.min(p + total, off);
    const payload = buf.subarray(t + dataOff, end);
    const key = `${src}:${sport} > ${dst}:${dport}`;
    const synOnly = (flags & 0x12) === 0x02;
    let entry = active.get(key);
    if (entry && synOnly && entry.segments.size > 0) entry = undefined;
    if (!entry) {
      entry = { s: { key, src, sport, dst, dport, data: Buffer.alloc(0), syn: false, rst: false }, segments: new Map() };
      active.set(key, entry);
      all.push(entry);
    }
    if (synOnly) entry.s.syn = true;
    if (flags & 0x04) entry.s.rst = true;
    if (payload.length > 0 && !entry.segments.has(seq)) entry.segments.set(seq, Buffer.from(payload));
  }
  return all.map(({ s, segments }) => {
    const ordered = [...segments.entries()].sort((a, b) => a[0] - b[0]); // no wrap-around in short tests
    return { ...s, data: Buffer.concat(ordered.map(([, d]) => d)) };
  });
}

/** Occurrences of `needle` in `haystack`. */
export function count(haystack: Buffer | string, needle: string): number {
  const h = typeof haystack === 'string' ? Buffer.from(haystack, 'latin1') : haystack;
  let n = 0;
  for (let i = h.indexOf(needle); i !== -1; i = h.indexOf(needle, i + 1)) n++;
  return n;
}
