/**
 * Addresses and domain patterns as the policy compares them: the domain case-insensitively, the
 * local part exactly (RFC 5321 leaves its case to the receiving server), as certificate.ts does.
 */
import { normaliseAddress } from '../pki/certificate';

/** The lower-cased domain of an address; '' for the null sender or an address without one. */
export function domainOf(address: string): string {
  const at = address.lastIndexOf('@');
  return at < 0 ? '' : address.slice(at + 1).trim().toLowerCase();
}

const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/i;

function isDomain(s: string): boolean {
  return s.length > 0 && s.length <= 253 && s.split('.').every((l) => LABEL.test(l));
}

/** "example.org" or "*.example.org". */
export function isDomainPattern(pattern: string): boolean {
  return isDomain(pattern.startsWith('*.') ? pattern.slice(2) : pattern);
}

/** "*.example.org" matches every subdomain of example.org, not example.org itself. */
export function domainMatches(domain: string, pattern: string): boolean {
  const d = domain.toLowerCase();
  const p = pattern.toLowerCase();
  return p.startsWith('*.') ? d.endsWith(p.slice(1)) : d === p;
}

export function inDomains(address: string, patterns: readonly string[]): boolean {
  const domain = domainOf(address);
  return domain !== '' && patterns.some((p) => domainMatches(domain, p));
}

/** A pattern with '@' names one address; any other pattern is a domain pattern. */
export function addressMatches(address: string, pattern: string): boolean {
  if (pattern.includes('@')) return normaliseAddress(address) === normaliseAddress(pattern);
  return inDomains(address, [pattern]);
}
