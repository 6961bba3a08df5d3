/**
 * Configuration of the securing policy: names, defaults and validation. The comment block on
 * PolicyConfig is meant to become the documented [policy] section of config/cstp.ini.
 */
import { LocalNetworks } from './network';
import { isDomainPattern } from './addresses';

/**
 * [policy] settings, with their defaults:
 *
 *   localNetworks = 127.0.0.0/8, ::1/128
 *       CIDR blocks (IPv4 and IPv6; a bare address is a /32 or /128) of the local mail servers.
 *       A client inside them is outbound mail, anyone else inbound.
 *   localDomains = (none)
 *       The domains this gateway serves. "*.example.org" matches every subdomain (not example.org
 *       itself). Outbound mail to a local domain stays inside: it is never encrypted nor refused.
 *   mixedRecipients = restrictive
 *       When some recipients have a usable certificate and others not:
 *       restrictive  only the encrypted copy is delivered; every other recipient is refused with
 *                    a delivery status notification to the sender (never a silent drop);
 *       liberal      the others also receive the message, treated as withoutCertificate says.
 *       Restrictive by default: content meant to be encrypted does not also cross the internet in
 *       plaintext unless the administrator chooses so.
 *   withoutCertificate = unaltered
 *       Outbound recipients without a usable certificate get the message
 *       unaltered           as it came, or
 *       detached-signature  with a multipart/signed signature readable without S/MIME software.
 *   requireEncryption = (none)
 *       Domains ("example.org", "*.example.org") and addresses ("ceo@example.org") that must never
 *       receive plaintext. Without a usable certificate the whole message is deferred with a 4xx
 *       and nothing is sent; mail the sender already encrypted passes.
 *   signing = user-then-gateway
 *       user-then-gateway  the sender's own key when the gateway holds it, else the gateway key of
 *                          the sender's domain (domain signing, RFC 3183);
 *       gateway            always the gateway key of the sender's domain;
 *       none               never sign.
 *   preferAuthenticatedEncryption = true
 *       Use AES-256-GCM (AuthEnvelopedData) when every certificate of an envelope belongs to a
 *       cstp peer or to a peer whose verified SMIMECapabilities list AES-256-GCM; otherwise, and
 *       always when false, AES-256-CBC, which Outlook, Thunderbird and gpgsm read.
 *   preferOaep = true
 *       Use RSAES-OAEP (SHA-256) key transport when every RSA certificate of an envelope belongs to a
 *       cstp peer or to a peer whose verified capabilities list RSAES-OAEP with SHA-256; otherwise
 *       RSA PKCS#1 v1.5.
 *
 * A cstp peer is a gateway certificate the store marks as belonging to a cstp gateway
 * (PolicyLookups.isCstpPeer). Without the mark a cstp gateway is still recognised as soon as one
 * verified signature of it was seen, because every cstp signature advertises AES-256-GCM and
 * RSAES-OAEP-SHA256 in its SMIMECapabilities (DEFAULT_CAPABILITIES in signed-data.ts).
 */
export interface PolicySettings {
  localNetworks: string[];
  localDomains: string[];
  mixedRecipients: 'restrictive' | 'liberal';
  withoutCertificate: 'detached-signature' | 'unaltered';
  requireEncryption: string[];
  signing: 'user-then-gateway' | 'gateway' | 'none';
  preferAuthenticatedEncryption: boolean;
  preferOaep: boolean;
}

export const DEFAULT_POLICY: Readonly<PolicySettings> = Object.freeze({
  localNetworks: ['127.0.0.0/8', '::1/128'],
  localDomains: [],
  mixedRecipients: 'restrictive',
  withoutCertificate: 'unaltered',
  requireEncryption: [],
  signing: 'user-then-gateway',
  preferAuthenticatedEncryption: true,
  preferOaep: true,
});

/** Settings checked and with the local networks compiled, as planMessage takes them. */
export interface PolicyConfig extends PolicySettings {
  networks: LocalNetworks;
}

export class PolicyConfigError extends Error {
  override name = 'PolicyConfigError';
  constructor(readonly key: keyof PolicySettings, reason: string) {
    super(`policy setting ${key}: ${reason}`);
  }
}

const CHOICES: Partial<Record<keyof PolicySettings, readonly string[]>> = {
  mixedRecipients: ['restrictive', 'liberal'],
  withoutCertificate: ['detached-signature', 'unaltered'],
  signing: ['user-then-gateway', 'gateway', 'none'],
};

/** Fills in defaults and checks every value; a wrong one throws a PolicyConfigError naming the key. */
export function resolvePolicyConfig(settings: Partial<PolicySettings> = {}): PolicyConfig {
  const merged: PolicySettings = { ...DEFAULT_POLICY, ...settings };
  for (const [key, allowed] of Object.entries(CHOICES) as [keyof PolicySettings, string[]][]) {
    const value = merged[key] as string;
    if (!allowed.includes(value)) throw new PolicyConfigError(key, `"${value}" is not one of ${allowed.join(', ')}`);
  }
  for (const key of ['preferAuthenticatedEncryption', 'preferOaep'] as const) {
    if (typeof merged[key] !== 'boolean') throw new PolicyConfigError(key, 'must be true or false');
  }
  for (const d of merged.localDomains) {
    if (!isDomainPattern(d)) throw new PolicyConfigError('localDomains', `"${d}" is not a domain or *.domain`);
  }
  for (const e of merged.requireEncryption) {
    const at = e.lastIndexOf('@');
    const ok = at < 0 ? isDomainPattern(e) : at > 0 && isDomainPattern(e.slice(at + 1)) && !e.slice(at + 1).startsWith('*.');
    if (!ok) {
      throw new PolicyConfigError('requireEncryption', `"${e}" is not an address, a domain or *.domain`);
    }
  }
  let networks: LocalNetworks;
  try {
    networks = LocalNetworks.parse(merged.localNetworks);
  } catch (e) {
    throw new PolicyConfigError('localNetworks', (e as Error).message);
  }
  return { ...merged, networks };
}
