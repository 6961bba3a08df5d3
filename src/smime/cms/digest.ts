/** Digest algorithms by OID and by Node/OpenSSL name. */
import { CmsError } from './content-info';
import { OID } from '../../asn1/oids';

export type DigestName = 'sha1' | 'sha224' | 'sha256' | 'sha384' | 'sha512';

const BY_OID: Record<string, DigestName> = {
  [OID.sha1]: 'sha1',
  [OID.sha224]: 'sha224',
  [OID.sha256]: 'sha256',
  [OID.sha384]: 'sha384',
  [OID.sha512]: 'sha512',
};

const BY_NAME = Object.fromEntries(Object.entries(BY_OID).map(([o, n]) => [n, o])) as Record<DigestName, string>;

/** Output length in octets. */
export const DIGEST_LENGTH: Record<DigestName, number> = { sha1: 20, sha224: 28, sha256: 32, sha384: 48, sha512: 64 };

export function digestName(oid: string): DigestName {
  const name = BY_OID[oid];
  if (!name) throw new CmsError(`unsupported digest algorithm ${oid}`);
  return name;
}

export function digestOid(name: DigestName): string {
  return BY_NAME[name];
}

/** The micalg parameter of multipart/signed (RFC 8551 3.5.3.2). */
export function micalg(name: DigestName): string {
  return name.replace(/^sha/, 'sha-');
}
