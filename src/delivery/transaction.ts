/**
 * The upstream side of one client transaction in the gateway's synchronous model: the connection
 * to the original destination opens at the client's MAIL, each RCPT is passed through and its
 * reply returned, and at the end of DATA the plan's deliveries go out concurrently: the first on
 * that connection, every further one on a connection of its own to the same destination or, when
 * the destination refuses one more connection, via the configured relay (remembered per
 * destination). Nothing is queued here: failed parts are returned for the caller to queue.
 */
import { isPermanent, isPositive, isTransient, type SmtpReply } from './reply';
import type { ExtraRoute, RouteMemory } from './route-memory';
import type { QueueEntry, QueueItem, RetryQueue } from './retry-queue';
import {
  SmtpClient,
  type MailParams,
  type MessageSource,
  type RcptParams,
  type Timeouts,
  type TlsOptions,
  type TlsState,
} from './smtp-client';

export interface Endpoint {
  host: string;
  port: number;
  localAddress?: string;
  /** A foreign source address to keep (the diverted client's), see SmtpClientOptions.source. */
  source?: string;
}

export interface UpstreamOptions {
  destination: Endpoint;
  /** Next hop for an extra delivery the destination will not take over another connection. */
  relay?: Endpoint;
  routes: RouteMemory;
  heloName: string;
  /** TLS toward the destination and toward the relay. */
  tls?: TlsOptions;
  relayTls?: TlsOptions;
  timeouts?: Partial<Timeouts>;
}

/** One delivery of the plan: who gets it and the bytes (canonical CRLF, not dot-stuffed). */
export interface Delivery {
  recipients: string[];
  /** Called once per attempt: a relay fallback reads the message again. */
  message: () => MessageSource;
  /** Overrides of the client's MAIL parameters for this copy (e.g. SIZE and BODY after encryption). */
  mailParams?: MailParams;
}

export type Route = 'primary' | ExtraRoute;
type Stage = 'connect' | 'mail' | 'rcpt' | 'data';

export interface RecipientResult {
  address: string;
  accepted: boolean;
  /** The RCPT reply when refused, else the reply to the end of data. */
  reply: SmtpReply;
}

export interface Attempt {
  route: Route;
  stage: Stage;
  reply: SmtpReply;
  tls?: TlsState;
}

export interface DeliveryResult {
  route: Route;
  accepted: boolean;
  /** The end-of-data reply, or the reply that stopped this delivery earlier. */
  reply: SmtpReply;
  recipients: RecipientResult[];
  /** Every try, in order (a refused second connection, then the relay). */
  attempts: Attempt[];
}

export interface FailedRecipient {
  /** Index of the delivery in the plan, i.e. which message copy the recipient needs. */
  delivery: number;
  recipient: string;
  reply: SmtpReply;
  permanent: boolean;
}

export interface Outcome {
  /** accepted: every recipient of every delivery; partial: some accepted, `failed` lists the rest; failed: none. */
  status: 'accepted' | 'partial' | 'failed';
  /** What the gateway's client should get for its DATA. */
  reply: SmtpReply;
  deliveries: DeliveryResult[];
  failed: FailedRecipient[];
}

interface Envelope {
  from: string;
  params: MailParams;
  recipients: { address: string; params: RcptParams }[];
}

interface TransactionResult {
  stage: Stage;
  reply: SmtpReply;
  recipients: RecipientResult[];
}

/** A transaction that ended before any recipient was accepted: the reply goes to every recipient. */
function stoppedAt(stage: Stage, reply: SmtpReply, env: Envelope): TransactionResult {
  return { stage, reply, recipients: env.recipients.map((r) => ({ address: r.address, accepted: false, reply })) };
}

/** MAIL, every RCPT, DATA on a ready session; stops at the first step that leaves nothing to do. */
async function transact(client: SmtpClient, env: Envelope, message: () => MessageSource): Promise<TransactionResult> {
  const mail = await client.mail(env.from, env.params);
  if (!isPositive(mail)) return stoppedAt('mail', mail, env);
  const rcpts: { address: string; reply: SmtpReply }[] = [];
  for (const r of env.recipients) rcpts.push({ address: r.address, reply: await client.rcpt(r.address, r.params) });
  const firstRefusal = rcpts.find((r) => !isPositive(r.reply));
  if (!rcpts.some((r) => isPositive(r.reply))) {
    return { stage: 'rcpt', reply: firstRefusal!.reply, recipients: rcpts.map((r) => ({ ...r, accepted: false })) };
  }
  const final = await client.data(message());
  const ok = isPositive(final);
  return {
    stage: 'data',
    reply: final,
    recipients: rcpts.map((r) =>
      isPositive(r.reply) ? { address: r.address, accepted: ok, reply: final } : { ...r, accepted: false },
    ),
  };
}

