/**
 * cstp-direction: decides per connection whether mail is outbound (the client is one of our mail servers, in
 * [policy] local_networks) or inbound, before any SMTP command. The result is plain data in
 * connection.notes.cstp_direction, readable by every later plugin.
 */
import { policySettings } from '../../src/config/schema';
import { resolvePolicyConfig } from '../../src/policy/config';
import type { LocalNetworks } from '../../src/policy/network';
import type { Direction } from '../../src/policy/plan';
import { codes, gatewayConfig, type Connection, type Next, type Plugin } from '../haraka';

let localNetworks: LocalNetworks | undefined;

export function register(): void {
  localNetworks = resolvePolicyConfig(policySettings(gatewayConfig())).networks;
}

/**
 * No reverse DNS before the greeting. Haraka otherwise looks the client up first, and the greeting waits on the
 * resolver: on a fully transparent bridge the box may have no resolver it can reach (seen: 23 s per connection).
 * cstp decides nothing by host name, and the destination does its own lookup of the same client address.
 */
export function hook_lookup_rdns(this: Plugin, next: Next): void {
  next(codes.ok, 'unknown');
}

export function hook_connect_init(this: Plugin, next: Next, connection: Connection): void {
  const direction: Direction = localNetworks?.contains(connection.remote.ip) ? 'outbound' : 'inbound';
  connection.notes.cstp_direction = direction;
  connection.results.add(this, { pass: direction });
  const verb = direction === 'outbound' ? 'is' : 'is not';
  connection.lognotice(this, `direction ${direction}: client ${connection.remote.ip} ${verb} in local_networks`);
  next();
}
