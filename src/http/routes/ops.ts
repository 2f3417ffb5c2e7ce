import { schemas as S } from '../../api/index.js';
import { type RouteDefinition, route } from '../route.js';
import type { RouteDeps } from './deps.js';

export function opsRoutes(deps: RouteDeps, openapi: () => string): RouteDefinition[] {
  return [
    route({
      method: 'get',
      path: '/health/live',
      summary: 'The process runs',
      tag: 'operations',
      auth: 'none',
      responses: { 200: { description: 'alive', schema: S.Live } },
      handle() {
        return { status: 200, body: { status: 'ok' } };
      },
    }),
    route({
      method: 'get',
      path: '/health/ready',
      summary: 'The node can take requests (each check listed; what does not decide it, under observed)',
      tag: 'operations',
      auth: 'none',
      responses: {
        200: { description: 'ready: every check is ok', schema: S.Health },
        503: { description: 'not ready: the failing checks say why (not a problem document)', schema: S.Health },
      },
      async handle() {
        const report = await deps.health();
        return {
          status: report.ready ? 200 : 503,
          body: {
            status: report.ready ? 'ready' : 'not ready',
            checks: report.checks,
            ...(report.observed === undefined ? {} : { observed: report.observed }),
          },
        };
      },
    }),
    route({
      method: 'get',
      path: '/metrics',
      summary: 'Prometheus metrics',
      tag: 'operations',
      auth: 'none',
      responses: { 200: { description: 'the Prometheus text format', schema: S.Text, mediaType: 'text/plain; version=0.0.4; charset=utf-8' } },
      async handle() {
        const { contentType, text } = await deps.metrics();
        return { status: 200, text, contentType };
      },
    }),
    route({
      method: 'get',
      path: '/openapi.json',
      summary: 'This document',
      tag: 'operations',
      auth: 'none',
      responses: { 200: { description: 'OpenAPI 3.1', schema: S.AnyObject } },
      handle() {
        return { status: 200, text: openapi(), contentType: 'application/json' };
      },
    }),
  ];
}
