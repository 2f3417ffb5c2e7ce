export { type ClientOptions, Hold, type Reservation, TallyClient } from './client.js';
export type { DispatchStats } from './dispatch.js';
export * from './errors.js';
export type { HttpOptions } from './http.js';
export type { NatsOptions } from './nats.js';
export type {
  CallOptions,
  ChargeOptions,
  ConsumeOptions,
  Decision,
  LimiterDecision,
  LimitState,
  Quota,
  ReserveOptions,
  Subject,
  UsagePage,
  UsageQuery,
  UsageResult,
  VerifiedSession,
} from './types.js';
