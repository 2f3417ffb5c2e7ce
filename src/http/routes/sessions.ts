import { schemas as S } from '../../api/index.js';
import { type RouteDefinition, route } from '../route.js';
import type { RouteDeps } from './deps.js';

export function sessionRoutes(deps: RouteDeps): RouteDefinition[] {
  const { router, accounts, clock } = deps;
  return [
    route({
      method: 'post',
      path: '/v1/sessions',
      summary: 'Log in on a device: a session token',
      tag: 'sessions',
      auth: 'none',
      clientAddress: true,
      body: S.LoginBody,
      responses: {
        201: { description: 'logged in', schema: S.LoginReply },
        401: { description: 'wrong email or password (one answer for both)' },
        403: { description: 'the user is blocked' },
        429: { description: 'too many attempts from this address, or too many failed logins for this email', headers: ['Retry-After'] },
        503: { description: 'the database is unreachable or the node is shutting down', headers: ['Retry-After'] },
      },
      async handle({ body, ip, userAgent, isAdmin }) {
        if (!isAdmin) await accounts.admitAnonymous(ip);
        const login = { email: body.email, password: body.password, ip, userAgent, ...(body.device === undefined ? {} : { device: body.device }) };
        return { status: 201, body: await accounts.login(login, clock()) };
      },
    }),
    route({
      method: 'get',
      path: '/v1/sessions',
      summary: 'The caller’s logged-in devices',
      tag: 'sessions',
      auth: 'user',
      responses: { 200: { description: 'sessions', schema: S.SessionList } },
      async handle({ caller }) {
        return { status: 200, body: await router.user({ ...caller, op: 'sessions.list', args: {} }) };
      },
    }),
    route({
      method: 'delete',
      path: '/v1/sessions/{id}',
      summary: 'Log out one device',
      tag: 'sessions',
      auth: 'user',
      responses: { 204: { description: 'revoked: its token is refused from the next request on' }, 404: { description: 'no such session' } },
      async handle({ caller, params }) {
        await router.user({ ...caller, op: 'sessions.revoke', args: { id: params.id! } });
        return { status: 204 };
      },
    }),
    route({
      method: 'post',
      path: '/v1/sessions/logout-all',
      summary: 'Log out every device, optionally keeping this one',
      tag: 'sessions',
      auth: 'user',
      body: S.LogoutAllBody,
      bodyOptional: true,
      responses: { 200: { description: 'how many sessions ended', schema: S.Revoked } },
      async handle({ caller, body }) {
        return { status: 200, body: await router.user({ ...caller, op: 'sessions.revokeAll', args: { keepCurrent: body.keep_current ?? false } }) };
      },
    }),
  ];
}
