import { schemas as S } from '../../api/index.js';
import { ForbiddenError, type JsonObject } from '../../shards/index.js';
import { type RouteDefinition, route } from '../route.js';
import type { RouteDeps } from './deps.js';

export function userRoutes(deps: RouteDeps): RouteDefinition[] {
  const { router, accounts } = deps;
  return [
    route({
      method: 'post',
      path: '/v1/users',
      summary: 'Register a user (a tier may be chosen only with the admin token)',
      tag: 'users',
      auth: 'none',
      clientAddress: true,
      body: S.RegisterBody,
      responses: {
        201: { description: 'created', schema: S.User },
        403: { description: 'a tier was chosen without the admin token' },
        409: { description: 'the email is taken' },
        422: { description: 'no such tier' },
        429: { description: 'too many registrations from this address', headers: ['Retry-After'] },
        503: { description: 'the database is unreachable or the node is shutting down', headers: ['Retry-After'] },
      },
      async handle({ body, ip, isAdmin }) {
        if (body.tier !== undefined && !isAdmin) throw new ForbiddenError('choosing a tier needs the admin token');
        if (!isAdmin) await accounts.admitAnonymous(ip);
        return { status: 201, body: await accounts.register(body) };
      },
    }),
    route({
      method: 'get',
      path: '/v1/user/profile',
      summary: 'The caller’s profile with preferences',
      tag: 'users',
      auth: 'user',
      responses: { 200: { description: 'the profile', schema: S.Profile } },
      async handle({ caller }) {
        return { status: 200, body: await router.user({ ...caller, op: 'profile.get', args: {} }) };
      },
    }),
    route({
      method: 'patch',
      path: '/v1/user/profile',
      summary: 'Change name or email',
      tag: 'users',
      auth: 'user',
      body: S.ProfilePatch,
      responses: { 200: { description: 'the profile', schema: S.Profile }, 409: { description: 'the email is taken' } },
      async handle({ caller, body }) {
        return { status: 200, body: await router.user({ ...caller, op: 'profile.update', args: body }) };
      },
    }),
    route({
      method: 'get',
      path: '/v1/user/preferences',
      summary: 'The preferences document',
      tag: 'users',
      auth: 'user',
      responses: { 200: { description: 'the document', schema: S.Preferences } },
      async handle({ caller }) {
        return { status: 200, body: await router.user({ ...caller, op: 'preferences.get', args: {} }) };
      },
    }),
    route({
      method: 'patch',
      path: '/v1/user/preferences',
      summary: 'Apply a JSON Merge Patch (RFC 7396); at most 16 KiB once merged',
      tag: 'users',
      auth: 'user',
      body: S.MergePatch,
      responses: {
        200: { description: 'the merged document', schema: S.Preferences },
        413: { description: 'the body is over 64 KiB, or the merged document over 16 KiB' },
      },
      async handle({ caller, body }) {
        return { status: 200, body: await router.user({ ...caller, op: 'preferences.merge', args: { patch: body } }) };
      },
    }),
    route({
      method: 'put',
      path: '/v1/user/preferences',
      summary: 'Replace the preferences document',
      tag: 'users',
      auth: 'user',
      body: S.Preferences,
      responses: { 200: { description: 'the document', schema: S.Preferences }, 413: { description: 'the body is over 64 KiB, or the document over 16 KiB' } },
      async handle({ caller, body }) {
        return { status: 200, body: await router.user({ ...caller, op: 'preferences.put', args: { document: body as JsonObject } }) };
      },
    }),
  ];
}
