/** PolicyLookups over the gateway's KeyStore: the one place the policy meets the store. */
import type { KeyStore } from '../store/key-store';
import type { PolicyLookups } from './plan';

/**
 * The store has no cstp-peer mark yet, so isCstpPeer is left out: cstp gateways are recognised
 * by the capabilities of their verified signatures (see config.ts).
 */
export function storeLookups(store: KeyStore): PolicyLookups {
  return {
    recipientCertificates: (address) => store.recipientCertificates(address),
    userSigningCertificate: (address) => store.userKey(address)?.cert,
    gatewaySigningCertificate: (domain) => store.gatewayIdentity(domain)?.cert,
    capabilities: (address) => store.capabilities(address)?.der,
  };
}
