/**
 * Real Postfix instances inside a Lab's network namespaces, following ../shared/reference/postfix-in-netns.md:
 * one directory per instance (its own config, queue, data directory, maillog and maildirs), every postfix command
 * run inside the instance's namespace, virtual maildirs owned by uid 5000, no DNS (transports with [brackets]).
 *
 *   const amd = new Postfix(lab, 'amd', { domain: 'amd', address: '192.0.2.10', mailboxes: ['juro'],
 *                                         relayhost: '[192.0.2.20]:25' });
 *   await amd.start();
 *   const [message] = await amd.waitMail('juro', 1);
 */
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ExecResult, Lab } from './lab';
import { makeTemp, removeTemp } from './paper/temp';

/** The owner of the virtual maildirs (virtual_uid_maps/virtual_gid_maps static:5000). */
export const MAIL_UID = 5000;

export interface PostfixOptions {
  /** The mail domain this instance is final destination for (virtual mailbox domain). */
  domain: string;
  /** Its IPv4 address: inet_interfaces, and the source of its own SMTP client (one address only). */
  address: string;
  /** Local parts with a maildir. */
  mailboxes: string[];
  /** Every non-local message goes there, e.g. "[192.0.2.20]:25". */
  relayhost?: string;
  /** transport_maps entries: domain -> transport, e.g. { intel: 'smtp:[192.0.2.30]:25' }. */
  transport?: Record<string, string>;
  /** Domains relayed for anyone (mynetworks may relay anyway). */
  relayDomains?: string[];
  /** Networks whose clients may relay; default the whole lab subnet. */
  mynetworks?: string;
  /** Extra main.cf settings, "name = value". */
  extra?: string[];
}

export interface Mail {
  file: string;
  text: string;
}

export class Postfix {
  readonly dir: string;
  readonly etc: string;
  private started = false;

  /** `ns` is the Lab's short namespace name. Nothing is written until start(). */
  constructor(private readonly lab: Lab, readonly ns: string, readonly opts: PostfixOptions) {
    this.dir = makeTemp(`cstp-postfix-${opts.domain}-`);
    this.etc = join(this.dir, 'etc');
  }

  private exec(argv: string[], timeout = 20_000): Promise<ExecResult> {
    return this.lab.exec(this.ns, argv, { timeout });
  }

  private async checked(argv: string[], timeout?: number): Promise<string> {
    const r = await this.exec(argv, timeout);
    if (r.code !== 0) throw new Error(`${argv.join(' ')} in ${this.ns} -> exit ${r.code}\n${r.stderr}${r.stdout}`);
    return r.stdout;
  }

  /** Writes the instance (config, maps, maildir base) and starts it; resolves once it listens on :25. */
  async start(): Promise<void> {
    const { dir, etc, opts } = this;
    // postfix's own processes run as `postfix` and must reach queue/ and data/ below this directory.
    chmodSync(dir, 0o755);
    mkdirSync(etc);
    // Postfix makes the queue's subdirectories, not the queue directory itself (owned by root).
    mkdirSync(join(dir, 'queue'), { mode: 0o755 });
    writeFileSync(join(etc, 'main.cf'), '');
    copyFileSync('/etc/postfix/master.cf', join(etc, 'master.cf'));
    const data = join(dir, 'data');
    mkdirSync(data, { mode: 0o700 });
    chownSync(data, postfixUid(), postfixGid());
    const mail = join(dir, 'mail');
    mkdirSync(mail);
    chownSync(mail, MAIL_UID, MAIL_UID);
    writeFileSync(join(etc, 'vmailbox'), opts.mailboxes.map((m) => `${m}@${opts.domain} ${opts.domain}/${m}/\n`).join(''));
    writeFileSync(join(etc, 'transport'), Object.entries(opts.transport ?? {}).map(([d, t]) => `${d} ${t}\n`).join(''));
    const settings = [
      'compatibility_level = 3.6',
      `queue_directory = ${join(dir, 'queue')}`,
      `data_directory = ${data}`,
      `maillog_file = ${join(dir, 'maillog')}`,
      `maillog_file_prefixes = ${dir}`,
      // Distinct per instance: equal names look like a mail loop.
      `myhostname = mx.${opts.domain}.lab`,
      `mydomain = ${opts.domain}`,
      `myorigin = ${opts.domain}`,
      'mydestination = localhost',
      `inet_interfaces = ${opts.address}`,
      'inet_protocols = ipv4',
      `mynetworks = 127.0.0.0/8 ${opts.mynetworks ?? '192.0.2.0/24'}`,
      'smtp_dns_support_level = disabled',
      'smtpd_peername_lookup = no',
      'alias_maps =',
      'alias_database =',
      `virtual_mailbox_domains = ${opts.domain}`,
      `virtual_mailbox_base = ${mail}`,
      `virtual_mailbox_maps = texthash:${join(etc, 'vmailbox')}`,
      `virtual_uid_maps = static:${MAIL_UID}`,
      `virtual_gid_maps = static:${MAIL_UID}`,
      `transport_maps = texthash:${join(etc, 'transport')}`,
      `relayhost = ${opts.relayhost ?? ''}`,
      `relay_domains = ${(opts.relayDomains ?? []).join(' ')}`,
      // Quick retries in a test: a deferred message is tried again within seconds, and a destination that refused
      // a connection is not remembered as dead for long.
      'queue_run_delay = 2s',
      'minimal_backoff_time = 2s',
      'maximal_backoff_time = 4s',
      'smtp_connect_timeout = 5s',
      // No connection reuse: every message is one SMTP session the wire assertions can count.
      'smtp_connection_cache_on_demand = no',
      ...(opts.extra ?? []),
    ];
    await this.checked(['postconf', '-c', etc, '-e', ...settings]);
    await this.checked(['postconf', '-c', etc, '-F', '*/*/chroot = n']);
    // Files changed in the last seconds are re-read as "being edited" (seconds of delay): backdate them.
    const past = new Date(Date.now() - 10_000);
    for (const f of readdirSync(etc)) utimesSync(join(etc, f), past, past);
    await this.checked(['postfix', '-c', etc, 'start'], 30_000);
    this.started = true;
    await this.lab.waitListening(this.ns, 25, 10_000);
  }

