/**
 * The JSON schema of cstp.ini, with every default. The schema is the one place defaults live: the loader fills
 * them in (ajv useDefaults), config/cstp.ini documents them, and a test checks that the two agree.
 */
import { isIP } from 'node:net';
import { DEFAULT_TIMEOUTS } from '../delivery/smtp-client';
import { isDomainPattern } from '../policy/addresses';
import { DEFAULT_POLICY, type PolicySettings } from '../policy/config';
import { LocalNetworks } from '../policy/network';

export type UpstreamTlsPolicy = 'opportunistic' | 'required';
export type LogLevel = 'error' | 'warn' | 'info' | 'debug';

export interface CstpConfig {
  /** The securing policy (src/policy's PolicySettings, keys in snake_case). */
  policy: {
    local_networks: string[];
    local_domains: string[];
    mixed_recipients: PolicySettings['mixedRecipients'];
    without_certificate: PolicySettings['withoutCertificate'];
    require_encryption: string[];
    signing: PolicySettings['signing'];
    prefer_authenticated_encryption: boolean;
    prefer_oaep: boolean;
  };
  delivery: {
    destination_port: number;
    next_hop: string;
    relay_host: string;
    connect_timeout: number;
    greeting_timeout: number;
    command_timeout: number;
    data_block_timeout: number;
    final_dot_timeout: number;
  };
  transparent: {
    listen: string;
    source_address: 'client' | 'gateway';
  };
  upstream_tls: {
    policy: UpstreamTlsPolicy;
    verify: boolean;
    ca_file: string;
  };
  store: {
    path: string;
    passphrase_file: string;
    passphrase_env: string;
  };
  log: {
    level: LogLevel;
  };
}

const port = { type: 'integer', minimum: 1, maximum: 65535 } as const;
const seconds = (fallback: number) => ({ type: 'integer', minimum: 1, maximum: 3600, default: fallback }) as const;
const list = (format: string, fallback: string[] = []) => ({ type: 'array', items: { type: 'string', format }, default: fallback });
const choice = (values: string[], fallback: string) => ({ type: 'string', enum: values, default: fallback });
const section = (properties: Record<string, object>) => ({ type: 'object', additionalProperties: false, default: {}, properties });

export const CSTP_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    policy: section({
      local_networks: list('cidr', [...DEFAULT_POLICY.localNetworks]),
      local_domains: list('domain-pattern', [...DEFAULT_POLICY.localDomains]),
      mixed_recipients: choice(['restrictive', 'liberal'], DEFAULT_POLICY.mixedRecipients),
      without_certificate: choice(['unaltered', 'detached-signature'], DEFAULT_POLICY.withoutCertificate),
      require_encryption: list('domain-pattern-or-address', [...DEFAULT_POLICY.requireEncryption]),
      signing: choice(['user-then-gateway', 'gateway', 'none'], DEFAULT_POLICY.signing),
      prefer_authenticated_encryption: { type: 'boolean', default: DEFAULT_POLICY.preferAuthenticatedEncryption },
      prefer_oaep: { type: 'boolean', default: DEFAULT_POLICY.preferOaep },
    }),
    delivery: section({
      destination_port: { ...port, default: 25 },
      next_hop: { type: 'string', format: 'host-port', default: '' },
      relay_host: { type: 'string', format: 'host-port', default: '' },
      connect_timeout: seconds(DEFAULT_TIMEOUTS.connect / 1000),
      greeting_timeout: seconds(DEFAULT_TIMEOUTS.greeting / 1000),
      command_timeout: seconds(DEFAULT_TIMEOUTS.command / 1000),
      data_block_timeout: seconds(DEFAULT_TIMEOUTS.dataBlock / 1000),
      final_dot_timeout: seconds(DEFAULT_TIMEOUTS.finalDot / 1000),
    }),
    transparent: section({
      listen: { type: 'string', format: 'ip-port', default: '' },
      source_address: choice(['client', 'gateway'], 'client'),
    }),
    upstream_tls: section({
      policy: { type: 'string', enum: ['opportunistic', 'required'], default: 'opportunistic' },
      verify: { type: 'boolean', default: false },
      ca_file: { type: 'string', default: '' },
    }),
    store: section({
      path: { type: 'string', minLength: 1, default: 'var/store' },
      passphrase_file: { type: 'string', default: 'var/store.passphrase' },
      passphrase_env: { type: 'string', format: 'env-name', default: 'CSTP_STORE_PASSPHRASE' },
    }),
    log: section({
      level: { type: 'string', enum: ['error', 'warn', 'info', 'debug'], default: 'info' },
    }),
  },
} as const;

export const HOST_PORT = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]+))(?::(\d{1,5}))?$/;

function isCidr(value: string): boolean {
  try {
    LocalNetworks.parse([value]);
    return true;
  } catch {
    return false;
  }
}

function isHostPort(value: string): boolean {
  if (value === '') return true;
  const match = HOST_PORT.exec(value);
  if (!match) return false;
  const hostOk = match[1] !== undefined ? isIP(match[1]) === 6 : isIP(match[2]) === 4 || (isDomainPattern(match[2]) && !match[2].startsWith('*.'));
  const portOk = match[3] === undefined || (Number(match[3]) >= 1 && Number(match[3]) <= 65535);
  return hostOk && portOk;
}

/** Empty, or an IP literal with a port: the transparent listener binds an address, never a name. */
function isIpPort(value: string): boolean {
  if (value === '') return true;
  const match = HOST_PORT.exec(value);
  if (!match || match[3] === undefined) return false;
  const ipOk = match[1] !== undefined ? isIP(match[1]) === 6 : isIP(match[2]) === 4;
  return ipOk && Number(match[3]) >= 1 && Number(match[3]) <= 65535;
}

/** The rule of src/policy's requireEncryption: an address, a domain or *.domain (no wildcard in an address). */
function isEncryptionTarget(value: string): boolean {
  const at = value.lastIndexOf('@');
  if (at < 0) return isDomainPattern(value);
  const domain = value.slice(at + 1);
  return at > 0 && isDomainPattern(domain) && !domain.startsWith('*.');
}

/** Custom formats and the phrase an admin reads when a value does not match one. */
export const FORMATS: Record<string, { validate: (value: string) => boolean; expected: string }> = {
  cidr: { validate: isCidr, expected: 'an IP address or network such as 192.0.2.0/24 or 2001:db8::/32' },
  'domain-pattern': { validate: isDomainPattern, expected: 'a domain or *.domain' },
  'domain-pattern-or-address': { validate: isEncryptionTarget, expected: 'an e-mail address, a domain or *.domain' },
  'host-port': { validate: isHostPort, expected: 'empty, host or host:port (an IPv6 address in brackets)' },
  'ip-port': { validate: isIpPort, expected: 'empty, or IP:port such as 0.0.0.0:10025 or [::]:10025' },
  'env-name': { validate: (v) => /^[A-Za-z_][A-Za-z0-9_]*$/.test(v), expected: 'an environment variable name' },
};

/** The [policy] section as src/policy takes it (resolvePolicyConfig checks it once more and compiles networks). */
export function policySettings(config: CstpConfig): PolicySettings {
  const p = config.policy;
  return {
    localNetworks: [...p.local_networks],
    localDomains: [...p.local_domains],
    mixedRecipients: p.mixed_recipients,
    withoutCertificate: p.without_certificate,
    requireEncryption: [...p.require_encryption],
    signing: p.signing,
    preferAuthenticatedEncryption: p.prefer_authenticated_encryption,
    preferOaep: p.prefer_oaep,
  };
}
