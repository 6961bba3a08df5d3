/** A store stand-in for policy tests: PolicyLookups over plain tables. */
import { Certificate } from '../../src/pki/certificate';
import { resolvePolicyConfig, type PolicySettings } from '../../src/policy/config';
import type { PolicyInput, PolicyLookups } from '../../src/policy/plan';
import { pkiRead } from '../helpers/pki';

export interface Known {
  /** Recipient address -> own certificates. */
  user?: Record<string, Certificate[]>;
  /** Domain -> gateway certificates. */
  gateway?: Record<string, Certificate[]>;
  userKeys?: Record<string, Certificate>;
  gatewayKeys?: Record<string, Certificate>;
  capabilities?: Record<string, Buffer>;
  peers?: Certificate[];
}

export function lookups(k: Known): PolicyLookups {
  const domain = (a: string): string => a.slice(a.lastIndexOf('@') + 1).toLowerCase();
  return {
    recipientCertificates: (a) => ({ user: k.user?.[a] ?? [], gateway: k.gateway?.[domain(a)] ?? [] }),
    userSigningCertificate: (a) => k.userKeys?.[a],
    gatewaySigningCertificate: (d) => k.gatewayKeys?.[d],
    capabilities: (a) => k.capabilities?.[a],
    isCstpPeer: (c) => (k.peers ?? []).some((p) => p.fingerprint === c.fingerprint),
  };
}

export const pkiCert = (name: string): Certificate => Certificate.fromPem(pkiRead(`${name}.crt`))[0];

/** Later than any test certificate's notBefore (they are made on first use) and before their notAfter. */
export const NOW = new Date('2030-01-01T00:00:00Z');

/** amd's gateway: its mail server lives in 10.1.0.0/16 and 2001:db8:a::/48. */
export const amdConfig = (s: Partial<PolicySettings> = {}) =>
  resolvePolicyConfig({ localNetworks: ['10.1.0.0/16', '2001:db8:a::/48'], localDomains: ['amd'], ...s });

/** intel's gateway. */
export const intelConfig = (s: Partial<PolicySettings> = {}) =>
  resolvePolicyConfig({ localNetworks: ['10.2.0.0/16'], localDomains: ['intel'], ...s });

export const outbound = (recipients: string[], extra: Partial<PolicyInput> = {}): PolicyInput => ({
  clientIp: '10.1.0.25', sender: 'juro@amd', recipients, message: { encrypted: false, signed: false }, now: NOW, ...extra,
});

export const fps = (certs: readonly Certificate[]): string[] => certs.map((c) => c.fingerprint);
