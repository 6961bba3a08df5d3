/**
 * cstp-gateway: the synchronous securing proxy. At MAIL it opens the upstream transaction to the original
 * destination (connection.local.ip, or [delivery] next_hop); each RCPT is passed through and answered with the
 * destination's reply; at data_post the message is planned and secured (src/gateway) and delivered (src/delivery),
 * and the client's DATA gets the destination's answer: 250 only when every delivery was accepted. Refused
 * recipients of the restrictive policy get a DSN to the sender through the retry queue; a partial failure goes
 * into that queue. One decision line per transaction. The queue hook only reports what data_post decided.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { instancePath } from '../../src/config/cstp-config';
import { deliverySettings, type DeliverySettings } from '../../src/config/delivery-settings';
import { policySettings } from '../../src/config/schema';
import { varDir } from '../../src/config/instance';
import {
  isPositive, localReply, makeDsn, RetryQueue, routeMemoryOf, smtpSender, UpstreamTransaction,
  type Endpoint, type MailParams, type QueueItem, type RcptParams, type SmtpReply, type TlsState,
} from '../../src/delivery';
import { ensureGatewayIdentities } from '../../src/gateway/identities';
import { secureMessage, type Secured } from '../../src/gateway/securing';
import { decision, type DeliveryFacts, type TlsFacts } from '../../src/log';
import { resolvePolicyConfig, type PolicyConfig } from '../../src/policy/config';
import type { Direction } from '../../src/policy/plan';
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
  message_stream: { get_data(options: Record<string, unknown>, cb: (data: Buffer) => void): void };
}

interface State {
  upstream: UpstreamTransaction;
  destination: Endpoint;
  mailParams: MailParams;
  rcptParams: Map<string, RcptParams>;
  /** Set by data_post when everything went out: what the queue hook answers. */
  accepted?: SmtpReply;
}

const states = new WeakMap<object, State>();

let store: KeyStore | undefined;
let policy: PolicyConfig;
let delivery: DeliverySettings;
let queue: RetryQueue | undefined;
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
    store = KeyStore.open({ path: instancePath(dir, config.store.path), passphrase: storePassphrase(dir) });
    for (const domain of ensureGatewayIdentities(store, policy.localDomains)) {
      this.loginfo(`generated a gateway identity for ${domain}: ${store.gatewayIdentity(domain)?.cert.fingerprint}`);
    }
  } catch (err) {
    process.stderr.write(`cstp: cannot open the key store: ${(err as Error).message}\n`);
    process.exit(78);
  }
  queue = new RetryQueue({
    dir: join(varDir(dir), 'queue'),
    // The first try at once: DSNs and queued parts go out right away, later tries back off.
    delays: [0, 60_000, 300_000, 900_000, 1_800_000, ...Array<number>(23).fill(3_600_000)],
    reportingMta: heloFallback,
    send: smtpSender({ heloName: heloFallback, tls: delivery.tls, timeouts: delivery.timeouts }),
    onError: (err) => this.logerror(`retry queue: ${err.message}`),
  });
  queue.start();
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
  states.get(tx)?.upstream.close();
  states.delete(tx);
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
    routes: routeMemoryOf(store!),
    heloName: connection.hello.host || heloFallback,
    tls: delivery.tls,
    timeouts: delivery.timeouts,
  });
  const mailParams = mailParamsOf(params[1]);
  const state: State = { upstream, destination, mailParams, rcptParams: new Map() };
  states.set(tx, state);
  upstream.mailFrom(addressOf(params[0]), mailParams).then(
    (reply) => {
      if (!isPositive(reply)) {
        upstream.close();
        states.delete(tx);
        // The transaction ends here: its decision line says why nothing was sent.
        decision({
          uuid: tx.uuid,
          direction: (connection.notes.cstp_direction as Direction | undefined) ?? 'inbound',
          client: clientFacts(connection),
          destination: { ...destination, tls: tlsFacts(upstream.tls) },
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

export function hook_data_post(this: Plugin, next: Next, connection: Connection): void {
  const tx = connection.transaction as HarakaTransaction | null;
  const state = tx && states.get(tx);
  if (!tx || !state) return next(codes.denysoft, '4.3.0 cstp: no upstream transaction');
  processMessage(this, connection, tx, state).then(
    (reply) => {
      if (isPositive(reply)) {
        state.accepted = reply;
        return next();
      }
      states.delete(tx);
      next(verdictOf(reply), dsnOf(reply) as unknown as string);
    },
    (err: Error) => {
      connection.logerror(this, `cstp: ${err.stack ?? err.message}`);
      state.upstream.close();
      states.delete(tx);
      next(codes.denysoft, dsnOf(localReply(451, '4.3.0', 'cstp could not process the message; nothing was sent')) as unknown as string);
    },
  );
}

async function processMessage(plugin: Plugin, connection: Connection, tx: HarakaTransaction, state: State): Promise<SmtpReply> {
  const started = Date.now();
  const sender = addressOf(tx.mail_from);
  const recipients = tx.rcpt_to.map(addressOf);
  const message = await readMessage(tx);
  const direction = connection.notes.cstp_direction as Direction | undefined;
  const facts = (deliveries: DeliveryFacts[], dir: Direction): void =>
    decision({
      uuid: tx.uuid,
      direction: dir,
      client: clientFacts(connection),
      destination: { ...state.destination, tls: tlsFacts(state.upstream.tls) },
      sender,
      recipients,
      deliveries,
    });

  let secured: Secured;
  try {
    secured = secureMessage({ clientIp: connection.remote.ip, direction, sender, recipients, message }, policy, store!);
  } catch (err) {
    // Signing or encryption failed: nothing may go out, least of all in plaintext.
    state.upstream.close();
    const reply = localReply(451, '4.7.0', 'cstp could not secure the message; nothing was sent, try again later');
    connection.logerror(plugin, `securing failed: ${(err as Error).message}`);
    facts([{ recipients, action: 'failed', reply: { code: reply.code, text: reply.lines.join(' ') }, durationMs: Date.now() - started }], direction ?? 'outbound');
    return reply;
  }
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
  const deliveries = secured.deliveries.map((d) => ({ recipients: d.plan.recipients, message: () => [d.message] }));
  const outcome = await state.upstream.deliver(deliveries);
  const took = Date.now() - started;
  if (outcome.status === 'partial') await state.upstream.queueFailures(outcome, deliveries, queue!);
  if (outcome.status !== 'failed') bounceRefusals(plan.refused, tx, sender, state, connection, message);
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
  void queue.runDue().catch((err: Error) => connection.logerror(`retry queue: ${err.message}`));
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
  closeState(connection);
  next();
}

export function hook_disconnect(this: Plugin, next: Next, connection: Connection): void {
  closeState(connection);
  next();
}
