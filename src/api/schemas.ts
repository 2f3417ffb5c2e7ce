/**
 * The JSON shapes of request and response bodies, as TypeBox schemas: one definition gives
 * the static type, the compiled validator and the OpenAPI document, so the three cannot
 * disagree.
 */
import { type Static, type TSchema, Type } from '@sinclair/typebox';
import { KEY_SCOPES } from '../shards/index.js';

const MAX_AMOUNT = Number.MAX_SAFE_INTEGER;
const MAX_DURATION_MS = 31_622_400_000;

const Strict = { additionalProperties: false } as const;
const Name = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.:-]+$' });
const Amount = (minimum: number, options?: { description: string }) => Type.Integer({ ...options, minimum, maximum: MAX_AMOUNT });
const Timestamp = Type.String({ format: 'date-time', description: 'RFC 3339, UTC' });

const Email = Type.String({ minLength: 3, maxLength: 254, pattern: '^[^\\s@]+@[^\\s@]+$' });
const Password = Type.String({ minLength: 8, maxLength: 256 });
const DisplayName = Type.Union([Type.String({ minLength: 1, maxLength: 200 }), Type.Null()]);
/** A resource name, as a limit's `resource`, the resource a request names, or a member of `amounts`. */
const RESOURCE_NAME = { minLength: 1, maxLength: 64 } as const;
const Resource = Type.String(RESOURCE_NAME);

const Limit = Type.Union([
  Type.Object(
    {
      name: Name,
      kind: Type.Literal('rate'),
      limit: Amount(1),
      period_ms: Type.Integer({ minimum: 1, maximum: MAX_DURATION_MS }),
      burst: Type.Optional(Amount(1)),
      resource: Type.Optional(Resource),
    },
    Strict,
  ),
  Type.Object(
    {
      name: Name,
      kind: Type.Literal('window'),
      limit: Amount(1),
      window_ms: Type.Integer({ minimum: 1, maximum: MAX_DURATION_MS }),
      resource: Type.Optional(Resource),
    },
    Strict,
  ),
  Type.Object(
    {
      name: Name,
      kind: Type.Literal('budget'),
      limit: Amount(1),
      period: Type.Union([Type.Literal('day'), Type.Literal('month')]),
      resource: Type.Optional(Resource),
    },
    Strict,
  ),
]);
const Limits = Type.Array(Limit, { maxItems: 32 });

const LimitState = Type.Object({
  name: Type.String(),
  kind: Type.Union([Type.Literal('rate'), Type.Literal('window'), Type.Literal('budget')]),
  limit: Type.Integer(),
  remaining: Type.Integer(),
  reset_at: Timestamp,
});

export const RegisterBody = Type.Object({ email: Email, password: Password, name: Type.Optional(DisplayName), tier: Type.Optional(Name) }, Strict);
export const User = Type.Object({
  id: Type.String(),
  email: Type.String(),
  name: Type.Union([Type.String(), Type.Null()]),
  tier: Type.String(),
  created_at: Timestamp,
});
export const Preferences = Type.Record(Type.String(), Type.Unknown(), { description: 'any JSON object, at most 16 KiB' });
export const Profile = Type.Composite([User, Type.Object({ preferences: Preferences })]);
export const ProfilePatch = Type.Object({ name: Type.Optional(DisplayName), email: Type.Optional(Email) }, { ...Strict, minProperties: 1 });
export const MergePatch = Type.Unknown({ description: 'a JSON Merge Patch (RFC 7396)' });

