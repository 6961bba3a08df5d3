/**
 * The securing step of one transaction: what the message is, the plan for it, and each planned delivery's bytes,
 * made with the S/MIME engine and the keys of the store. No SMTP here: the Haraka plugin hands the result to
 * src/delivery. Inbound, every signature layer feeds the store: good signatures without a trusted chain are
 * harvested into the untrusted store, the capabilities of verified ones are remembered.
 */
import type { Certificate } from '../pki/certificate';
import type { Credentials } from '../pki/keys';
import { isDomainSigner } from '../policy/domain-signing';
import {
  planMessage, type Delivery, type HeldKey, type MessageFacts, type Plan, type PolicyInput, type Transformation,
} from '../policy/plan';
import type { PolicyConfig } from '../policy/config';
import { heldKeys, storeLookups } from '../policy/store-lookups';
import {
  addressedTo, encryptMessage, signAndEncryptMessage, signMessage, STATUS_HEADER, stripStatusHeaders, topLevel, unwrapMessage,
  type LayerResult,
} from '../smime/message';
import type { SpooledMessage } from '../smime/stream/spool';
import {
  digestEntity, digestFor, encryptSpooled, signAndEncryptSpooled, signSpooled, spooledEntity, unalteredSpooled, type StreamedMessage,
} from '../smime/stream/wrap';
import type { KeyStore } from '../store/key-store';

/** What the top level of the message is (only a whole-body S/MIME object counts, as in the engine). */
export function messageFacts(message: Buffer): MessageFacts {
  const kind = topLevel(message);
  // Claims to be S/MIME but is not readable: unwrapping reports it (inbound) instead of passing it as plain.
  return { encrypted: kind === 'encrypted', signed: kind === 'signed' || kind === 'unreadable' };
}

export interface SecuredDelivery {
  plan: Delivery;
  /** The bytes to deliver (canonical CRLF, not dot-stuffed). */
  message: Buffer;
  /** For the decision line: sign+encrypt, encrypt, detached-signature, unaltered, decrypt, verify. */
  action: string;
  algorithm?: string;
  certificates: string[];
  /** Inbound: the layers unwrapped. */
  layers?: LayerResult[];
}

export interface Secured {
  plan: Plan;
  deliveries: SecuredDelivery[];
}

export interface SecureInput {
  clientIp: string;
  direction?: PolicyInput['direction'];
  sender: string;
  recipients: readonly string[];
  message: Buffer;
  now?: Date;
}

/** Plans the transaction and makes every delivery's bytes. Throws when the engine fails (nothing may go out). */
export function secureMessage(input: SecureInput, config: PolicyConfig, store: KeyStore): Secured {
  const lookups = storeLookups(store);
  const facts = messageFacts(input.message);
  const now = input.now ?? new Date();
  const plan = planMessage({
    clientIp: input.clientIp,
    direction: input.direction,
    sender: input.sender,
    recipients: input.recipients,
    message: facts,
    decryptionKeys: decryptionKeysFor(input.message, facts, store, input.recipients),
    now,
  }, config, lookups);
  const deliveries = plan.deliveries.map((d) => transform(d, input, store, now));
  return { plan, deliveries };
}

/**
 * Encrypted on the outside: only keys its envelope names (a message for Julia's own key passes intel's gateway
 * untouched). Signed on the outside: the held keys of the recipients, for an encrypted layer inside.
 */
function decryptionKeysFor(message: Buffer, facts: MessageFacts, store: KeyStore, recipients: readonly string[]): HeldKey[] {
  if (facts.encrypted) return keysAddressed(message, heldKeys(store, recipients));
  return facts.signed ? heldKeys(store, recipients) : [];
}

function keysAddressed(message: Buffer, held: HeldKey[]): HeldKey[] {
  const named = new Set(addressedTo(message, held.map((k) => k.cert)).map((c) => c.fingerprint));
  return held.filter((k) => named.has(k.cert.fingerprint));
}

function credentials(store: KeyStore, signer: { kind: 'user' | 'gateway'; owner: string }): Credentials {
  const creds = signer.kind === 'user' ? store.userKey(signer.owner) : store.gatewayIdentity(signer.owner);
  if (!creds) throw new Error(`the signing key of ${signer.owner} is no longer in the store`);
  return creds;
}

