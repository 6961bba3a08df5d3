/**
 * The minimal TPROXY setup inside a test namespace: replies to transparent sockets are delivered locally, and
 * connections matching `match` (an nft expression) are diverted to `port`. scripts/cstp-net does the full job.
 */
import type { Lab } from '../netns/lab';

export async function divertInto(lab: Lab, ns: string, match: string, port = 10025): Promise<void> {
  await lab.exec(ns, ['ip', 'rule', 'add', 'fwmark', '1', 'lookup', '100'], { check: true });
  await lab.exec(ns, ['ip', 'route', 'add', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', '100'], { check: true });
  await lab.exec(ns, ['nft', '-f', '-'], {
    check: true,
    input: `table inet t {
  chain p { type filter hook prerouting priority mangle; policy accept;
    meta l4proto tcp socket transparent 1 meta mark set 1 accept
    ${match} tproxy ip to :${port} meta mark set 1 accept
  }
}
`,
  });
}
