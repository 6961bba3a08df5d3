/** The one error type of the MIME layer: malformed or over-limit input, or a request it cannot honour losslessly. */
export class MimeError extends Error {
  override name = 'MimeError';
}