const Device = Type.Object(
  {
    name: Type.Optional(Type.Union([Type.String({ maxLength: 200 }), Type.Null()])),
    type: Type.Optional(Type.Union([Type.String({ maxLength: 64 }), Type.Null()])),
  },
  Strict,
);
export const LoginBody = Type.Object({ email: Email, password: Type.String({ minLength: 1, maxLength: 256 }), device: Type.Optional(Device) }, Strict);
const Session = Type.Object({
  id: Type.String(),
  device: Type.Object({ name: Type.Union([Type.String(), Type.Null()]), type: Type.Union([Type.String(), Type.Null()]) }),
  ip: Type.Union([Type.String(), Type.Null()]),
  user_agent: Type.Union([Type.String(), Type.Null()]),
  created_at: Timestamp,
  last_active_at: Timestamp,
  expires_at: Timestamp,
});
export const LoginReply = Type.Object({ token: Type.String(), expires_at: Timestamp, session: Session });
export const SessionList = Type.Object({ sessions: Type.Array(Session), current: Type.Union([Type.String(), Type.Null()]) });
export const LogoutAllBody = Type.Object({ keep_current: Type.Optional(Type.Boolean()) }, Strict);
export const Revoked = Type.Object({ revoked: Type.Integer() });

export const KeyCreateBody = Type.Object(
  {
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    scopes: Type.Optional(Type.Array(Type.Union(KEY_SCOPES.map((scope) => Type.Literal(scope))), { minItems: 1, maxItems: 8, uniqueItems: true })),
    expires_at: Type.Optional(Timestamp),
  },
  Strict,
);
const Key = Type.Object({
  id: Type.String(),
  prefix: Type.String(),
  name: Type.Union([Type.String(), Type.Null()]),
  scopes: Type.Array(Type.String()),
  created_at: Timestamp,
  expires_at: Type.Union([Timestamp, Type.Null()]),
  last_used_at: Type.Union([Timestamp, Type.Null()]),
});
export const CreatedKey = Type.Composite([Type.Omit(Key, ['last_used_at']), Type.Object({ key: Type.String({ description: 'shown only once' }) })]);
export const KeyList = Type.Object({ keys: Type.Array(Key) });

/** Amounts by resource name. A record's names are checked by pattern: the same 1–64 characters as RESOURCE_NAME. */
const Amounts = (description: string) =>
  Type.Optional(
    Type.Record(Type.String({ pattern: `^[\\s\\S]{${RESOURCE_NAME.minLength},${RESOURCE_NAME.maxLength}}$` }), Amount(0), {
      ...Strict,
      maxProperties: 32,
      description,
    }),
  );
const Charged = Amounts('amounts of other resources: a limit naming one is charged its amount here; 0 is the same as leaving it out');
const Cost = Type.Optional(Amount(1, { description: 'charged to limits without a resource and to those naming `resource`; default 1' }));
const ChargedResource = Type.Optional(Type.String({ ...RESOURCE_NAME, description: 'the resource `cost` is charged to; default "default"' }));

export const ConsumeBody = Type.Object({ cost: Cost, resource: ChargedResource, amounts: Charged }, Strict);
export const ConsumeReply = Type.Object({ allowed: Type.Boolean(), limits: Type.Array(LimitState) });
export const ReserveBody = Type.Object(
  { cost: Cost, resource: ChargedResource, amounts: Charged, ttl_ms: Type.Optional(Type.Integer({ minimum: 1000, maximum: 3_600_000 })) },
  { ...Strict, description: 'at least one of `cost` and `amounts`' },
);
export const Reservation = Type.Object({ id: Type.String(), expires_at: Timestamp, limits: Type.Array(LimitState) });
export const SettleBody = Type.Object(
  {
    actual: Type.Optional(Amount(0, { description: 'what the hold’s `cost` actually came to' })),
    amounts: Amounts('what each named resource actually came to'),
  },
  { ...Strict, description: 'at least one of `actual` and `amounts`; what neither names is settled as held' },
);
export const LimitsReply = Type.Object({ limits: Type.Array(LimitState) });
export const QuotaReply = Type.Object({ tier: Type.String(), limits: Type.Array(LimitState) });
export const LimiterBody = Type.Object(
  {
    key: Type.String({ minLength: 1, maxLength: 256 }),
    limit: Amount(1),
    window_ms: Type.Integer({ minimum: 1, maximum: MAX_DURATION_MS }),
    cost: Type.Optional(Amount(1)),
  },
  Strict,
);
export const LimiterReply = Type.Object({ allowed: Type.Boolean(), remaining: Type.Integer(), reset_at: Timestamp });