/**
 * The destination would not take this delivery over this route at all (no connection, 421,
 * 4xx at MAIL, timeout or a cut connection before the end of data): worth trying another route.
 */
function refused(result: TransactionResult): boolean {
  if (result.stage === 'connect') return true;
  if (result.stage === 'mail' && isTransient(result.reply)) return true;
  return result.reply.local === true && isTransient(result.reply);
}

const sameSet = (a: string[], b: string[]): boolean => a.length === b.length && a.every((x) => b.includes(x));

export class UpstreamTransaction {
  private primary?: SmtpClient;
  private envelope?: Envelope;
  private readonly extras = new Set<SmtpClient>();

  constructor(private readonly opts: UpstreamOptions) {}

  /** RouteMemory key of the destination. */
  get destinationKey(): string {
    return `${this.opts.destination.host}:${this.opts.destination.port}`;
  }

  /** TLS state of the primary connection, for logging. */
  get tls(): TlsState | undefined {
    return this.primary?.tls;
  }

  /** Open the primary connection and send MAIL; the reply is the destination's (or a local 421). */
  async mailFrom(from: string, params: MailParams = {}): Promise<SmtpReply> {
    this.primary?.close();
    const client = this.client('primary');
    this.primary = client;
    this.envelope = { from, params, recipients: [] };
    const ready = await client.open();
    if (!isPositive(ready)) return ready;
    return client.mail(from, params);
  }

  /** Pass one RCPT through; an accepted recipient becomes part of the primary transaction. */
  async rcptTo(to: string, params: RcptParams = {}): Promise<SmtpReply> {
    if (!this.primary || !this.envelope) throw new Error('rcptTo before mailFrom');
    const reply = await this.primary.rcpt(to, params);
    if (isPositive(reply)) this.envelope.recipients.push({ address: to, params });
    return reply;
  }

  /** Send the plan's deliveries concurrently and sum up what the client should be told. */
  async deliver(deliveries: Delivery[]): Promise<Outcome> {
    if (!this.primary || !this.envelope || deliveries.length === 0) throw new Error('deliver needs mailFrom and a delivery');
    const results = await Promise.all(
      deliveries.map((d, i) => (i === 0 ? this.deliverOnPrimary(d) : this.deliverExtra(d))),
    );
    void this.primary.quit();
    return summarise(results);
  }

  /**
   * Hand the failed part of a partial outcome to the retry queue: temporary failures are queued per
   * delivery (each needs its own message copy), permanent ones bounce to the sender at once.
   * The queued copy goes where the delivery went last (the relay when the destination refused).
   */
  async queueFailures(outcome: Outcome, deliveries: Delivery[], queue: RetryQueue): Promise<QueueItem[]> {
    // Only a partial outcome is ours to finish: otherwise the client got the failure and will
    // retry (or bounce) the whole message itself, and queueing as well would duplicate it.
    if (outcome.status !== 'partial') return [];
    const items: QueueItem[] = [];
    for (const [index, d] of deliveries.entries()) {
      const failed = outcome.failed.filter((f) => f.delivery === index);
      if (failed.length === 0) continue;
      const env = this.envelopeFor(d, { ...this.envelope!.params, ...d.mailParams });
      const message = await collect(d.message());
      const entry = (addresses: string[]): QueueEntry => ({
        from: env.from,
        mailParams: env.params,
        recipients: env.recipients.filter((r) => addresses.includes(r.address)),
        destination: outcome.deliveries[index].route === 'relay' ? this.opts.relay! : this.opts.destination,
      });
      const temporary = failed.filter((f) => !f.permanent);
      const permanent = failed.filter((f) => f.permanent);
      if (temporary.length) items.push(queue.enqueue(entry(temporary.map((f) => f.recipient)), message));
      if (permanent.length) {
        const failures = permanent.map((f) => ({ address: f.recipient, reply: f.reply }));
        queue.bounceNow(entry(permanent.map((f) => f.recipient)), message, failures);
      }
    }
    return items;
  }

  /** End without delivering: QUIT, so the destination forgets MAIL and RCPTs (nothing else is open before deliver). */
  quit(): void {
    void this.primary?.quit();
  }

  /** Drop every connection (client went away, transaction reset). */
  close(): void {
    this.primary?.close();
    for (const c of this.extras) c.close();
    this.extras.clear();
  }

