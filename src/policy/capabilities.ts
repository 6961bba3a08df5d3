/**
 * What a peer can decrypt, read from a verified SMIMECapabilities attribute (RFC 8551 2.5.2):
 * SMIMECapabilities ::= SEQUENCE OF SEQUENCE { capabilityID OID, parameters ANY OPTIONAL }.
 */
import {
  Asn1Error, children, expectSequence, isContext, parseExact, readOid, type Asn1Node,
} from '../asn1/der';
import { OID } from '../asn1/oids';

export interface PeerCapabilities {
  aes256Gcm: boolean;
  /** RSAES-OAEP with SHA-256, the only OAEP variant cstp writes. */
  oaepSha256: boolean;
}

/** Parses the DER value; undefined when it is malformed (then nothing is assumed about the peer). */
export function parseCapabilities(der: Buffer): PeerCapabilities | undefined {
  try {
    const caps = expectSequence(parseExact(der), 'SMIMECapabilities').map((c) => expectSequence(c, 'SMIMECapability', 1));
    const find = (oid: string): Asn1Node[] | undefined => caps.find((c) => readOid(c[0], 'capabilityID') === oid);
    const oaep = find(OID.rsaesOaep);
    return { aes256Gcm: find(OID.aes256Gcm) !== undefined, oaepSha256: oaep !== undefined && oaepHashIsSha256(oaep[1]) };
  } catch (e) {
    if (e instanceof Asn1Error) return undefined;
    throw e;
  }
}

/**
 * RSAES-OAEP-params ::= SEQUENCE { hashAlgorithm [0] DEFAULT sha1, ... } (RFC 4055 4.1). Absent
 * parameters or an absent [0] mean SHA-1, which cstp does not write.
 */
function oaepHashIsSha256(params: Asn1Node | undefined): boolean {
  if (!params) return false;
  const hash = expectSequence(params, 'RSAES-OAEP-params').find((n) => isContext(n, 0));
  if (!hash) return false;
  const [algorithm] = children(hash);
  return readOid(expectSequence(algorithm, 'hashAlgorithm', 1)[0]) === OID.sha256;
}
