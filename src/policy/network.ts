/**
 * Which clients are local mail servers: a list of IPv4 and IPv6 CIDR blocks. Matching uses
 * node:net's BlockList, which also matches IPv4-mapped IPv6 addresses (::ffff:10.0.0.1, as a
 * dual-stack listener reports IPv4 clients) against IPv4 blocks.
 */
import { BlockList, isIP } from 'node:net';

export class LocalNetworks {
  private constructor(private readonly entries: ReadonlyArray<{ block: string; list: BlockList }>) {}

  /** Parses "10.0.0.0/8", "fd00::/8", "192.0.2.7" (a /32), "::1" (a /128); throws on anything else. */
  static parse(blocks: readonly string[]): LocalNetworks {
    return new LocalNetworks(blocks.map((block) => ({ block, list: blockList(block) })));
  }

  /** The configured blocks, for explanations. */
  get blocks(): string[] {
    return this.entries.map((e) => e.block);
  }

  /** An unparsable address (or none) is not local: such a client cannot be trusted as outbound. */
  contains(ip: string): boolean {
    return this.blockOf(ip) !== undefined;
  }

  /** The first configured block containing ip (for explanations); undefined when none does. */
  blockOf(ip: string): string | undefined {
    const address = ip.replace(/%.*$/, ''); // an IPv6 zone index names the interface, not the host
    const family = isIP(address);
    if (family === 0) return undefined;
    return this.entries.find((e) => e.list.check(address, family === 4 ? 'ipv4' : 'ipv6'))?.block;
  }
}

/** One block per BlockList, so a match can name the block that matched. */
function blockList(block: string): BlockList {
  const [address, prefixText, extra] = block.trim().split('/');
  const family = isIP(address);
  if (family === 0 || extra !== undefined) throw new Error(`"${block}" is not an IP address or CIDR block`);
  const max = family === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? max : Number(prefixText);
  if (!/^\d{1,3}$/.test(prefixText ?? String(max)) || prefix > max) {
    throw new Error(`"${block}" has a prefix length outside 0..${max}`);
  }
  const list = new BlockList();
  list.addSubnet(address, prefix, family === 4 ? 'ipv4' : 'ipv6');
  return list;
}
