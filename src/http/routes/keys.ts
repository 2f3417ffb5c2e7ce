import { schemas as S } from '../../api/index.js';
import { InvalidRequestError } from '../../shards/index.js';
import { type RouteDefinition, route } from '../route.js';
import type { RouteDeps } from './deps.js';

export function keyRoutes(deps: RouteDeps): RouteDefinition[] {
  const { router, clock, apiKeys } = deps;
  return [
    route({
      method: 'post',
      path: '/v1/keys',
      summary: 'Create an API key (the key is shown only in this answer)',
      tag: 'keys',
      auth: 'user',
      body: S.KeyCreateBody,
      bodyOptional: true,
      responses: {
        201: { description: 'created', schema: S.CreatedKey },
        400: { description: 'the body does not match the schema, or expires_at is not in the future' },
      },
      async handle({ caller, body }) {
        const expiresAt = body.expires_at === undefined ? null : Date.parse(body.expires_at);
        if (expiresAt !== null && expiresAt <= clock()) throw new InvalidRequestError('expires_at must be in the future');
        const issued = apiKeys.issue(caller.userId);
        const created = await router.user({
          ...caller,
          op: 'keys.create',
          args: { id: issued.keyId, prefix: issued.prefix, hash: issued.hash, name: body.name ?? null, scopes: body.scopes ?? ['quota'], expiresAt },
        });
        const { last_used_at: _unused, ...shown } = created;
        return { status: 201, body: { ...shown, key: issued.key } };
      },
    }),
    route({
      method: 'get',
      path: '/v1/keys',
      summary: 'The caller’s API keys (never the keys themselves)',
      tag: 'keys',
      auth: 'user',
      responses: { 200: { description: 'keys', schema: S.KeyList } },
      async handle({ caller }) {
        return { status: 200, body: await router.user({ ...caller, op: 'keys.list', args: {} }) };
      },
    }),
    route({
      method: 'delete',
      path: '/v1/keys/{id}',
      summary: 'Delete an API key',
      tag: 'keys',
      auth: 'user',
      responses: { 204: { description: 'deleted: refused from the next request on' }, 404: { description: 'no such key' } },
      async handle({ caller, params }) {
        await router.user({ ...caller, op: 'keys.delete', args: { id: params.id! } });
        return { status: 204 };
      },
    }),
  ];
}
