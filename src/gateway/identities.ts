/**
 * First start: every local domain gets a gateway identity (key + self-signed RFC 3183 domain
 * certificate) unless it has one, so a fresh gateway can sign and be encrypted to at once. With
 * no local domain configured there is nothing to sign for, so a demo identity for `localhost`
 * is made instead: enough to try the gateway and `cstp cert export --domain localhost`.
 * A CA-issued certificate replaces a generated one with `cstp key import`.
 */
import { gatewayIdentity } from '../pki/issue';
import type { KeyStore } from '../store/key-store';

export const DEMO_DOMAIN = 'localhost';

/** Creates the missing identities; returns the domains it created one for. */
export function ensureGatewayIdentities(store: KeyStore, localDomains: readonly string[]): string[] {
  // A wildcard (*.example.org) names no single domain to issue a certificate for.
  const domains = localDomains.length > 0 ? localDomains.filter((d) => !d.startsWith('*.')) : [DEMO_DOMAIN];
  const created: string[] = [];
  for (const domain of domains) {
    if (store.gatewayIdentity(domain)) continue;
    const { key, cert } = gatewayIdentity(domain);
    store.putGatewayIdentity(domain, { key, cert, chain: [] });
    created.push(domain);
  }
  return created;
}
