/**
 * cstp-no-delivery: the guard for an instance without a delivery plugin. Haraka alone would answer every RCPT
 * with a permanent 550 "I cannot deliver mail for", telling clients the address is wrong and making them bounce
 * the message. This plugin accepts the recipients and answers DATA with 451, so the client keeps the message and
 * retries later. It steps aside by itself as soon as any plugin registers the queue hook that would take it.
 */
import { codes, type Connection, type Next, type Plugin } from '../haraka';

export const NOT_CONFIGURED = 'cstp: delivery not configured';

interface HarakaPlugins {
  registered_hooks: Record<string, unknown[] | undefined>;
}

/** Recipients are the destination's to judge; with no destination to ask, accept them and refuse at DATA. */
export function hook_rcpt(this: Plugin, next: Next, connection: Connection): void {
  if (deliveryConfigured(this, connection)) return next();
  next(codes.ok);
}

export function hook_data(this: Plugin, next: Next, connection: Connection): void {
  if (deliveryConfigured(this, connection)) return next();
  connection.lognotice(this, 'no delivery plugin is enabled: refusing DATA with 451');
  next(codes.denysoft, NOT_CONFIGURED);
}

function deliveryConfigured(plugin: Plugin, connection: Connection): boolean {
  const { registered_hooks } = plugin.haraka_require('plugins') as HarakaPlugins;
  const hook = connection.relaying ? 'queue_outbound' : 'queue';
  return (registered_hooks[hook]?.length ?? 0) > 0;
}
