/**
 * `cstp policy explain`: the plan the gateway would apply to a message from A to B, C, in words,
 * computed by the same planMessage the gateway runs, on the certificates and keys in the store.
 */
import { isIP } from 'node:net';
import { explainPlan } from '../policy/explain';
import { PolicyConfigError, resolvePolicyConfig, type PolicyConfig, type PolicySettings } from '../policy/config';
import { planMessage, type Direction } from '../policy/plan';
import { heldKeys, storeLookups } from '../policy/store-lookups';
import { loadCstpConfig } from '../config/cstp-config';
import { policySettings } from '../config/schema';
import { EXIT, parse, UsageError, type Command, type Values } from './cli-support';
import { STORE_HELP, STORE_OPTIONS, withStore } from './store-options';

const USAGE = `cstp policy explain --from A --to B[,C...] [--direction out|in] [--client IP] [--encrypted] [--signed] [--at TIME] [--instance DIR]
    [--mixed restrictive|liberal] [--without-certificate unaltered|detached-signature] [--require-encryption LIST]
    [--signing user-then-gateway|gateway|none] [--local-domains LIST] [--local-networks LIST] [--no-gcm] [--no-oaep]
  Prints the plan the gateway would apply to a message from A to B, C...: direction, the certificate found
  for each recipient (and why others were skipped), each delivery with its signing key, cipher, certificates
  and route, refusals with their DSN, deferrals. Direction: --direction, else --client against the local
  networks, else out. --encrypted/--signed describe the message; inbound --encrypted assumes its envelope
  names every key the store holds for the recipients. Settings come from config/cstp.ini of the Haraka
  instance --instance DIR (default: the current directory; no file means the defaults), each flag overriding
  its [policy] key. --at checks certificate validity at TIME (ISO 8601) instead of now.
${STORE_HELP}`;

const OPTIONS = {
  from: { type: 'string' }, to: { type: 'string', multiple: true }, direction: { type: 'string' }, client: { type: 'string' },
  encrypted: { type: 'boolean' }, signed: { type: 'boolean' }, at: { type: 'string' },
  mixed: { type: 'string' }, 'without-certificate': { type: 'string' }, 'require-encryption': { type: 'string' },
  signing: { type: 'string' }, 'local-domains': { type: 'string' }, 'local-networks': { type: 'string' },
  'no-gcm': { type: 'boolean' }, 'no-oaep': { type: 'boolean' }, instance: { type: 'string' }, ...STORE_OPTIONS,
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

/** The settings given on the command line, each replacing its [policy] key. */
function settingsArgs(v: Values): Partial<PolicySettings> {
  const given: Partial<PolicySettings> = {
    mixedRecipients: v.mixed as PolicySettings['mixedRecipients'] | undefined,
    withoutCertificate: v['without-certificate'] as PolicySettings['withoutCertificate'] | undefined,
    requireEncryption: list(v['require-encryption']),
    signing: v.signing as PolicySettings['signing'] | undefined,
    localDomains: list(v['local-domains']),
    localNetworks: list(v['local-networks']),
    preferAuthenticatedEncryption: v['no-gcm'] ? false : undefined,
    preferOaep: v['no-oaep'] ? false : undefined,
  };
  return Object.fromEntries(Object.entries(given).filter(([, value]) => value !== undefined));
}

/** The instance's [policy] settings with the flags applied; a wrong flag is a usage error. */
function configArgs(v: Values): PolicyConfig {
  const fromIni = policySettings(loadCstpConfig((v.instance as string | undefined) ?? '.'));
  try {
    return resolvePolicyConfig({ ...fromIni, ...settingsArgs(v) });
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
  const config = configArgs(v);
  return withStore(v, 'read', (store) => {
    const message = { encrypted: v.encrypted === true, signed: v.signed === true };
    const plan = planMessage({
      clientIp: client ?? '', direction, sender: v.from as string, recipients, message, now,
      decryptionKeys: message.encrypted ? heldKeys(store, recipients) : [], // as if the envelope named them all
    }, config, storeLookups(store));
    process.stdout.write(explainPlan(plan));
    return EXIT.ok;
  });
}

export const policyCommands: Record<string, Command> = {
  explain: { usage: USAGE, run: explain },
};
