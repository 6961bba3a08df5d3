/**
 * cstp-config: first in config/plugins. Validates config/cstp.ini and prepares var/ before anything else loads,
 * so a wrong value stops Haraka before it listens and Haraka's tls plugin finds the generated certificate; and
 * sets how a cluster (smtp.ini nodes) shares connections, before Haraka forks its workers.
 */
import cluster from 'node:cluster';
import { ConfigError } from '../../src/config/cstp-config';
import { deliverySettings } from '../../src/config/delivery-settings';
import { ensureTlsCertificate, ensureVarDir, generatedTlsPaths } from '../../src/config/instance';
import { gatewayConfig, instanceDir, type Plugin } from '../haraka';

/** sysexits.h EX_CONFIG: tells a supervisor that restarting will not help. */
const EXIT_CONFIG = 78;

export function register(this: Plugin): void {
  try {
    deliverySettings(gatewayConfig(), instanceDir()); // reads [upstream_tls] ca_file, which may be missing
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    // Written straight to stderr: Haraka's logger buffers lines until every plugin is loaded, which never happens.
    process.stderr.write(`cstp: configuration error, not starting\n${err.message}\n`);
    process.exit(EXIT_CONFIG);
  }
  // Workers accept from the shared socket themselves. Node's default hands every connection from the master to a
  // worker over IPC, which cost a plain relay about 2-3 ms CPU per connection here (docs/BENCHMARKS.md), as much
  // as the second core gave back; a busy worker does not accept, so the idle one takes the next connection.
  if (cluster.isPrimary) cluster.schedulingPolicy = cluster.SCHED_NONE;
  const dir = instanceDir();
  ensureVarDir(dir);
  if (ensureTlsCertificate(dir)) this.lognotice(`generated a self-signed STARTTLS certificate: ${generatedTlsPaths(dir).cert}`);
}
