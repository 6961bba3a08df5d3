/**
 * The key store options every store-using command shares: --store DIR (default $CSTP_STORE,
 * else ./var/store) and the store passphrase from --store-pass-file F, else
 * $CSTP_STORE_PASSPHRASE, else ./var/store.passphrase, which `cstp init` creates (0600,
 * random) when none of them exists.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { KeyStore } from '../store/key-store';
import { passphrase, type Values } from './cli-support';

const DEFAULT_STORE = './var/store';
const DEFAULT_PASS_FILE = './var/store.passphrase';
const PASS_ENV = 'CSTP_STORE_PASSPHRASE';

export const STORE_OPTIONS = {
  store: { type: 'string' },
  'store-pass-file': { type: 'string' },
} as const;

export const STORE_HELP = `  Store: --store DIR (default $CSTP_STORE or ${DEFAULT_STORE}); passphrase from --store-pass-file F,
  else $${PASS_ENV}, else ${DEFAULT_PASS_FILE} (created 0600 with a random passphrase by cstp init when absent;
  production should keep the passphrase outside the store directory, e.g. in a systemd credential).`;

export function storePath(v: Values): string {
  return (v.store as string | undefined) ?? process.env.CSTP_STORE ?? DEFAULT_STORE;
}

/** The store passphrase from the first source that exists; init may create the default file. */
export function storePassphrase(v: Values, createDefault: boolean): string {
  const file = v['store-pass-file'] as string | undefined;
  if (file !== undefined) return nonEmpty(passphrase({ 'pass-file': file }), file);
  const env = process.env[PASS_ENV];
  if (env) return env;
  if (existsSync(DEFAULT_PASS_FILE)) return nonEmpty(passphrase({ 'pass-file': DEFAULT_PASS_FILE }), DEFAULT_PASS_FILE);
  if (!createDefault) throw new Error(`no store passphrase: give --store-pass-file, set ${PASS_ENV}, or create ${DEFAULT_PASS_FILE} (cstp init does)`);
  return createPassphraseFile(DEFAULT_PASS_FILE);
}

function nonEmpty(pass: string | undefined, file: string): string {
  if (!pass) throw new Error(`store passphrase file ${file} is empty`);
  return pass;
}

function createPassphraseFile(path: string): string {
  const pass = randomBytes(32).toString('base64url');
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileSync(path, `${pass}\n`, { mode: 0o600, flag: 'wx' });
  process.stderr.write(`cstp: created store passphrase file ${path} (keep it outside the store in production)\n`);
  return pass;
}

/** Opens the store for `action` and always closes it, so the LMDB lock is released before exit. */
export async function withStore<T>(v: Values, mode: 'read' | 'write' | 'init', action: (store: KeyStore) => T | Promise<T>): Promise<T> {
  const store = KeyStore.open({ path: storePath(v), passphrase: storePassphrase(v, mode === 'init'), readOnly: mode === 'read' });
  try {
    return await action(store);
  } finally {
    await store.close();
  }
}

