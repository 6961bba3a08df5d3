/**
 * cstp-gateway: the synchronous securing proxy. At MAIL it opens the upstream transaction to the original
 * destination (connection.local.ip, or [delivery] next_hop); each RCPT is passed through and answered with the
 * destination's reply; at data_post the message is planned and secured (src/gateway) and delivered (src/delivery),
 * and the client's DATA gets the destination's answer: 250 only when every delivery was accepted. Refused
 * recipients of the restrictive policy get a DSN to the sender through the retry queue; a partial failure goes
 * into that queue. One decision line per transaction. The queue hook only reports what data_post decided.
 */
import cluster from 'node:cluster';
import { existsSync, mkdirSync, readdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { instancePath } from '../../src/config/cstp-config';
import { deliverySettings, type DeliverySettings } from '../../src/config/delivery-settings';
import { policySettings } from '../../src/config/schema';
import { varDir } from '../../src/config/instance';
import {
  InDoubtDeliveries, inDoubtKey, isPositive, localReply, makeDsn, RetryQueue, routeMemoryOf, smtpSender, UpstreamTransaction,
  type Endpoint, type InDoubtRecord, type MailParams, type QueueItem, type RcptParams, type RouteMemory, type SmtpReply, type TlsState,
} from '../../src/delivery';
import { ensureGatewayIdentities } from '../../src/gateway/identities';
import { NoTurn, OneAtATime } from '../../src/gateway/one-at-a-time';
import { secureMessage, secureSpooled, type Secured, type SecuredSpooled } from '../../src/gateway/securing';
import { BodySpool, type SpooledMessage } from '../../src/smime/stream/spool';
import type { MessageSource } from '../../src/delivery/smtp-client';
import { decision, type DeliveryFacts, type TlsFacts } from '../../src/log';
import { resolvePolicyConfig, type PolicyConfig } from '../../src/policy/config';
import type { Direction } from '../../src/policy/plan';
import { processAlive } from '../../src/pid';
import { KeyStore } from '../../src/store/key-store';
import { isDiverted } from '../../src/transparent/listener';
import { clientFacts, codes, gatewayConfig, instanceDir, type Connection, type Next, type Plugin, type Transaction } from '../haraka';

/**
 * Haraka's respond() takes the code from an object whose class is named DSN: the destination's exact code and
 * text reach the client (a plain DENY would always say 550, DENYSOFT 450).
 */
class DSN {
  constructor(readonly code: number, readonly reply: string[]) {}
}

const dsnOf = (r: SmtpReply): DSN => new DSN(r.code, r.lines.length ? r.lines : ['']);
/** 421 means the service closes the connection (RFC 5321 3.8): the client's connection closes too. */
const verdictOf = (r: SmtpReply): number =>
  isPositive(r) ? codes.ok : r.code >= 500 ? codes.deny : r.code === 421 ? codes.denysoftdisconnect : codes.denysoft;

interface EnvelopeAddress {
  address: string | (() => string);
  isNull(): boolean;
}

interface HarakaTransaction extends Transaction {
  mail_from: EnvelopeAddress;
  rcpt_to: EnvelopeAddress[];
  found_hb_sep: boolean;
  /** 'accepted' once Haraka has written our 250 (set just before it resets the transaction). */
  msg_status?: string;
  header: { header_list: string[] };
  message_stream: {
    get_data(options: Record<string, unknown>, cb: (data: Buffer) => void): void;
    add_line(line: Buffer): void;
  };
}

/**
 * Messages whose body is larger than this are spooled to var/spool/ as they arrive and streamed from there
 * through signing, encryption and delivery (src/smime/stream); smaller ones are secured in memory, which is
 * faster for them.
 */
export const STREAM_ABOVE = 4 * 1024 * 1024;

/**
 * A spooled message that cannot be streamed (top level S/MIME already, as all inbound encrypted mail; content to
 * be made 7-bit; a header section over 1 MiB) is read into memory, and decrypting and verifying it costs about
 * four times its size. Anyone can send such messages, so a few at once could take the process, and everyone's
 * mail, down: one of them per process is held in memory at a time, from reading it until its deliveries are
 * done, and the others wait their turn in order of arrival. Set up by register().
 */
let largeInMemory: OneAtATime;
/** smtp.ini inactivity_timeout in ms: how long Haraka lets a client sit silent. */
let clientIdleMs: number;

/**
 * The share of smtp.ini's inactivity_timeout a large message may wait for its turn before its client gets a 451:
 * a client is not kept silent in line for longer than a part of what the gateway allows it to be idle, and the
 * rest of the 10 minutes it waits for a reply to its final dot is left for securing and delivering the message.
 */
const LARGE_WAIT_SHARE = 0.4;

/** The body of a message being received: held (as Haraka's store holds it too) until it is large, then on disk. */
interface Tap {
  inBody: boolean;
  /** A CR not followed by LF in the header section (see hasBareCr). */
  bareCrInHeader?: boolean;
  held: Buffer[];
  heldBytes: number;
  spool?: BodySpool;
  /** SHA-256 of the message as the client sent it (Haraka's own Received field comes before the tap). */
  digest: Hash;
}

const taps = new WeakMap<object, Tap>();

interface State {
  upstream: UpstreamTransaction;
  destination: Endpoint;
  mailParams: MailParams;
  rcptParams: Map<string, RcptParams>;
  /** Set by data_post when everything went out: what the queue hook answers. */
  accepted?: SmtpReply;
  /**
   * data_post is securing and delivering: the client's whole message is here, so it goes out even if the client
   * leaves; only a large message still waiting for its turn in memory (largeInMemory) is given up, nothing of it sent.
   */
  delivering?: boolean;
  /** Aborted when the client left while data_post was under way: it will not see our answer. */
  clientGone: AbortController;
  /** The in-doubt key (envelope and the client's bytes), set at data_post. */
  key?: string;
}

const states = new WeakMap<object, State>();
/** Transactions with an in-doubt marker: the marker goes once the client has our 250. */
const inDoubtKeys = new WeakMap<object, string>();

let store: KeyStore | undefined;
let policy: PolicyConfig;
let delivery: DeliverySettings;
let queue: RetryQueue | undefined;
let spoolDir: string;
let inDoubt: InDoubtDeliveries;
const heloFallback = hostname();

function addressOf(a: EnvelopeAddress): string {
  if (a.isNull()) return '';
  return typeof a.address === 'function' ? a.address() : String(a.address);
}

function storePassphrase(dir: string): string {
  const cfg = gatewayConfig().store;
  const file = cfg.passphrase_file ? instancePath(dir, cfg.passphrase_file) : '';
  if (file && existsSync(file)) return readFileSync(file, 'utf8').trim();
  const env = process.env[cfg.passphrase_env];
  if (env) return env;
  if (!file) throw new Error(`no store passphrase: set ${cfg.passphrase_env} or [store] passphrase_file`);
  // First start: a random passphrase, readable by the gateway's user only (as cstp init does).
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const pass = randomBytes(32).toString('base64url');
  writeFileSync(file, `${pass}\n`, { mode: 0o600, flag: 'wx' });
  return pass;
}

export function register(this: Plugin): void {
  const dir = instanceDir();
  const config = gatewayConfig();
  policy = resolvePolicyConfig(policySettings(config));
  delivery = deliverySettings(config, dir);
  try {
    // verify: damaged data pages are a startup error here, not a crash on the first message. Once per start: the
    // cluster master (or the only process) reads every record before any worker is forked, not each worker again.
    store = KeyStore.open({ path: instancePath(dir, config.store.path), passphrase: storePassphrase(dir), verify: cluster.isPrimary });
    for (const domain of ensureGatewayIdentities(store, policy.localDomains)) {
      this.lognotice(`generated a gateway identity for ${domain}: ${store.gatewayIdentity(domain)?.cert.fingerprint}`);
    }
  } catch (err) {
    return exitUnusable(`cstp: cannot open the key store: ${(err as Error).message}`);
  }
  queue = new RetryQueue({
    dir: join(varDir(dir), 'queue'),
    // The first try at once: DSNs and queued parts go out right away, later tries back off.
    delays: [0, 60_000, 300_000, 900_000, 1_800_000, ...Array<number>(23).fill(3_600_000)],
    reportingMta: heloFallback,
    send: smtpSender({ heloName: heloFallback, tls: delivery.tls, timeouts: delivery.timeouts }),
    onError: (err) => this.logerror(`retry queue: ${err.message}`),
  });
  const inactivitySeconds = Number((this.config.get('smtp.ini') as { main?: { inactivity_timeout?: unknown } }).main?.inactivity_timeout ?? 300);
  clientIdleMs = (inactivitySeconds > 0 ? inactivitySeconds : 300) * 1000;
  largeInMemory = new OneAtATime(LARGE_WAIT_SHARE * clientIdleMs);
  spoolDir = join(varDir(dir), 'spool');
  mkdirSync(spoolDir, { recursive: true, mode: 0o700 }); // messages are private mail
  removeStaleSpoolFiles(spoolDir);
  keepHarakaSpoolPrivate(this, join(spoolDir, 'haraka'));
  inDoubt = new InDoubtDeliveries(join(varDir(dir), 'in-doubt'));
}

/** A cluster worker's message to the master: an item was queued, run the queue now rather than at its next tick. */
const RUN_QUEUE = 'cstp-gateway.run_queue';
/** A cluster worker's message to the master: this instance cannot run (its store cannot be opened). */
const UNUSABLE = 'cstp-gateway.unusable';

/**
 * Exit status 78 (EX_CONFIG; cstp.service has RestartPreventExitStatus=78): restarting cannot help. A cluster
 * worker takes its master along, which would otherwise fork a new worker for every one that exits, forever.
 */
function exitUnusable(reason: string): void {
  process.stderr.write(`${reason}\n`);
  if (cluster.isWorker && process.send) process.send({ event: UNUSABLE, reason }, () => process.exit(78));
  else process.exit(78);
}

/**
 * The retry queue has one runner per spool: the only process (nodes=0) or the cluster master, which takes no
 * connections; workers only enqueue and wake it. init_master runs in exactly that process, which also sweeps
 * the expired in-doubt markers for all of them.
 */
export function hook_init_master(this: Plugin, next: Next, server: { cluster?: unknown }): void {
  queue!.start();
  inDoubt.sweepEvery(3_600_000, (err) => this.logerror(`in-doubt markers: ${err.message}`));
  if (server.cluster) {
    cluster.on('message', (worker, msg: { event?: string; reason?: string } | undefined) => {
      if (msg?.event === RUN_QUEUE) queue!.runDue().catch((err: Error) => this.logerror(`retry queue: ${err.message}`));
      if (msg?.event === UNUSABLE) {
        process.stderr.write(`cstp: worker ${worker.process.pid} cannot run (${msg.reason}): stopping the gateway\n`);
        process.exit(78);
      }
    });
  }
  next();
}

/** After an enqueue: the runner kicks itself (RetryQueue.enqueue), a worker asks the master. */
function wakeQueueRunner(): void {
  if (cluster.isWorker) process.send?.({ event: RUN_QUEUE });
}

/**
 * Haraka's message store spools large messages to connection.ini [main] spool_dir, /tmp when unset, in files
 * other users could read. Unless the administrator chose a directory, it goes to var/spool/haraka/ (0700).
 */
function keepHarakaSpoolPrivate(plugin: Plugin, dir: string): void {
  const cfg = (plugin.haraka_require('connection') as { cfg?: { main?: Record<string, unknown> } }).cfg;
  if (!cfg?.main || cfg.main.spool_dir) return;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  cfg.main.spool_dir = dir;
}

/** Spool files are named <pid>-<uuid>.eml; those of a process that is gone (a crash) are removed. */
function removeStaleSpoolFiles(dir: string): void {
  for (const name of readdirSync(dir)) {
    const pid = Number(/^(\d+)-/.exec(name)?.[1]);
    if (pid && processAlive(pid)) continue; // this process's own, or a live worker's
    try {
      unlinkSync(join(dir, name));
    } catch {
      // gone already
    }
  }
}

/**
 * A diverted connection (inline bridge) continues to the address and port the client connected to, from the
 * client's own address unless [transparent] source_address = gateway; any other goes to next_hop when set, else
 * to the address it reached us on.
 */
function destinationOf(connection: Connection): Endpoint {
  if (isDiverted(connection.server)) {
    const source = gatewayConfig().transparent.source_address === 'client' ? connection.remote.ip : undefined;
    return { host: connection.local.ip, port: connection.local.port, source };
  }
  return delivery.nextHop ?? { host: connection.local.ip, port: delivery.destinationPort };
}

function mailParamsOf(params: Record<string, string | null> | undefined): MailParams {
  const p = params ?? {};
  const out: MailParams = {};
  if (p.SIZE && /^\d+$/.test(p.SIZE)) out.size = Number(p.SIZE);
  if (p.BODY && /^(7BIT|8BITMIME)$/i.test(p.BODY)) out.body = p.BODY.toUpperCase() as MailParams['body'];
  if ('SMTPUTF8' in p) out.smtputf8 = true;
  if (p.RET && /^(FULL|HDRS)$/i.test(p.RET)) out.ret = p.RET.toUpperCase() as MailParams['ret'];
  if (p.ENVID) out.envid = p.ENVID;
  return out;
}

function rcptParamsOf(params: Record<string, string | null> | undefined): RcptParams {
  const p = params ?? {};
  const out: RcptParams = {};
  if (p.NOTIFY) out.notify = p.NOTIFY.toUpperCase().split(',');
  if (p.ORCPT) out.orcpt = p.ORCPT;
  return out;
}

function closeState(connection: Connection): void {
  const tx = connection.transaction;
  if (!tx) return;
  const state = states.get(tx);
  // A delivery under way finishes (and leaves its in-doubt marker): cut now, the destination might have it anyway.
  if (state?.delivering) state.clientGone.abort();
  else state?.upstream.close();
  states.delete(tx);
}

/** The route memory only spares a refused try next time: a store that fails (disk full) must not fail a delivery. */
function bestEffort(routes: RouteMemory, connection: Connection, plugin: Plugin): RouteMemory {
  const failed = (err: unknown): undefined => void connection.logerror(plugin, `route memory: ${(err as Error).message}`);
  return {
    get: (destination) => { try { return routes.get(destination); } catch (err) { return failed(err); } },
    set: (destination, route) => { try { routes.set(destination, route); } catch (err) { failed(err); } },
  };
}

export function hook_mail(
  this: Plugin, next: Next, connection: Connection, params: [EnvelopeAddress, Record<string, string | null>],
): void {
  const tx = connection.transaction as HarakaTransaction | null;
  if (!tx) return next();
  closeState(connection);
  const destination = destinationOf(connection);
  const upstream = new UpstreamTransaction({
    destination,
    // The relay too is reached from the client's address: in fully transparent mode this host has none.
    relay: delivery.relay && { ...delivery.relay, source: destination.source },
    routes: bestEffort(routeMemoryOf(store!), connection, this),
    heloName: connection.hello.host || heloFallback,
    tls: delivery.tls,
    timeouts: delivery.timeouts,
  });
  const mailParams = mailParamsOf(params[1]);
  const state: State = { upstream, destination, mailParams, rcptParams: new Map(), clientGone: new AbortController() };
  states.set(tx, state);
  upstream.mailFrom(addressOf(params[0]), mailParams).then(
    (reply) => {
      if (!isPositive(reply)) {
        upstream.close();
        states.delete(tx);
        // The transaction ends here: its decision line says why nothing was sent.
        logDecision(connection, tx, state, {
          direction: directionOf(connection),
          sender: addressOf(params[0]),
          recipients: [],
          deliveries: [{ recipients: [], action: 'not-sent', reply: { code: reply.code, text: reply.lines.join(' ') }, durationMs: 0 }],
        });
      }
      next(verdictOf(reply), dsnOf(reply) as unknown as string);
    },
    (err: Error) => {
      connection.logerror(this, `upstream MAIL failed: ${err.message}`);
      next(codes.denysoft, '4.3.0 cstp: upstream error');
    },
  );
}

export function hook_rcpt(
  this: Plugin, next: Next, connection: Connection, params: [EnvelopeAddress, Record<string, string | null>],
): void {
  const tx = connection.transaction;
  const state = tx && states.get(tx);
  if (!state) return next(codes.denysoft, '4.3.0 cstp: no upstream transaction');
  const address = addressOf(params[0]);
  const rcptParams = rcptParamsOf(params[1]);
  state.upstream.rcptTo(address, rcptParams).then(
    (reply) => {
      if (isPositive(reply)) state.rcptParams.set(address, rcptParams);
      next(verdictOf(reply), dsnOf(reply) as unknown as string);
    },
    (err: Error) => {
      connection.logerror(this, `upstream RCPT failed: ${err.message}`);
      next(codes.denysoft, '4.3.0 cstp: upstream error');
    },
  );
}

function tlsFacts(tls: TlsState | undefined): TlsFacts | null {
  return tls ? { protocol: tls.protocol, cipher: tls.cipher, verified: tls.authorized } : null;
}

function readMessage(tx: HarakaTransaction): Promise<Buffer> {
  return new Promise((done) => tx.message_stream.get_data({ dot_stuffed: true }, (data) => done(Buffer.from(data))));
}

/**
 * DATA starts: every line Haraka stores passes through here first. Haraka's message store keeps everything in
 * memory up to spool_after and then falls behind writing its spool file (one 64 KB write per incoming chunk, so
 * its backlog grows with the message). So once the body passes STREAM_ABOVE, its lines go to cstp's own spool
 * file instead (BodySpool: unstuffed, canonical, written in 1 MiB batches) and Haraka's store gets no more; the
 * header section stays Haraka's (transaction.header, with its Received field). A smaller message is read back
 * from Haraka's store as before.
 */
export function hook_data(this: Plugin, next: Next, connection: Connection): void {
  const tx = connection.transaction as HarakaTransaction | null;
  if (tx) tapData(tx);
  next();
}

function tapData(tx: HarakaTransaction): void {
  const store = tx.message_stream;
  const original = store.add_line.bind(store);
  const tap: Tap = { inBody: false, held: [], heldBytes: 0, digest: createHash('sha256') };
  taps.set(tx, tap);
  store.add_line = (line: Buffer): void => {
    tap.digest.update(line);
    if (tap.spool) return tap.spool.line(line);
    if (tap.inBody) {
      tap.held.push(line);
      tap.heldBytes += line.length;
      if (tap.heldBytes > STREAM_ABOVE) {
        // From here on the body goes to disk only; what Haraka's store holds so far is simply never read.
        tap.spool = new BodySpool(join(spoolDir, `${process.pid}-${tx.uuid}.body`));
        for (const held of tap.held) tap.spool.line(held);
        tap.held = [];
        return;
      }
    } else if (tx.found_hb_sep) {
      tap.inBody = true; // this line is the empty line that ends the header section
    } else if (hasBareCr(line)) {
      tap.bareCrInHeader = true;
    }
    original(line);
  };
}

/**
 * Whether a line (as Haraka splits DATA: at LF) holds a CR that does not end it. RFC 5322 forbids a bare CR;
 * in the header section Haraka rewrites it as a fold when it adds its Received field, so the text after it would
 * join an outer header field, which S/MIME leaves in plaintext (found by the gateway fuzzer).
 */
function hasBareCr(line: Buffer): boolean {
  const cr = line.indexOf(0x0d);
  return cr >= 0 && cr < line.length - 2;
}

/** The spooled message of a large transaction (header section from Haraka, body from disk), else undefined. */
function spooledMessage(tx: HarakaTransaction): SpooledMessage | undefined {
  const tap = taps.get(tx);
  taps.delete(tx);
  if (!tap?.spool) return undefined;
  const head = Buffer.from(`${tx.header.header_list.map((h) => h.replace(/\r?\n/g, '\r\n')).join('')}\r\n`);
  return tap.spool.finish(head);
}

function abortTap(tx: object | null): void {
  const tap = tx && taps.get(tx);
  if (!tap) return;
  taps.delete(tx);
  tap.spool?.abort();
}

/** What data_post sends: the plan, and per delivery a source that yields its bytes once per attempt. */
interface Prepared {
  plan: Secured['plan'];
  deliveries: {
    plan: Secured['deliveries'][number]['plan'];
    action: string;
    algorithm?: string;
    certificates: string[];
    source: () => MessageSource;
  }[];
  /** What a DSN quotes: the message, or for a spooled one its header section. */
  original: Buffer;
}

const streamedDeliveries = (streamed: SecuredSpooled, spool: SpooledMessage): Prepared => ({
  plan: streamed.plan,
  deliveries: streamed.deliveries.map((d) => ({ ...d, source: () => d.message.chunks() })),
  original: spool.head,
});

const inMemoryDeliveries = (secured: Secured, original: Buffer): Prepared => ({
  plan: secured.plan,
  deliveries: secured.deliveries.map((d) => ({ ...d, source: () => [d.message] })),
  original,
});

export function hook_data_post(this: Plugin, next: Next, connection: Connection): void {
  const tx = connection.transaction as HarakaTransaction | null;
  const state = tx && states.get(tx);
  if (!tx || !state) return next(codes.denysoft, '4.3.0 cstp: no upstream transaction');
  if (taps.get(tx)?.bareCrInHeader) {
    // Refused before anything is secured or sent: the header cannot be kept as the sender wrote it.
    abortTap(tx);
    state.upstream.close();
    states.delete(tx);
    return next(codes.deny, dsnOf(localReply(554, '5.6.0', 'cstp: bare CR in the header section (RFC 5322 2.2); nothing was sent')) as unknown as string);
  }
  state.key = transactionKey(tx);
  const earlier = state.key && findInDoubt(this, connection, state.key);
  if (earlier) return answerResend(this, next, connection, tx, state, earlier);
  state.delivering = true;
  // The client is silent now, waiting for the reply to its final dot, and may wait 10 minutes (RFC 5321
  // 4.5.3.2.6). Haraka's idle timer would cut it with a 421 while the destination is still within its own
  // final-dot time (up to 9 minutes): cstp's upstream timeouts bound this wait instead, and the timer is back
  // once the client has its reply.
  connection.client?.setTimeout(0);
  const answered = (): void => void connection.client?.setTimeout(clientIdleMs);
  processMessage(this, connection, tx, state).then(
    (reply) => {
      answered();
      state.delivering = false;
      if (isPositive(reply)) {
        state.accepted = reply;
        return next();
      }
      states.delete(tx);
      next(verdictOf(reply), dsnOf(reply) as unknown as string);
    },
    (err: Error) => {
      answered();
      state.delivering = false;
      connection.logerror(this, `cstp: ${err.stack ?? err.message}`);
      state.upstream.close();
      states.delete(tx);
      next(codes.denysoft, dsnOf(localReply(451, '4.3.0', 'cstp could not process the message; nothing was sent')) as unknown as string);
    },
  );
}

/** The transaction's in-doubt key: its envelope and the digest of what the client sent (see tapData). */
function transactionKey(tx: HarakaTransaction): string | undefined {
  const tap = taps.get(tx);
  return tap && inDoubtKey({ from: addressOf(tx.mail_from), recipients: tx.rcpt_to.map(addressOf) }, tap.digest.digest());
}

/** The marker of an earlier delivery of this transaction, if any; one that cannot be read counts as none (a duplicate at worst). */
function findInDoubt(plugin: Plugin, connection: Connection, key: string): InDoubtRecord | undefined {
  try {
    return inDoubt.find(key);
  } catch (err) {
    connection.logerror(plugin, `in-doubt marker unreadable, delivering: ${(err as Error).message}`);
    return undefined;
  }
}

/**
 * Every part is delivered or queued, and the client has no 250 yet: from here until it has, a resend of this
 * transaction would be a duplicate. Written before anything else, to keep that window short. A marker that
 * cannot be written (disk full) does not change the answer: the delivery happened.
 */
function markInDoubt(plugin: Plugin, connection: Connection, tx: HarakaTransaction, state: State, reply: SmtpReply): void {
  if (!state.key) return;
  try {
    inDoubt.record(state.key, { transaction: tx.uuid, reply: `${reply.code} ${reply.lines.join(' ')}`, pid: process.pid, abandoned: state.clientGone.signal.aborted });
    inDoubtKeys.set(tx, state.key);
  } catch (err) {
    connection.logerror(plugin, `in-doubt marker not written (a resend would be delivered again): ${(err as Error).message}`);
  }
}

/**
 * The client sends again a transaction whose earlier delivery is in doubt (the destination accepted it, the
 * client never had our 250): a 250 now, and nothing more to the destination. The marker stays until this 250
 * is on the client socket, in case this answer is lost too.
 */
function answerResend(plugin: Plugin, next: Next, connection: Connection, tx: HarakaTransaction, state: State, earlier: InDoubtRecord): void {
  const key = state.key!;
  abortTap(tx);
  state.upstream.quit();
  const reply = localReply(250, '2.0.0', `already delivered before an interruption (${key.slice(0, 12)})`);
  connection.lognotice(plugin, `resend of transaction ${earlier.transaction}, whose destination said "${earlier.reply}" before the client was answered: 250 without delivering again (in-doubt ${key})`);
  const recipients = tx.rcpt_to.map(addressOf);
  logDecision(connection, tx, state, {
    direction: directionOf(connection),
    sender: addressOf(tx.mail_from),
    recipients,
    deliveries: [{ recipients, action: 'already-delivered', reply: { code: reply.code, text: reply.lines.join(' ') }, durationMs: 0 }],
  });
  state.accepted = reply;
  inDoubtKeys.set(tx, key);
  next();
}

/** The transaction's one decision line (src/log.ts): the client and destination legs, and each delivery. */
function logDecision(
  connection: Connection, tx: Transaction, state: State,
  line: { direction: Direction; sender: string; recipients: string[]; deliveries: DeliveryFacts[] },
): void {
  decision({ uuid: tx.uuid, client: clientFacts(connection), destination: { ...state.destination, tls: tlsFacts(state.upstream.tls) }, ...line });
}

/** What cstp-direction decided at connect (inbound when it could not run). */
const directionOf = (connection: Connection): Direction => (connection.notes.cstp_direction as Direction | undefined) ?? 'inbound';

async function processMessage(plugin: Plugin, connection: Connection, tx: HarakaTransaction, state: State): Promise<SmtpReply> {
  const spool = spooledMessage(tx);
  try {
    return await secureAndDeliver(plugin, connection, tx, state, spool);
  } finally {
    spool?.dispose();
  }
}

/**
 * Plans, secures and delivers the transaction. A large message is spooled and streamed (secureSpooled); when it
 * cannot be streamed it is read into memory and secured there (secureMessage), one such message per process at a
 * time (largeInMemory); a small message is secured in memory at once.
 */
async function secureAndDeliver(
  plugin: Plugin, connection: Connection, tx: HarakaTransaction, state: State, spool: SpooledMessage | undefined,
): Promise<SmtpReply> {
  const started = Date.now();
  const sender = addressOf(tx.mail_from);
  const recipients = tx.rcpt_to.map(addressOf);
  const input = { clientIp: connection.remote.ip, direction: connection.notes.cstp_direction as Direction | undefined, sender, recipients };
  /** Nothing goes out: the upstream transaction is closed and the decision line says why. */
  const notSent = (reply: SmtpReply, action: string): SmtpReply => {
    state.upstream.close();
    const deliveries = [{ recipients, action, reply: { code: reply.code, text: reply.lines.join(' ') }, durationMs: Date.now() - started }];
    logDecision(connection, tx, state, { direction: input.direction ?? 'outbound', sender, recipients, deliveries });
    return reply;
  };
  // Signing or encryption failed: nothing may go out, least of all in plaintext.
  const securingFailed = (err: unknown): SmtpReply => {
    connection.logerror(plugin, `securing failed: ${(err as Error).message}`);
    return notSent(localReply(451, '4.7.0', 'cstp could not secure the message; nothing was sent, try again later'), 'failed');
  };
  /** `quoted`: what a DSN quotes, when not the whole message (a spooled one's header section, so the message need not stay in memory for it). */
  const inMemory = async (read: () => Buffer | Promise<Buffer>, quoted?: Buffer): Promise<SmtpReply> => {
    let secured: Prepared;
    try {
      const message = await read();
      secured = inMemoryDeliveries(secureMessage({ ...input, message }, policy, store!), quoted ?? message);
    } catch (err) {
      return securingFailed(err);
    }
    return deliverSecured(plugin, connection, tx, state, secured, started);
  };

  if (!spool) return inMemory(() => readMessage(tx));
  let streamed: SecuredSpooled | undefined;
  try {
    streamed = await secureSpooled({ ...input, spool }, policy, store!);
  } catch (err) {
    return securingFailed(err);
  }
  if (streamed) return deliverSecured(plugin, connection, tx, state, streamedDeliveries(streamed, spool), started);
  try {
    if (largeInMemory.busy) connection.lognotice(plugin, 'a large message waits for its turn in memory (one at a time per process)');
    // Held until the deliveries are done: their bytes are in memory until then.
    return await largeInMemory.run(() => inMemory(() => spool.readAll(), spool.head), state.clientGone.signal);
  } catch (err) {
    if (!(err instanceof NoTurn)) throw err;
    if (err.reason === 'cancelled') {
      connection.lognotice(plugin, 'the client left while its large message waited for its turn in memory: nothing was sent');
      return notSent(localReply(451, '4.3.2', 'cstp: the client left before its turn; nothing was sent'), 'not-sent');
    }
    connection.lognotice(plugin, `a large message waited ${largeInMemory.maxWaitMs / 1000} s for its turn in memory: 451, nothing was sent`);
    return notSent(localReply(451, '4.3.2', 'cstp: busy with another large message, try again later'), 'deferred');
  }
}

/** The secured message to the destination, or for what the policy holds back or refuses, the reason. */
async function deliverSecured(
  plugin: Plugin, connection: Connection, tx: HarakaTransaction, state: State, secured: Prepared, started: number,
): Promise<SmtpReply> {
  const sender = addressOf(tx.mail_from);
  const recipients = tx.rcpt_to.map(addressOf);
  const facts = (deliveries: DeliveryFacts[], dir: Direction): void => logDecision(connection, tx, state, { direction: dir, sender, recipients, deliveries });
  const { plan } = secured;
  if (plan.temporaryFailure) {
    state.upstream.close();
    const r = plan.temporaryFailure.reply;
    const reply = localReply(r.code, r.enhanced, r.text);
    facts([{ recipients: plan.temporaryFailure.recipients, action: 'deferred', reply: { code: r.code, text: r.text }, durationMs: Date.now() - started }], plan.direction);
    return reply;
  }
  const refusals = plan.refused.map((r): DeliveryFacts => ({
    recipients: [r.recipient], action: 'refused', reply: { code: r.reply.code, text: `${r.reply.enhanced} ${r.reply.text}` }, durationMs: 0,
  }));
  if (secured.deliveries.length === 0) {
    state.upstream.close();
    const reply = localReply(550, '5.7.1', 'cstp: no recipient can receive this message under the securing policy');
    facts(refusals, plan.direction);
    return reply;
  }
  const deliveries = secured.deliveries.map((d) => ({ recipients: d.plan.recipients, message: d.source }));
  const outcome = await state.upstream.deliver(deliveries);
  const took = Date.now() - started;
  try {
    if (outcome.status === 'partial') {
      await state.upstream.queueFailures(outcome, deliveries, queue!);
      wakeQueueRunner();
    }
    if (outcome.status !== 'failed') bounceRefusals(plan.refused, tx, sender, state, connection, secured.original);
  } catch (err) {
    // Part went out but the rest (or the DSN) cannot be kept (disk full): a 4xx makes the client keep the message
    // and send it again, a duplicate for some recipients, where a 250 would lose it for the others.
    connection.logerror(plugin, `retry queue: ${(err as Error).message}`);
    return localReply(451, '4.3.0', 'cstp could not queue part of the message; try again later (some recipients may get it twice)');
  }
  if (isPositive(outcome.reply)) markInDoubt(plugin, connection, tx, state, outcome.reply);
  facts([
    ...secured.deliveries.map((d, i): DeliveryFacts => {
      const result = outcome.deliveries[i];
      const last = result.attempts[result.attempts.length - 1];
      return {
        recipients: d.plan.recipients,
        action: d.action,
        algorithm: d.algorithm,
        certificates: d.certificates,
        route: result.route === 'primary' ? 'same-destination' : result.route,
        tls: tlsFacts(last?.tls),
        reply: { code: result.reply.code, text: result.reply.lines.join(' ') },
        durationMs: took,
      };
    }),
    ...refusals,
  ], plan.direction);
  return outcome.reply;
}

/** Restrictive refusals: a DSN to the sender (never for the null sender), sent toward the client's mail server. */
function bounceRefusals(
  refused: Secured['plan']['refused'], tx: HarakaTransaction, sender: string, state: State, connection: Connection, message: Buffer,
): void {
  const notify = refused.filter((r) => r.notifySender);
  if (notify.length === 0 || !queue) return;
  // The sender's mail server is the client of an outbound transaction; it takes mail on the destination port.
  // From a diverted connection the DSN comes from the destination's address, as if that server had sent it.
  const bounceRoute: Endpoint = {
    host: connection.remote.ip,
    port: delivery.destinationPort,
    source: state.destination.source === undefined ? undefined : connection.local.ip,
  };
  const item: QueueItem = {
    id: `${tx.uuid}-refused`,
    from: sender,
    mailParams: state.mailParams,
    recipients: notify.map((r) => ({ address: r.recipient, params: state.rcptParams.get(r.recipient) ?? {} })),
    destination: state.destination,
    arrival: new Date().toISOString(),
    attempts: 0,
    nextAttempt: 0,
  };
  const dsn = makeDsn({
    reportingMta: heloFallback,
    item,
    message,
    failed: notify.map((r) => ({
      recipient: item.recipients.find((q) => q.address === r.recipient)!,
      reply: localReply(r.reply.code, r.reply.enhanced, `${r.reply.text}. ${r.dsn}`),
    })),
    date: new Date(),
  });
  queue.enqueue({ from: '', recipients: [{ address: sender, params: {} }], destination: bounceRoute }, dsn);
  wakeQueueRunner();
}

function answerQueue(this: Plugin, next: Next, connection: Connection): void {
  const tx = connection.transaction;
  const state = tx && states.get(tx);
  if (!tx || !state?.accepted) return next(codes.denysoft, '4.3.0 cstp: message was not delivered');
  const reply = state.accepted;
  states.delete(tx);
  next(codes.ok, reply.lines.join(' '));
}

export const hook_queue = answerQueue;
export const hook_queue_outbound = answerQueue;

export function hook_reset_transaction(this: Plugin, next: Next, connection: Connection): void {
  settleAnswered(this, connection);
  abortTap(connection.transaction);
  closeState(connection);
  next();
}

/**
 * Haraka resets the transaction right after writing our 250 to the client socket (queue_ok_respond marks it
 * accepted first): the delivery is no longer in doubt. Any other reset keeps the marker, as abandoned: a client
 * that left before the 250 was written ended the transaction then (disconnect resets it), and its resend may
 * come. (A client that closes after reading the 250, as many do at once, must not keep the marker alive.)
 */
function settleAnswered(plugin: Plugin, connection: Connection): void {
  const tx = connection.transaction as HarakaTransaction | null;
  const key = tx && inDoubtKeys.get(tx);
  if (!key) return;
  inDoubtKeys.delete(tx);
  try {
    if (tx.msg_status === 'accepted') inDoubt.settle(key);
    else inDoubt.abandon(key);
  } catch (err) {
    connection.logerror(plugin, `in-doubt marker not updated: ${(err as Error).message}`);
  }
}

export function hook_disconnect(this: Plugin, next: Next, connection: Connection): void {
  abortTap(connection.transaction);
  closeState(connection);
  next();
}