function transform(d: Delivery, input: SecureInput, store: KeyStore, now: Date): SecuredDelivery {
  const t: Transformation = d.transformation;
  if (t.kind === 'unwrap') return unwrap(d, t.keys.map((k) => k.cert), input, store, now);
  const joined = (out: Iterable<Buffer>): Buffer => Buffer.concat([...out]);
  return secureOutbound(d, t, store, {
    signAndEncrypt: (creds, certs, options) =>
      joined(signAndEncryptMessage(input.message, { key: creds.key, cert: creds.cert, chain: creds.chain }, certs, options)),
    encrypt: (certs, options) => joined(encryptMessage(input.message, certs, options)),
    sign: (creds) => joined(signMessage(input.message, { key: creds.key, cert: creds.cert, chain: creds.chain })),
    unaltered: () => (d.stripStatusHeaders ? stripStatusHeaders(input.message) : input.message),
  });
}

type OutboundTransformation = Exclude<Transformation, { kind: 'unwrap' }>;
type EncryptOptions = Extract<Transformation, { kind: 'encrypt' }>['envelope']['options'];

/** How an outbound transformation makes its bytes: in memory (a Buffer) or from the spool (a stream source). */
interface Producers<M> {
  signAndEncrypt(creds: Credentials, certs: Certificate[], options: EncryptOptions): M;
  encrypt(certs: Certificate[], options: EncryptOptions): M;
  sign(creds: Credentials): M;
  unaltered(): M;
}

/** An outbound delivery: its bytes from `make`, and the decision line's facts (action, algorithm, certificates). */
function secureOutbound<M>(
  d: Delivery, t: OutboundTransformation, store: KeyStore, make: Producers<M>,
): { plan: Delivery; message: M; action: string; algorithm?: string; certificates: string[] } {
  switch (t.kind) {
    case 'encrypt': {
      const { certificates: certs, options } = t.envelope;
      const algorithm = `${options.cipher}/${options.rsaKeyTransport}`;
      const fingerprints = certs.map((c) => c.fingerprint);
      if (!t.signer) return { plan: d, message: make.encrypt(certs, options), action: 'encrypt', algorithm, certificates: fingerprints };
      const creds = credentials(store, t.signer);
      return { plan: d, message: make.signAndEncrypt(creds, certs, options), action: 'sign+encrypt', algorithm, certificates: [...fingerprints, creds.cert.fingerprint] };
    }
    case 'detached-signature': {
      const creds = credentials(store, t.signer);
      return { plan: d, message: make.sign(creds), action: 'detached-signature', algorithm: 'sha-256', certificates: [creds.cert.fingerprint] };
    }
    case 'unaltered':
      return { plan: d, message: make.unaltered(), action: 'unaltered', certificates: [] };
  }
}

/** Trusted for verification: the anchors, and every certificate an administrator put in a role. */
function trustedCertificates(store: KeyStore): Certificate[] {
  return store.certificates().map((s) => s.cert);
}

