/** Gateways of the paper's example for the end-to-end tests: a Haraka instance with its own filled store. */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { toPem } from '../../src/pki/issue';
import type { Credentials } from '../../src/pki/keys';
import { KeyStore } from '../../src/store/key-store';
import { paperCert, paperKey } from '../policy/paper-pki';
import { freePort, listening, makeInstanceWithStore, removeInstance, spawnGateway, stopGateway, type Gateway } from './harness';

export const PASS = 'paper example passphrase';
export type PaperName = Parameters<typeof paperCert>[0];
export const creds = (name: PaperName): Credentials => ({ key: paperKey(name), cert: paperCert(name), chain: [] });

export interface Running {
  port: number;
  dir: string;
  gw: Gateway;
}

/** An instance with its cstp.ini and a store filled by `fill`, started and listening. */
export async function startGateway(ini: string, fill: (store: KeyStore) => void): Promise<Running> {
  const port = await freePort();
  const dir = await makeInstanceWithStore(port, ini, PASS, fill);
  const gw = spawnGateway(dir);
  await listening(gw, 20_000);
  return { port, dir, gw };
}

export async function stop(r: Running | undefined): Promise<void> {
  if (!r) return;
  await stopGateway(r.gw);
  removeInstance(r.dir);
}

/** amd's store: its gateway key, intel's gateway certificate and Julia's own certificate. */
export const amdStore = (store: KeyStore): void => {
  store.putGatewayIdentity('amd', creds('gw-amd'));
  store.addCertificate(paperCert('gw-intel'), 'gateway', ['intel']);
  store.addCertificate(paperCert('julia'), 'remote');
};


/** Writes the certificate and key of `name` as PEM files into `dir`, for the openssl command line. */
export function paperPem(dir: string, name: PaperName): { cert: string; key: string } {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  writeFileSync(cert, toPem('CERTIFICATE', paperCert(name).der));
  writeFileSync(key, paperKey(name).export({ type: 'pkcs8', format: 'pem' }) as string, { mode: 0o600 });
  return { cert, key };
}

/** The openssl command line on `input`; its output as latin1 (throws on a non-zero exit). */
export function openssl(args: string[], input: string): string {
  return execFileSync('openssl', args, { input, stdio: ['pipe', 'pipe', 'pipe'] }).toString('latin1');
}
