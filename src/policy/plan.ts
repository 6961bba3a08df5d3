/**
 * The securing logic of the CSTP paper (section 4.4) as a pure function: from the facts of one
 * SMTP transaction, what the store knows and the configuration, the plan of what to deliver to
 * whom and how. No I/O and no clock: the store is read through PolicyLookups and time is `now`.
 */
import type { Certificate } from '../pki/certificate';
import { normaliseAddress } from '../pki/certificate';
import { checkEndEntity } from '../pki/path';
import type { EnvelopeOptions } from '../smime/cms/enveloped-data';
import { addressMatches, domainOf, inDomains } from './addresses';
import { parseCapabilities, type PeerCapabilities } from './capabilities';
import type { PolicyConfig } from './config';

export type Direction = 'outbound' | 'inbound';

/**
 * What the store knows, read synchronously. Only certificates the administrator imported or
 * trusted are returned: the policy checks their usability (validity, key usage, address), not
 * their chain.
 */
export interface PolicyLookups {
  /** The recipient's own certificates and those of the gateway serving the recipient's domain. */
  recipientCertificates(address: string): { user: readonly Certificate[]; gateway: readonly Certificate[] };
  /** Certificate of the user's private key, when the gateway holds it. */
  userSigningCertificate(address: string): Certificate | undefined;
  /** Certificate of this gateway's key for a domain it serves. */
  gatewaySigningCertificate(domain: string): Certificate | undefined;
  /** DER SMIMECapabilities learned from a verified signature by this address. */
  capabilities(address: string): Buffer | undefined;
  /** The store marks this certificate as a cstp gateway's. */
  isCstpPeer?(cert: Certificate): boolean;
}

/** What the message already is, as the caller found at its top level. */
export interface MessageFacts {
  encrypted: boolean;
  signed: boolean;
}

/** A private key the gateway holds whose certificate one of the message's RecipientInfos names. */
export interface HeldKey {
  holder: 'gateway' | 'user';
  /** Domains a gateway key serves, or the address of a user key. */
  covers: readonly string[];
  cert: Certificate;
}

export interface PolicyInput {
  clientIp: string;
  /** Overrides the direction the client address gives (admin tools, tests). */
  direction?: Direction;
  /** Envelope sender; '' for the null sender of bounces. */
  sender: string;
  recipients: readonly string[];
  message: MessageFacts;
  /** Inbound: the held keys that can open the message's envelope. */
  decryptionKeys?: readonly HeldKey[];
  now: Date;
}

export interface SigningIdentity {
  kind: 'user' | 'gateway';
  /** The user's address or the gateway's domain. */
  owner: string;
  cert: Certificate;
}

export interface EnvelopeChoice {
  /** Each certificate once, in the order of the recipients they were chosen for. */
  certificates: Certificate[];
  options: Required<Pick<EnvelopeOptions, 'cipher' | 'rsaKeyTransport'>>;
  /** Why these algorithms. */
  reason: string;
}

export type Transformation =
  /** Sign (when signer is set) then encrypt, one envelope for all recipients of the delivery. */
  | { kind: 'encrypt'; signer?: SigningIdentity; envelope: EnvelopeChoice }
  | { kind: 'detached-signature'; signer: SigningIdentity }
  | { kind: 'unaltered'; reason: string }
  /** Inbound: decrypt with these keys (if any), verify every signature layer, add result headers. */
  | { kind: 'unwrap'; keys: HeldKey[] };

/** 'second-connection': the delivery layer turns a refused second connection into the relay. */
export type Route = 'original' | 'second-connection';

export interface Delivery {
  recipients: string[];
  transformation: Transformation;
  route: Route;
  /** Remove incoming headers that claim a cstp/S-MIME verification result before delivery. */
  stripStatusHeaders: boolean;
}

export interface SmtpReply {
  code: number;
  enhanced: string;
  text: string;
}

export interface Refusal {
  recipient: string;
  reason: string;
  reply: SmtpReply;
  /** Text for the delivery status notification to the sender. */
  dsn: string;
  /** False for the null sender: a bounce is never answered with a bounce (RFC 5321 6.1). */
  notifySender: boolean;
}

/** Nothing may be delivered: answer the transaction with this temporary failure. */
export interface TemporaryFailure {
  recipients: string[];
  reason: string;
  reply: SmtpReply;
}

export interface CertificateChoice {
  via: 'user' | 'gateway';
  cert: Certificate;
}

