/** PolicyLookups over the gateway's KeyStore: the one place the policy meets the store. */
import type { KeyStore } from '../store/key-store';
import { domainOf } from './addresses';
import type { HeldKey, PolicyLookups } from './plan';

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

/**
 * The private keys held for these recipients: the gateway identity of each recipient's domain
 * and each recipient's own key. PolicyInput.decryptionKeys wants those the envelope names; a
 * caller that cannot tell may pass these, and unwrapping then reports the layer it could not
 * open (status=no-key) and leaves it in place.
 */
export function heldKeys(store: KeyStore, recipients: readonly string[]): HeldKey[] {
  const keys: HeldKey[] = [];
  for (const domain of new Set(recipients.map(domainOf))) {
    const identity = store.gatewayIdentity(domain);
    if (identity) keys.push({ holder: 'gateway', covers: [domain], cert: identity.cert });
  }
  for (const address of recipients) {
    const user = store.userKey(address);
    if (user) keys.push({ holder: 'user', covers: [address], cert: user.cert });
  }
  return keys;
}
