/** ContentInfo (RFC 5652 section 3): the outer wrapper of every CMS object. */
import {
  Asn1Error, children, explicit, expectSequence, isContext, oid, parse, readOid, sequence, type Asn1Node,
} from '../../asn1/der';

export class CmsError extends Error {
  override name = 'CmsError';
}

export interface ContentInfo {
  contentType: string;
  /** The value inside [0] EXPLICIT. */
  content: Asn1Node;
}

/**
 * Parses a ContentInfo. Trailing bytes after it are ignored, as openssl and NSS do
 * (some encoders pad base64 output); a truncated or malformed one is a CmsError.
 */
export function parseContentInfo(der: Buffer): ContentInfo {
  try {
    const [type, wrapped] = expectSequence(parse(der), 'ContentInfo', 2);
    if (!isContext(wrapped, 0)) throw new CmsError('ContentInfo: content is not [0] EXPLICIT');
    const inner = children(wrapped);
    if (inner.length !== 1) throw new CmsError('ContentInfo: [0] must hold exactly one value');
    return { contentType: readOid(type, 'contentType'), content: inner[0] };
  } catch (e) {
    if (e instanceof Asn1Error) throw new CmsError(`malformed CMS: ${e.message}`);
    throw e;
  }
}

export function encodeContentInfo(contentType: string, content: Buffer): Buffer {
  return sequence(oid(contentType), explicit(0, content));
}