export const Tier = Type.Object({ name: Type.String(), limits: Limits, fail_open: Type.Boolean(), updated_at: Timestamp });
export const TierList = Type.Object({ tiers: Type.Array(Tier) });
export const TierBody = Type.Object({ limits: Limits, fail_open: Type.Optional(Type.Boolean()) }, Strict);
export const AdminUser = Type.Composite([
  Profile,
  Type.Object({
    blocked: Type.Boolean(),
    overrides: Limits,
    limits: Type.Array(LimitState),
    shard: Type.Integer({ minimum: 0, description: 'the shard that holds the user' }),
    owner: Type.Union([Type.String(), Type.Null()], { description: 'the node that owns the shard now (null while it has none)' }),
  }),
]);
export const AdminUserPatch = Type.Object(
  { tier: Type.Optional(Name), blocked: Type.Optional(Type.Boolean()), overrides: Type.Optional(Limits) },
  { ...Strict, minProperties: 1 },
);
export const Cluster = Type.Object({
  nodes: Type.Array(
    Type.Object({
      id: Type.String(),
      self: Type.Boolean(),
      shards: Type.Integer(),
      status: Type.String(),
      address: Type.Optional(Type.String({ description: 'cluster: where its HTTP API listens' })),
      lease_age_ms: Type.Optional(Type.Integer({ description: 'cluster: since this node last saw its heartbeat' })),
      version: Type.Optional(Type.String()),
      requests: Type.Optional(Type.Integer({ description: 'cluster: HTTP requests the node had received at its last heartbeat' })),
    }),
  ),
  leader: Type.Optional(Type.Union([Type.String(), Type.Null()], { description: 'cluster: the node that writes the shard map' })),
  shards: Type.Object({
    count: Type.Integer(),
    by_node: Type.Record(Type.String(), Type.Integer()),
    moving: Type.Array(Type.Integer()),
    moves: Type.Optional(
      Type.Array(Type.Object({ shard: Type.Integer(), from: Type.String(), to: Type.String() }), { description: 'cluster: planned moves in progress' }),
    ),
    unassigned: Type.Optional(Type.Integer({ description: 'cluster: shards with no owner in the map' })),
    owners: Type.Optional(Type.Array(Type.Union([Type.String(), Type.Null()]), { description: 'each shard’s owner in the map, by shard number (null: none)' })),
    lost: Type.Optional(Type.Array(Type.Integer(), { description: 'shards this node gave up: the epoch fence showed another owner' })),
  }),
});
export const ClusterRates = Type.Object({
  interval_ms: Type.Integer({ description: 'the time between two points (10 s)' }),
  nodes: Type.Array(
    Type.Object({
      id: Type.String(),
      points: Type.Array(
        Type.Object({
          at: Timestamp,
          per_second: Type.Number({
            minimum: 0,
            description: 'quota decisions (consumes and reservations) the node made as owner per second in the interval before `at`',
          }),
        }),
        { description: 'oldest first, at most 90 (15 minutes); an interval without a heartbeat of the node has no point' },
      ),
    }),
    { description: 'every node seen in the last 15 minutes (a single node: itself)' },
  ),
});
export const Live = Type.Object({ status: Type.Literal('ok') });
export const Text = Type.String();
export const AnyObject = Type.Record(Type.String(), Type.Unknown());
const HealthCheck = Type.Object({ ok: Type.Boolean(), detail: Type.Optional(Type.String()) });
export const Health = Type.Object({
  status: Type.Union([Type.Literal('ready'), Type.Literal('not ready')]),
  checks: Type.Record(Type.String(), HealthCheck, { description: 'what readiness depends on: ready when every one is ok' }),
  observed: Type.Optional(
    Type.Record(Type.String(), HealthCheck, { description: 'cluster: what the node sees that does not decide readiness (its shards, while they move)' }),
  ),
});
export const ProblemSchema = Type.Object(
  { type: Type.String(), title: Type.String(), status: Type.Integer(), detail: Type.String(), instance: Type.Optional(Type.String()) },
  { additionalProperties: true },
);

