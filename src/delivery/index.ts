/** Delivery: the SMTP client, the upstream transaction of the synchronous model, the retry queue. */
export { formatReply, isPermanent, isPositive, isTransient, localReply, type SmtpReply } from './reply';
export {
  DEFAULT_TIMEOUTS,
  mailArgs,
  rcptArgs,
  SmtpClient,
  type Capabilities,
  type MailParams,
  type MessageSource,
  type RcptParams,
  type SmtpClientOptions,
  type Timeouts,
  type TlsOptions,
  type TlsPolicy,
  type TlsState,
} from './smtp-client';
export { InMemoryRouteMemory, routeMemoryOf, type ExtraRoute, type RouteMemory } from './route-memory';
export {
  UpstreamTransaction,
  type Attempt,
  type Delivery,
  type DeliveryResult,
  type Endpoint,
  type FailedRecipient,
  type Outcome,
  type RecipientResult,
  type Route,
  type UpstreamOptions,
} from './transaction';
export { DEFAULT_DELAYS, makeDsn, RetryQueue, smtpSender, type QueueEntry, type QueueItem, type RetryQueueOptions, type Sender } from './retry-queue';
export { InDoubtDeliveries, inDoubtKey, MAX_AGE_MS, type InDoubtRecord } from './in-doubt';
