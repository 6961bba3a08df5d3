/**
 * The MIME layer of cstp's S/MIME engine: canonical form, entity and header parsing,
 * Content-Type, multipart splitting, transfer encodings and 7-bit conversion, all on Buffers.
 */
export { MimeError } from './error';
export { canonicalize } from './canonical';
export { is7bitSafe } from './bytes';
export { fieldValue, headerValue, isContentHeader, splitHeaders, type HeaderField } from './header';
export {
  buildEntity, parseEntity, parseLayout, DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_HEADER_FIELDS, type Entity, type ParseOptions,
} from './entity';
export { formatContentType, parseContentType, type ContentType } from './content-type';
export { newBoundary, splitMultipart, DEFAULT_MAX_PARTS, type MultipartParts, type SplitOptions } from './multipart';
export { base64Lines, decodeBase64Body } from './base64';
export { decodeQuotedPrintable, encodeQuotedPrintable } from './quoted-printable';
export { decodeTransferEncoding } from './transfer-encoding';
export { make7bit, needs8bitHeaders, DEFAULT_MAX_DEPTH, type SevenBitOptions } from './seven-bit';
export { encodedWordDecode } from './encoded-word';
