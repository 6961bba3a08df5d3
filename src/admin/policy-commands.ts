/**
 * `cstp policy explain`: the plan the gateway would apply to a message from A to B, C, in words,
 * computed by the same planMessage the gateway runs, on the certificates and keys in the store.
 */
import { existsSync } from 'node:fs';
import { isIP } from 'node:net';
import { explainPlan } from '../policy/explain';
import { PolicyConfigError, resolvePolicyConfig, type PolicyConfig, type PolicySettings } from '../policy/config';
import { planMessage, type Direction } from '../policy/plan';
import { heldKeys, storeLookups } from '../policy/store-lookups';
import { KeyStore } from '../store/key-store';
import { EXIT, parse, passphrase, UsageError, type Command, type Values } from './cli-support';

// The store options and their defaults are those of the store commands (cstp cert, key, ...).
const DEFAULT_STORE = './var/store';
const DEFAULT_PASS_FILE = './var/store.passphrase';
const PASS_ENV = 'CSTP_STORE_PASSPHRASE';

const USAGE = `cstp policy explain --from A --to B[,C...] [--direction out|in] [--client IP] [--encrypted] [--signed] [--at TIME]
    [--mixed restrictive|liberal] [--without-certificate unaltered|detached-signature] [--require-encryption LIST]
    [--signing user-then-gateway|gateway|none] [--local-domains LIST] [--local-networks LIST] [--no-gcm] [--no-oaep]
  Prints the plan the gateway would apply to a message from A to B, C...: direction, the certificate found
  for each recipient (and why others were skipped), each delivery with its signing key, cipher, certificates
  and route, refusals with their DSN, deferrals. Direction: --direction, else --client against the local
  networks, else out. --encrypted/--signed describe the message; inbound --encrypted assumes its envelope
  names every key the store holds for the recipients. Settings default to the policy defaults; local domains
  default to those the store holds a gateway identity for. --at checks certificate validity at TIME (ISO 8601).
  Store: --store DIR (default $CSTP_STORE or ${DEFAULT_STORE}); passphrase from --store-pass-file F, else
  $${PASS_ENV}, else ${DEFAULT_PASS_FILE}.`;

const OPTIONS = {
  from: { type: 'string' }, to: { type: 'string', multiple: true }, direction: { type: 'string' }, client: { type: 'string' },
  encrypted: { type: 'boolean' }, signed: { type: 'boolean' }, at: { type: 'string' },
  mixed: { type: 'string' }, 'without-certificate': { type: 'string' }, 'require-encryption': { type: 'string' },
  signing: { type: 'string' }, 'local-domains': { type: 'string' }, 'local-networks': { type: 'string' },
  'no-gcm': { type: 'boolean' }, 'no-oaep': { type: 'boolean' },
  store: { type: 'string' }, 'store-pass-file': { type: 'string' },
} as const;

const list = (value: unknown): string[] | undefined =>
  typeof value === 'string' ? value.split(/[\s,]+/).filter(Boolean) : undefined;

function directionArg(value: unknown): Direction | undefined {
  if (value === undefined) return undefined;
  if (value === 'out' || value === 'outbound') return 'outbound';
  if (value === 'in' || value === 'inbound') return 'inbound';
  throw new UsageError(`--direction ${String(value)}: use out or in`);
}

function timeArg(value: unknown): Date {
  if (value === undefined) return new Date();
  const at = new Date(String(value));
  if (Number.isNaN(at.getTime())) throw new UsageError(`--at ${String(value)}: not an ISO 8601 time`);
  return at;
}

/** Only the settings given on the command line; the rest keep their defaults. */
function settingsArgs(v: Values, storeDomains: string[]): Partial<PolicySettings> {
  const given: Partial<PolicySettings> = {
    mixedRecipients: v.mixed as PolicySettings['mixedRecipients'] | undefined,
    withoutCertificate: v['without-certificate'] as PolicySettings['withoutCertificate'] | undefined,
    requireEncryption: list(v['require-encryption']),
    signing: v.signing as PolicySettings['signing'] | undefined,
    localDomains: list(v['local-domains']) ?? storeDomains,
    localNetworks: list(v['local-networks']),
    preferAuthenticatedEncryption: v['no-gcm'] ? false : undefined,
    preferOaep: v['no-oaep'] ? false : undefined,
  };
  return Object.fromEntries(Object.entries(given).filter(([, value]) => value !== undefined));
}

function storePassphrase(v: Values): string {
  const file = v['store-pass-file'] as string | undefined;
  if (file !== undefined) return passphrase({ 'pass-file': file }) ?? '';
  const env = process.env[PASS_ENV];
  if (env) return env;
  if (existsSync(DEFAULT_PASS_FILE)) return passphrase({ 'pass-file': DEFAULT_PASS_FILE }) ?? '';
  throw new Error(`no store passphrase: give --store-pass-file, set ${PASS_ENV}, or create ${DEFAULT_PASS_FILE} (cstp init does)`);
}

function openStore(v: Values): KeyStore {
  const path = (v.store as string | undefined) ?? process.env.CSTP_STORE ?? DEFAULT_STORE;
  return KeyStore.open({ path, passphrase: storePassphrase(v), readOnly: true });
}

/** A wrong setting on the command line is a usage error. */
function configArgs(v: Values, store: KeyStore): PolicyConfig {
  try {
    return resolvePolicyConfig(settingsArgs(v, store.gatewayDomains()));
  } catch (e) {
    if (e instanceof PolicyConfigError) throw new UsageError(e.message);
    throw e;
  }
}

async function explain(args: string[]): Promise<number> {
  const v = parse(args, OPTIONS);
  if (typeof v.from !== 'string') throw new UsageError('explain needs --from A (use --from "" for the null sender)');
  const recipients = ((v.to as string[] | undefined) ?? []).flatMap((t) => list(t) ?? []);
  if (recipients.length === 0) throw new UsageError('explain needs --to B[,C...]');
  const client = v.client as string | undefined;
  if (client !== undefined && isIP(client) === 0) throw new UsageError(`--client ${client}: not an IP address`);
  const direction = directionArg(v.direction) ?? (client === undefined ? 'outbound' : undefined);
  const now = timeArg(v.at);
  const store = openStore(v);
  try {
    const config = configArgs(v, store);
    const message = { encrypted: v.encrypted === true, signed: v.signed === true };
    const plan = planMessage({
      clientIp: client ?? '', direction, sender: v.from, recipients, message, now,
      decryptionKeys: message.encrypted ? heldKeys(store, recipients) : [], // as if the envelope named them all
    }, config, storeLookups(store));
    process.stdout.write(explainPlan(plan));
    return EXIT.ok;
  } finally {
    await store.close();
  }
}

export const policyCommands: Record<string, Command> = {
  explain: { usage: USAGE, run: explain },
};