/** A quota refusal (429): the problem and the limits as they stand. */
export const RefusedProblem = Type.Composite([ProblemSchema, Type.Object({ limits: Type.Array(LimitState) })]);
/** A 422 of a quota route: for a request no limit can ever admit, that limit and the limits as they stand. */
export const LimitProblem = Type.Composite([
  ProblemSchema,
  Type.Object({
    limit: Type.Optional(Type.String({ description: 'the limit that can never admit this request' })),
    limits: Type.Optional(Type.Array(LimitState)),
  }),
]);

export type Body<T extends TSchema> = Static<T>;

// The service API (serviceOperations.ts: the NATS subjects, and `/v1/service/…` over HTTP): the
// same operations, naming the user in the body.
const UserId = Type.String({ pattern: '^u[a-z2-7]{20}$', description: 'the user the operation is for' });
const IdempotencyKey = Type.Optional(Type.String({ minLength: 1, maxLength: 255, description: 'as the HTTP `Idempotency-Key` header' }));
const MAX_NATS_BATCH = 1000;
export const NatsConsume = Type.Object({ user_id: UserId, cost: Cost, resource: ChargedResource, amounts: Charged, idempotency_key: IdempotencyKey }, Strict);
/** A consume by a user's API key instead of its id (a gateway that holds only the caller's key): the key is checked as over HTTP. */
export const NatsKeyConsume = Type.Object(
  {
    api_key: Type.String({ minLength: 1, maxLength: 200, description: 'the API key the caller presented (`tk_…`)' }),
    cost: Cost,
    resource: ChargedResource,
    amounts: Charged,
    idempotency_key: IdempotencyKey,
  },
  Strict,
);
export const NatsGet = Type.Object({ user_id: UserId }, Strict);
export const NatsBatch = Type.Object({ items: Type.Array(Type.Unknown(), { minItems: 1, maxItems: MAX_NATS_BATCH }) }, Strict);
export const NatsReserve = Type.Object(
  {
    user_id: UserId,
    cost: Cost,
    resource: ChargedResource,
    amounts: Charged,
    ttl_ms: Type.Optional(Type.Integer({ minimum: 1000, maximum: 3_600_000 })),
  },
  Strict,
);
export const NatsSettle = Type.Object({ user_id: UserId, id: Type.String({ minLength: 1, maxLength: 64 }), ...SettleBody.properties }, Strict);
export const NatsRelease = Type.Object({ user_id: UserId, id: Type.String({ minLength: 1, maxLength: 64 }) }, Strict);
export const NatsVerify = Type.Object({ token: Type.String({ minLength: 1, maxLength: 4096 }) }, Strict);

const UsageResult = Type.Object({
  resource: Type.String(),
  key_id: Type.Optional(Type.String({ description: 'grouped by key: the API key’s or session’s id (absent for platform services)' })),
  user_id: Type.Optional(Type.String({ description: 'grouped by user' })),
  tier: Type.Optional(Type.String({ description: 'grouped by tier: the user’s tier now' })),
  amount: Type.Integer({ minimum: 0, description: 'what admitted requests were charged' }),
  requests: Type.Integer({ minimum: 0, description: 'admitted requests (a reservation counts when settled)' }),
  denied: Type.Integer({ minimum: 0, description: 'refused requests' }),
});
export const UsagePage = Type.Object({
  data: Type.Array(Type.Object({ start: Timestamp, end: Timestamp, results: Type.Array(UsageResult) }), {
    description: 'buckets with usage, oldest first',
  }),
  next_page: Type.Union([Type.String(), Type.Null()], { description: 'pass as `page` for the next page; null on the last' }),
});
export const TopUsers = Type.Object({
  month: Type.String(),
  users: Type.Array(
    Type.Object({
      user_id: Type.String(),
      tier: Type.String(),
      resource: Type.String(),
      amount: Type.Integer(),
      requests: Type.Integer(),
      denied: Type.Integer(),
    }),
  ),
});