  /** Stops the instance (idempotent; safe when start() failed half-way). */
  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    await this.exec(['postfix', '-c', this.etc, 'stop'], 15_000).catch(() => undefined);
  }

  /** stop(), then the instance directory is removed. */
  async destroy(): Promise<void> {
    await this.stop();
    removeTemp(this.dir);
  }

  /** The instance's maillog so far. */
  log(): string {
    const file = join(this.dir, 'maillog');
    return existsSync(file) ? readFileSync(file, 'utf8') : '';
  }

  /** `postqueue -p`: the queue listing ("Mail queue is empty" when empty). */
  queue(): Promise<string> {
    return this.checked(['postqueue', '-c', this.etc, '-p']);
  }

  /** `postqueue -f`: deliver everything queued now. */
  async flush(): Promise<void> {
    await this.checked(['postqueue', '-c', this.etc, '-f']);
  }

  /** The messages delivered to `user`'s maildir (new/ and cur/), oldest first. */
  mail(user: string): Mail[] {
    const base = join(this.dir, 'mail', this.opts.domain, user);
    const out: Mail[] = [];
    for (const sub of ['new', 'cur']) {
      const d = join(base, sub);
      if (!existsSync(d)) continue;
      for (const f of readdirSync(d).sort()) out.push({ file: join(d, f), text: readFileSync(join(d, f), 'latin1') });
    }
    return out;
  }

  /** Waits until `user` has at least `count` messages; returns them all, or throws after `ms` with the maillog. */
  async waitMail(user: string, count: number, ms = 20_000): Promise<Mail[]> {
    const deadline = Date.now() + ms;
    for (;;) {
      const got = this.mail(user);
      if (got.length >= count) return got;
      if (Date.now() > deadline) {
        throw new Error(`${user}@${this.opts.domain} has ${got.length} of ${count} messages after ${ms} ms; maillog:\n${this.log()}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

function idOf(db: 'passwd' | 'group', name: string): number {
  const line = readFileSync(`/etc/${db}`, 'utf8').split('\n').find((l) => l.startsWith(`${name}:`));
  if (!line) throw new Error(`no ${db === 'passwd' ? 'user' : 'group'} ${name} (install the postfix package)`);
  return Number(line.split(':')[2]);
}

const postfixUid = (): number => idOf('passwd', 'postfix');
const postfixGid = (): number => idOf('group', 'postfix');

/** Why real Postfix instances cannot run here, or undefined. */
export function postfixUnavailable(): string | undefined {
  try {
    postfixUid();
    postfixGid();
    idOf('group', 'postdrop');
  } catch (err) {
    return (err as Error).message;
  }
  if (!existsSync('/etc/postfix/master.cf')) return 'postfix is not installed (/etc/postfix/master.cf missing)';
  return undefined;
}
