import { schemas as S } from '../../api/index.js';
import { InvalidRequestError, type Limit, type LimitState, limitStateView, validateLimits } from '../../shards/index.js';
import { type RouteDefinition, route } from '../route.js';
import type { RouteDeps } from './deps.js';

const TIER_NAME = /^[A-Za-z0-9_.:-]{1,64}$/;

export function adminRoutes(deps: RouteDeps): RouteDefinition[] {
  const { router, tiers } = deps;
  return [
    route({
      method: 'get',
      path: '/v1/admin/tiers',
      summary: 'Every tier with its limits',
      tag: 'admin',
      auth: 'admin',
      responses: { 200: { description: 'tiers', schema: S.TierList } },
      handle() {
        return { status: 200, body: { tiers: tiers.list() } };
      },
    }),
    route({
      method: 'put',
      path: '/v1/admin/tiers/{name}',
      summary: 'Create or replace a tier; active users follow within a second',
      tag: 'admin',
      auth: 'admin',
      body: S.TierBody,
      responses: { 200: { description: 'the tier', schema: S.Tier }, 400: { description: 'a bad tier name, or limits that do not make sense together' } },
      async handle({ params, body }) {
        const name = params.name!;
        if (!TIER_NAME.test(name)) throw new InvalidRequestError('a tier name is 1 to 64 letters, digits or "_.:-"');
        const problem = validateLimits(body.limits as Limit[]);
        if (problem !== null) throw new InvalidRequestError(`limits: ${problem}`);
        return { status: 200, body: await tiers.put(name, body.limits as Limit[], body.fail_open ?? false) };
      },
    }),
    route({
      method: 'get',
      path: '/v1/admin/users/{id}',
      summary: 'A user’s profile, block state, overrides and quota',
      tag: 'admin',
      auth: 'admin',
      responses: { 200: { description: 'the user', schema: S.AdminUser }, 404: { description: 'no such user' } },
      async handle({ params }) {
        const user = await router.user({ userId: params.id!, credential: { kind: 'trusted' }, op: 'admin.get', args: {} });
        return { status: 200, body: { ...adminView(user), ...deps.placement(user.id) } };
      },
    }),
    route({
      method: 'patch',
      path: '/v1/admin/users/{id}',
      summary: 'Change tier, block or unblock, set limit overrides',
      tag: 'admin',
      auth: 'admin',
      body: S.AdminUserPatch,
      responses: { 200: { description: 'the user', schema: S.AdminUser }, 404: { description: 'no such user' }, 422: { description: 'no such tier' } },
      async handle({ params, body }) {
        const user = await router.user({
          userId: params.id!,
          credential: { kind: 'trusted' },
          op: 'admin.update',
          args: body as { tier?: string; blocked?: boolean; overrides?: Limit[] },
        });
        return { status: 200, body: { ...adminView(user), ...deps.placement(user.id) } };
      },
    }),
    route({
      method: 'get',
      path: '/v1/admin/cluster',
      summary: 'Nodes and shard ownership',
      tag: 'admin',
      auth: 'admin',
      responses: { 200: { description: 'the cluster', schema: S.Cluster } },
      handle() {
        return { status: 200, body: deps.cluster() };
      },
    }),
    route({
      method: 'get',
      path: '/v1/admin/cluster/rates',
      summary: 'Each node’s quota decisions per second over the last 15 minutes, a point every 10 s',
      tag: 'admin',
      auth: 'admin',
      responses: { 200: { description: 'the rates, as this node keeps them', schema: S.ClusterRates } },
      handle() {
        return { status: 200, body: deps.rates() };
      },
    }),
  ];
}

function adminView<T extends { limits: LimitState[] }>(user: T): Omit<T, 'limits'> & { limits: unknown[] } {
  return { ...user, limits: user.limits.map(limitStateView) };
}
