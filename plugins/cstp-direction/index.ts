/**
 * cstp-direction: decides per connection whether mail is outbound (the client is one of our mail servers, in
 * [policy] local_networks) or inbound, before any SMTP command. The result is plain data in
 * connection.notes.cstp_direction, readable by every later plugin.
 */
import { policySettings } from '../../src/config/schema';
import { resolvePolicyConfig } from '../../src/policy/config';
import type { LocalNetworks } from '../../src/policy/network';
import type { Direction } from '../../src/policy/plan';
import { gatewayConfig, type Connection, type Next, type Plugin } from '../haraka';

let localNetworks: LocalNetworks | undefined;

export function register(): void {
  localNetworks = resolvePolicyConfig(policySettings(gatewayConfig())).networks;
}

export function hook_connect_init(this: Plugin, next: Next, connection: Connection): void {
  const direction: Direction = localNetworks?.contains(connection.remote.ip) ? 'outbound' : 'inbound';
  connection.notes.cstp_direction = direction;
  connection.results.add(this, { pass: direction });
  const verb = direction === 'outbound' ? 'is' : 'is not';
  connection.loginfo(this, `direction ${direction}: client ${connection.remote.ip} ${verb} in local_networks`);
  next();
}