/** Outbound: what the store offered for one recipient and what became of it. */
export interface RecipientFinding {
  address: string;
  local: boolean;
  requireEncryption: boolean;
  chosen?: CertificateChoice;
  skipped: Array<CertificateChoice & { reason: string }>;
}

export interface Plan {
  direction: Direction;
  directionReason: string;
  sender: string;
  deliveries: Delivery[];
  refused: Refusal[];
  temporaryFailure?: TemporaryFailure;
  findings: RecipientFinding[];
  notes: string[];
}

/** The plan for one transaction. Deterministic: the same input gives the same plan. */
export function planMessage(input: PolicyInput, config: PolicyConfig, lookups: PolicyLookups): Plan {
  const { direction, reason } = decideDirection(input, config);
  const base = { direction, directionReason: reason, sender: input.sender };
  return direction === 'outbound' ? { ...base, ...planOutbound(input, config, lookups) } : { ...base, ...planInbound(input) };
}

function decideDirection(input: PolicyInput, config: PolicyConfig): { direction: Direction; reason: string } {
  if (input.direction) return { direction: input.direction, reason: 'direction given' };
  const block = config.networks.blockOf(input.clientIp);
  return block !== undefined
    ? { direction: 'outbound', reason: `client ${input.clientIp} is in local network ${block}` }
    : { direction: 'inbound', reason: `client ${input.clientIp} is not in the local networks` };
}

type Outcome = Omit<Plan, 'direction' | 'directionReason' | 'sender'>;

/** A recipient given twice (RCPT repeated, or differing only in the domain's case) is delivered to once. */
function uniqueRecipients(recipients: readonly string[]): string[] {
  const seen = new Set<string>();
  return recipients.filter((r) => {
    const key = normaliseAddress(r);
    return !seen.has(key) && seen.add(key);
  });
}

/** Routes in order: the first delivery keeps the client's connection, the others need another. */
function routed(deliveries: Omit<Delivery, 'route'>[]): Delivery[] {
  return deliveries.map((d, i) => ({ ...d, route: i === 0 ? 'original' : 'second-connection' }));
}

// ---------------------------------------------------------------------------
// Outbound

function planOutbound(input: PolicyInput, config: PolicyConfig, lookups: PolicyLookups): Outcome {
  const recipients = uniqueRecipients(input.recipients);
  if (input.message.encrypted) {
    // Already confidential end to end; a second envelope adds nothing and nested envelopes confuse clients.
    const unaltered: Transformation = { kind: 'unaltered', reason: 'already S/MIME encrypted by the sender' };
    return {
      deliveries: routed([{ recipients, transformation: unaltered, stripStatusHeaders: false }]),
      refused: [], findings: [], notes: ['the message is already S/MIME encrypted: passed unaltered, not re-encrypted'],
    };
  }
  const findings = recipients.map((r) => findRecipient(r, input.now, config, lookups));
  const notes: string[] = [];
  const deferred = findings.filter((f) => f.requireEncryption && !f.chosen).map((f) => f.address);
  if (deferred.length > 0) return { deliveries: [], refused: [], temporaryFailure: deferral(deferred), findings, notes };

  const signer = chooseSigner(input, config, lookups, notes);
  const secured = findings.filter((f) => f.chosen);
  const plain = findings.filter((f) => !f.chosen);
  const refuse = config.mixedRecipients === 'restrictive' && secured.length > 0;
  const refusedFindings = refuse ? plain.filter((f) => !f.local) : [];
  const delivered = plain.filter((f) => !refusedFindings.includes(f));

  const deliveries: Omit<Delivery, 'route'>[] = [];
  if (secured.length > 0) {
    const envelope = chooseEnvelope(secured, config, lookups);
    deliveries.push({ recipients: secured.map((f) => f.address), transformation: { kind: 'encrypt', signer, envelope }, stripStatusHeaders: false });
  }
  if (delivered.length > 0) {
    deliveries.push({ recipients: delivered.map((f) => f.address), transformation: plainTransformation(delivered, signer, config), stripStatusHeaders: false });
  }
  return { deliveries: routed(deliveries), refused: refusedFindings.map((f) => refusal(f.address, input.sender)), findings, notes };
}

function findRecipient(address: string, now: Date, config: PolicyConfig, lookups: PolicyLookups): RecipientFinding {
  const local = inDomains(address, config.localDomains);
  // Mail to a local domain never leaves, so it needs no encryption.
  const requireEncryption = !local && config.requireEncryption.some((p) => addressMatches(address, p));
  if (local) return { address, local, requireEncryption, skipped: [] };
  const offered = lookups.recipientCertificates(address);
  const skipped: RecipientFinding['skipped'] = [];
  // The user's own certificate wins: then only the user, not the domain gateway, can read it.
  const chosen =
    pickUsable('user', offered.user, { purpose: 'encrypt', at: now, addresses: [address] }, skipped) ??
    pickUsable('gateway', offered.gateway, { purpose: 'encrypt', at: now }, skipped);
  return { address, local, requireEncryption, chosen, skipped };
}