// The service API (the NATS subjects, and `/v1/service/…` over HTTP) as the OpenAPI document
// shows it. Each operation checks its body itself (serviceOperations.ts), a batch item by
// item, so these shapes document what it accepts and answers; they are not checked at the edge.
/** What the edge lets through as parsed: the operation checks the body itself. */
export const ServiceBody = Type.Unknown();
const ItemFailed = Type.Object(
  { error: ProblemSchema },
  { description: 'an item that failed: the problem the same request alone would have got (its `status` is the HTTP status)' },
);
const batchOf = (item: TSchema) =>
  Type.Object(
    {
      items: Type.Array(item, {
        minItems: 1,
        maxItems: MAX_NATS_BATCH,
        description: 'each decided on its own; over HTTP the whole body is at most 64 KiB, so a larger batch is sent in parts',
      }),
    },
    Strict,
  );
const resultsOf = (reply: TSchema) =>
  Type.Object({ results: Type.Array(Type.Union([reply, ItemFailed]), { description: 'one per item, in the order of `items`' }) });
const refusal = {
  denied: Type.Optional(Type.String({ description: 'refused: the limit that refused' })),
  retry_after_ms: Type.Optional(Type.Integer({ minimum: 0, description: 'refused: after this long the same request fits' })),
  exceeds_capacity: Type.Optional(Type.Literal(true, { description: 'refused: the limit can never admit as much, so no wait helps' })),
};
const ServiceDecision = Type.Object({
  allowed: Type.Boolean({ description: 'false: refused, and nothing was charged' }),
  limits: Type.Array(LimitState),
  ...refusal,
  degraded: Type.Optional(Type.Literal(true, { description: 'allowed by a `fail_open` tier without its owner: no limits are known' })),
});
export const ServiceConsumeBody = Type.Union([NatsConsume, NatsKeyConsume, batchOf(Type.Union([NatsConsume, NatsKeyConsume]))]);
export const ServiceConsumeReply = Type.Union([ServiceDecision, resultsOf(ServiceDecision)]);
export const ServiceGetBody = Type.Union([NatsGet, batchOf(NatsGet)]);
export const ServiceGetReply = Type.Union([QuotaReply, resultsOf(QuotaReply)]);
export const ServiceReservation = Type.Object({
  allowed: Type.Boolean({ description: 'false: refused, and nothing was held' }),
  id: Type.Optional(Type.String({ description: 'held: the hold, for settle and release' })),
  expires_at: Type.Optional(Timestamp),
  limits: Type.Array(LimitState),
  ...refusal,
});
export const ServiceReleased = Type.Object({ released: Type.Literal(true) });
export const ServiceSession = Type.Object({ user_id: Type.String(), session_id: Type.String(), tier: Type.String(), expires_at: Timestamp });
export const ServiceUsageQuery = Type.Object(
  {
    start: Type.String({ description: 'RFC 3339: the first bucket is the one this falls in' }),
    end: Type.Optional(Type.String({ description: 'RFC 3339, exclusive; default now' })),
    bucket: Type.Optional(Type.Union([Type.Literal('1h'), Type.Literal('1d')], { description: 'default `1d`' })),
    group_by: Type.Optional(
      Type.Union([Type.Array(Type.Union([Type.Literal('user'), Type.Literal('tier'), Type.Literal('resource')])), Type.String()], {
        description: 'a list, or a comma-separated string',
      }),
    ),
    user_id: Type.Optional(Type.String({ description: 'only this user' })),
    tier: Type.Optional(Type.String({ description: 'only users on this tier now' })),
    page: Type.Optional(Type.String({ description: 'the `next_page` of the previous answer' })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000, description: 'results per page; default 1,000' })),
  },
  { ...Strict, description: 'the parameters of `GET /v1/admin/usage`, in a body' },
);
