/**
 * RFC 3183 domain signing, seen from the receiving side. A gateway signs for every address of its
 * domain, so its certificate names e.g. cstpbox@amd, not the sender juro@amd, and the RFC 8550
 * From check of verifyMessage reports it as cert-unusable (the warning Julia's client shows in the
 * paper's second example). A gateway may still accept it as the domain's signature when the signer
 * is the gateway certificate its store holds for the From address's domain.
 */
import type { Certificate } from '../pki/certificate';
import type { PolicyLookups } from './plan';

export function isDomainSigner(signer: Certificate, from: string, lookups: Pick<PolicyLookups, 'recipientCertificates'>): boolean {
  return lookups.recipientCertificates(from).gateway.some((c) => c.fingerprint === signer.fingerprint);
}