/**
 * The newest usable certificate (latest notBefore, then latest notAfter, then fingerprint, so
 * the choice never depends on store order); the unusable ones are recorded with their reason.
 */
function pickUsable(
  via: CertificateChoice['via'], certs: readonly Certificate[], check: Parameters<typeof checkEndEntity>[1],
  skipped: RecipientFinding['skipped'],
): CertificateChoice | undefined {
  const usable: Certificate[] = [];
  for (const cert of certs) {
    const result = checkEndEntity(cert, check);
    if (result.ok) usable.push(cert);
    else skipped.push({ via, cert, reason: result.reason });
  }
  const [best] = usable.sort(newestFirst);
  return best ? { via, cert: best } : undefined;
}

function newestFirst(a: Certificate, b: Certificate): number {
  return (
    b.notBefore.getTime() - a.notBefore.getTime() ||
    b.notAfter.getTime() - a.notAfter.getTime() ||
    (a.fingerprint < b.fingerprint ? -1 : a.fingerprint > b.fingerprint ? 1 : 0)
  );
}

function chooseSigner(input: PolicyInput, config: PolicyConfig, lookups: PolicyLookups, notes: string[]): SigningIdentity | undefined {
  if (config.signing === 'none') return undefined;
  if (input.sender === '') {
    notes.push('null sender: not signed');
    return undefined;
  }
  const sender = normaliseAddress(input.sender);
  if (config.signing === 'user-then-gateway') {
    const cert = lookups.userSigningCertificate(sender);
    const check = cert && checkEndEntity(cert, { purpose: 'sign', at: input.now, addresses: [sender] });
    if (cert && check?.ok) return { kind: 'user', owner: sender, cert };
    if (check && !check.ok) notes.push(`the key of ${sender} is not used to sign: ${check.reason}`);
  }
  const domain = domainOf(sender);
  const cert = lookups.gatewaySigningCertificate(domain);
  if (!cert) {
    notes.push(`no signing key for ${sender} nor for the domain ${domain}: not signed`);
    return undefined;
  }
  // No address check: a gateway signs for its whole domain (RFC 3183).
  const check = checkEndEntity(cert, { purpose: 'sign', at: input.now });
  if (check.ok) return { kind: 'gateway', owner: domain, cert };
  notes.push(`the gateway key of ${domain} is not used to sign: ${check.reason}`);
  return undefined;
}

function plainTransformation(delivered: RecipientFinding[], signer: SigningIdentity | undefined, config: PolicyConfig): Transformation {
  if (delivered.every((f) => f.local)) return { kind: 'unaltered', reason: 'local recipients: the message stays inside' };
  if (config.withoutCertificate === 'unaltered') return { kind: 'unaltered', reason: 'no usable certificate' };
  if (!signer) return { kind: 'unaltered', reason: 'no usable certificate, and no key to sign with' };
  return { kind: 'detached-signature', signer };
}

function deferral(recipients: string[]): TemporaryFailure {
  const list = recipients.join(', ');
  const reason = `encryption is required for ${list} but no usable certificate is known`;
  return { recipients, reason, reply: { code: 451, enhanced: '4.7.5', text: `${reason}; nothing was sent, try again later` } };
}

function refusal(recipient: string, sender: string): Refusal {
  const reason = 'restrictive policy: no usable certificate, so the message could not be encrypted for this recipient';
  return {
    recipient,
    reason,
    reply: { code: 550, enhanced: '5.7.1', text: `${recipient}: ${reason}` },
    dsn:
      `Your message was not delivered to ${recipient}. The sending gateway's policy delivers mail encrypted only, ` +
      'and it holds no usable certificate for this recipient or the recipient\'s domain. The other recipients ' +
      'received it encrypted. Ask the recipient for an S/MIME certificate, or have the administrator import one.',
    notifySender: sender !== '',
  };
}

// ---------------------------------------------------------------------------
// Cipher choice

interface Holder {
  cert: Certificate;
  peer: boolean;
  caps?: PeerCapabilities;
}