  private async deliverOnPrimary(d: Delivery): Promise<DeliveryResult> {
    const env = this.envelope!;
    const params = { ...env.params, ...d.mailParams };
    let client = this.primary!;
    let result: TransactionResult;
    if (!client.usable) {
      // The destination dropped the connection while our client was still sending (its command
      // timeout, e.g. Postfix smtpd_timeout, runs during a long upload): once more, on a fresh one.
      client = this.client('primary');
      this.primary = client;
      const ready = await client.open();
      const fresh = this.envelopeFor(d, params);
      result = isPositive(ready) ? await transact(client, fresh, d.message) : stoppedAt('connect', ready, fresh);
    } else if (sameSet(d.recipients, env.recipients.map((r) => r.address)) && params.body === env.params.body) {
      // A different SIZE alone does not restart the envelope: the client's SIZE was an estimate
      // already (RFC 1870 lets a client declare an estimate) and the destination checks the real size.
      const final = await client.data(d.message());
      result = {
        stage: 'data',
        reply: final,
        recipients: d.recipients.map((address) => ({ address, accepted: isPositive(final), reply: final })),
      };
    } else {
      // The envelope passed through at RCPT time does not fit this copy: start it over.
      const reset = await client.rset();
      const fresh = this.envelopeFor(d, params);
      result = isPositive(reset) ? await transact(client, fresh, d.message) : stoppedAt('mail', reset, fresh);
    }
    return toResult('primary', [{ route: 'primary', stage: result.stage, reply: result.reply, tls: client.tls }], result);
  }

  private async deliverExtra(d: Delivery): Promise<DeliveryResult> {
    const params = { ...this.envelope!.params, ...d.mailParams };
    const env = this.envelopeFor(d, params);
    const attempts: Attempt[] = [];
    let last: TransactionResult | undefined;
    let route: ExtraRoute = 'second-connection';
    for (const candidate of this.extraRoutes()) {
      route = candidate;
      last = await this.attempt(candidate, env, d.message, attempts);
      if (!refused(last)) {
        this.opts.routes.set(this.destinationKey, candidate);
        break;
      }
    }
    return toResult(route, attempts, last!);
  }

  /** The remembered route first, then the other one (the relay only when configured). */
  private extraRoutes(): ExtraRoute[] {
    const order: ExtraRoute[] =
      this.opts.routes.get(this.destinationKey) === 'relay' ? ['relay', 'second-connection'] : ['second-connection', 'relay'];
    return order.filter((r) => r !== 'relay' || this.opts.relay !== undefined);
  }

  private async attempt(route: ExtraRoute, env: Envelope, message: () => MessageSource, attempts: Attempt[]): Promise<TransactionResult> {
    const client = this.client(route);
    this.extras.add(client);
    try {
      const ready = await client.open();
      const result = isPositive(ready) ? await transact(client, env, message) : stoppedAt('connect', ready, env);
      attempts.push({ route, stage: result.stage, reply: result.reply, tls: client.tls });
      return result;
    } finally {
      this.extras.delete(client);
      void client.quit();
    }
  }

  private envelopeFor(d: Delivery, params: MailParams): Envelope {
    const known = new Map(this.envelope!.recipients.map((r) => [r.address, r.params]));
    return {
      from: this.envelope!.from,
      params,
      recipients: d.recipients.map((address) => ({ address, params: known.get(address) ?? {} })),
    };
  }

  private client(route: Route): SmtpClient {
    const relay = route === 'relay';
    const endpoint = relay ? this.opts.relay! : this.opts.destination;
    return new SmtpClient({
      ...endpoint,
      label: relay ? `relay ${endpoint.host}:${endpoint.port}` : `${endpoint.host}:${endpoint.port}`,
      heloName: this.opts.heloName,
      tls: relay ? this.opts.relayTls ?? this.opts.tls : this.opts.tls,
      timeouts: this.opts.timeouts,
    });
  }
}

async function collect(source: MessageSource): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of source) chunks.push(chunk);
  return Buffer.concat(chunks);
}

function toResult(route: Route, attempts: Attempt[], result: TransactionResult): DeliveryResult {
  const accepted = result.stage === 'data' && isPositive(result.reply);
  return { route, accepted, reply: result.reply, recipients: result.recipients, attempts };
}

/**
 * The client's reply: 250 only when everything was accepted. When some part was accepted the
 * client must not resend (it would duplicate): it gets the accepted reply and the rest is
 * returned in `failed`. When nothing was, a temporary failure anywhere wins over a permanent one
 * so that a retry can still deliver the temporarily failed part; a 5xx passes through otherwise.
 */
function summarise(deliveries: DeliveryResult[]): Outcome {
  const failed: FailedRecipient[] = deliveries.flatMap((d, delivery) =>
    d.recipients
      .filter((r) => !r.accepted)
      .map((r) => ({ delivery, recipient: r.address, reply: r.reply, permanent: isPermanent(r.reply) })),
  );
  const accepted = deliveries.filter((d) => d.accepted);
  if (accepted.length === deliveries.length && failed.length === 0) {
    return { status: 'accepted', reply: deliveries[0].reply, deliveries, failed };
  }
  if (accepted.length > 0) return { status: 'partial', reply: accepted[0].reply, deliveries, failed };
  const failures = deliveries.map((d) => d.reply);
  const reply = failures.find(isTransient) ?? failures[0];
  return { status: 'failed', reply, deliveries, failed };
}