function unwrap(d: Delivery, certs: Certificate[], input: SecureInput, store: KeyStore, now: Date): SecuredDelivery {
  const wanted = new Set(certs.map((c) => c.fingerprint));
  const keys = store.decryptionKeys().filter((k) => wanted.has(k.cert.fingerprint));
  const lookups = storeLookups(store);
  let result: ReturnType<typeof unwrapMessage>;
  try {
    result = unwrapMessage(input.message, {
      keys,
      trust: {
        anchors: trustedCertificates(store),
        at: now,
        isDomainSigner: (signer, senders) => senders.some((s) => isDomainSigner(signer, s, lookups)),
      },
    });
  } catch (err) {
    // Malformed or unsupported S/MIME (the sender's problem, not a temporary one): the recipient gets it as it
    // came, with incoming status headers removed and cstp's own saying that nothing was verified.
    const reason = (err as Error).message.replace(/[\r\n"\\]+/g, ' ').slice(0, 200);
    const status = Buffer.from(`${STATUS_HEADER}: layer=1; type=smime; status=failed; reason="${reason}"\r\n`);
    return { plan: d, message: Buffer.concat([status, stripStatusHeaders(input.message)]), action: 'unwrap-failed', certificates: [] };
  }
  learn(result.layers, input, store, now);
  const decrypted = result.layers.find((l) => l.type === 'encrypted' && l.status === 'decrypted');
  const algorithm = decrypted && decrypted.type === 'encrypted' && decrypted.status === 'decrypted'
    ? `${decrypted.envelope.cipher}/${decrypted.envelope.keyEncryption}` : undefined;
  const action = result.layers.map((l) => (l.type === 'signed' ? `verify:${l.report.verdict}` : `decrypt:${l.status}`)).join('+') || 'unaltered';
  const signers = result.layers.flatMap((l) => (l.type === 'signed' ? l.report.signers.map((s) => s.signer?.fingerprint) : []));
  return {
    plan: d, message: result.message, action, algorithm, layers: result.layers,
    certificates: [...keys.map((k) => k.cert.fingerprint), ...signers.filter((f): f is string => f !== undefined)],
  };
}

/** Harvest good-untrusted signers; remember the capabilities of verified (good-trusted) ones. */
function learn(layers: LayerResult[], input: SecureInput, store: KeyStore, now: Date): void {
  for (const layer of layers) {
    if (layer.type !== 'signed') continue;
    for (const s of layer.report.signers) {
      if (!s.signer) continue;
      if (s.verdict === 'good-untrusted') store.harvest(s.signer, input.sender || input.clientIp, now);
      if (s.verdict === 'good-trusted' && s.capabilities) {
        for (const address of s.signer.emailAddresses) store.setCapabilities(address, s.capabilities, now);
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Large messages: spooled on disk and streamed

/** One delivery of a spooled message: its bytes are produced anew, from disk, for each attempt. */
export interface StreamedDelivery {
  plan: Delivery;
  message: StreamedMessage;
  action: string;
  algorithm?: string;
  certificates: string[];
}

export interface SecuredSpooled {
  plan: Plan;
  deliveries: StreamedDelivery[];
}

export interface SecureSpooledInput extends Omit<SecureInput, 'message'> {
  spool: SpooledMessage;
}

/**
 * As secureMessage() for a message kept on disk, never read whole into memory. Undefined when the message
 * cannot be handled this way (its top level is S/MIME already, its header section is unusual, or it must be
 * made 7-bit safe before signing): the caller then reads it and uses secureMessage().
 */
export async function secureSpooled(input: SecureSpooledInput, config: PolicyConfig, store: KeyStore): Promise<SecuredSpooled | undefined> {
  const entity = spooledEntity(input.spool);
  if (!entity) return undefined;
  const now = input.now ?? new Date();
  const plan = planMessage({
    clientIp: input.clientIp,
    direction: input.direction,
    sender: input.sender,
    recipients: input.recipients,
    message: { encrypted: false, signed: false },
    decryptionKeys: [],
    now,
  }, config, storeLookups(store));
  const signers = plan.deliveries.flatMap((d) => {
    const t = d.transformation;
    return (t.kind === 'encrypt' && t.signer) || t.kind === 'detached-signature' ? [credentials(store, t.signer!)] : [];
  });
  if (plan.deliveries.some((d) => d.transformation.kind === 'unwrap')) return undefined;
  const digests = signers.length ? await digestEntity(entity, signers.map((s) => digestFor(s))) : undefined;
  if (digests && !digests.sevenBit) return undefined;
  const deliveries = plan.deliveries.map((d): StreamedDelivery => {
    const t = d.transformation;
    if (t.kind === 'unwrap') throw new Error('unreachable: a plain message is not unwrapped');
    return secureOutbound(d, t, store, {
      signAndEncrypt: (creds, certs, options) => signAndEncryptSpooled(entity, digests!, creds, certs, options),
      encrypt: (certs, options) => encryptSpooled(entity, certs, options),
      sign: (creds) => signSpooled(entity, digests!, creds),
      unaltered: () => unalteredSpooled(entity),
    });
  });
  return { plan, deliveries };
}