/** One envelope for the whole set: the strongest algorithms every holder reads. */
function chooseEnvelope(secured: RecipientFinding[], config: PolicyConfig, lookups: PolicyLookups): EnvelopeChoice {
  const certificates = uniqueCertificates(secured.map((f) => f.chosen!.cert));
  const holders: Holder[] = certificates.map((cert) => ({
    cert, peer: lookups.isCstpPeer?.(cert) === true, caps: learnedCapabilities(cert, lookups),
  }));
  const gcm = config.preferAuthenticatedEncryption && holders.every((h) => h.peer || h.caps?.aes256Gcm === true);
  const rsaHolders = holders.filter((h) => h.cert.publicKey.asymmetricKeyType === 'rsa');
  const oaep = config.preferOaep && rsaHolders.length > 0 && rsaHolders.every((h) => h.peer || h.caps?.oaepSha256 === true);
  return {
    certificates,
    options: { cipher: gcm ? 'aes-256-gcm' : 'aes-256-cbc', rsaKeyTransport: oaep ? 'rsa-oaep' : 'rsa-pkcs1' },
    reason: envelopeReason(holders, gcm, config),
  };
}

function uniqueCertificates(certs: Certificate[]): Certificate[] {
  const seen = new Set<string>();
  return certs.filter((c) => !seen.has(c.fingerprint) && seen.add(c.fingerprint));
}

/** Capabilities learned for any address the certificate names, the first found in its order. */
function learnedCapabilities(cert: Certificate, lookups: PolicyLookups): PeerCapabilities | undefined {
  for (const address of cert.emailAddresses) {
    const der = lookups.capabilities(normaliseAddress(address));
    if (der) return parseCapabilities(der);
  }
  return undefined;
}

function envelopeReason(holders: Holder[], gcm: boolean, config: PolicyConfig): string {
  if (!config.preferAuthenticatedEncryption) return 'AES-GCM disabled by configuration';
  if (gcm) return 'every recipient is a cstp peer or advertises AES-256-GCM';
  const weakest = holders.find((h) => !h.peer && h.caps?.aes256Gcm !== true)!;
  return `${label(weakest.cert)} is not known to read AES-GCM`;
}

function label(cert: Certificate): string {
  return cert.emailAddresses[0] ?? cert.subject;
}

// ---------------------------------------------------------------------------
// Inbound

function planInbound(input: PolicyInput): Outcome {
  const recipients = uniqueRecipients(input.recipients);
  const whole = (transformation: Transformation): Outcome => ({
    deliveries: routed([{ recipients, transformation, stripStatusHeaders: true }]), refused: [], findings: [], notes: [],
  });
  const keysFor = (r: string): HeldKey[] => (input.decryptionKeys ?? []).filter((k) => keyCovers(k, r));
  if (!input.message.encrypted) {
    if (!input.message.signed) return whole({ kind: 'unaltered', reason: 'not S/MIME' });
    // Signed on the outside (encrypt-then-sign): an encrypted layer inside may be for a key held here. Offered
    // are only keys that cover every recipient, so no recipient reads what only another's key would open.
    const keys = uniqueKeys(recipients.flatMap(keysFor)).filter((k) => recipients.every((r) => keyCovers(k, r)));
    return whole({ kind: 'unwrap', keys });
  }
  const openable = recipients.filter((r) => keysFor(r).length > 0);
  const closed = recipients.filter((r) => keysFor(r).length === 0);
  const deliveries: Omit<Delivery, 'route'>[] = [];
  if (openable.length > 0) {
    const keys = uniqueKeys(openable.flatMap(keysFor));
    deliveries.push({ recipients: openable, transformation: { kind: 'unwrap', keys }, stripStatusHeaders: true });
  }
  if (closed.length > 0) {
    // Their own mail client decrypts it, as for Julia in the paper's second example.
    const reason = 'encrypted for a key this gateway does not hold: passed on for the recipient to decrypt';
    deliveries.push({ recipients: closed, transformation: { kind: 'unaltered', reason }, stripStatusHeaders: true });
  }
  return { deliveries: routed(deliveries), refused: [], findings: [], notes: [] };
}

/** A user key opens mail for its user only; a gateway key for the domains it serves. */
function keyCovers(key: HeldKey, recipient: string): boolean {
  return key.holder === 'user'
    ? key.covers.some((a) => normaliseAddress(a) === normaliseAddress(recipient))
    : inDomains(recipient, key.covers);
}

function uniqueKeys(keys: HeldKey[]): HeldKey[] {
  const seen = new Set<string>();
  return keys.filter((k) => !seen.has(k.cert.fingerprint) && seen.add(k.cert.fingerprint));
}
