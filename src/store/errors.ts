/** Errors of the key store: their messages name the store and the reason, never a key or the passphrase. */
export class StoreError extends Error {
  override name = 'StoreError';
}
