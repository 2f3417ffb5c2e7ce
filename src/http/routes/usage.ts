/**
 * The usage history over HTTP: a user's own (`/v1/quota/usage`), the admin's across users,
 * the month's export for billing (streamed), and the month's top users (for the console).
 * The query is read and answered by src/api/usage.ts, as the NATS API reads it.
 */
import { EXPORT_CSV_HEADER, exportFormat, exportMonth, exportText, schemas as S, type UsageScope, usagePage, usageQuery } from '../../api/index.js';
import { InvalidRequestError } from '../../shards/index.js';
import { type QueryParameter, type RouteDefinition, route } from '../route.js';
import type { RouteDeps } from './deps.js';

const RANGE: readonly QueryParameter[] = [
  { name: 'start', required: true, description: 'RFC 3339: the first bucket is the one this falls in' },
  { name: 'end', description: 'RFC 3339, exclusive: the last bucket is the one just before it; default now' },
  { name: 'bucket', description: '`1h` or `1d` (UTC); default `1d`', enum: ['1h', '1d'] },
  { name: 'page', description: 'the `next_page` of the previous answer' },
  { name: 'limit', description: 'results per page, 1 to 10,000; default 1,000' },
];
const MONTH: QueryParameter = { name: 'month', required: true, description: 'YYYY-MM (UTC)' };
const TOP_LIMIT = 10;
const MAX_TOP_LIMIT = 100;

export function usageRoutes(deps: RouteDeps): RouteDefinition[] {
  const { router, usage, clock } = deps;
  const page = (query: Readonly<Record<string, string>>, scope: UsageScope) => usagePage(usage, usageQuery(query, scope, clock()));
  return [
    route({
      method: 'get',
      path: '/v1/quota/usage',
      summary: 'The caller’s usage by bucket and resource (and key), as of the last write-behind flush',
      tag: 'quota',
      auth: 'user',
      apiKeys: true,
      query: [...RANGE, { name: 'group_by', description: 'comma-separated, of `resource` (always) and `key`' }],
      responses: {
        200: { description: 'a page of usage', schema: S.UsagePage },
        400: { description: 'a parameter is missing, unknown or malformed' },
      },
      async handle({ caller, query }) {
        // The owner checks the credential (a key needs the quota:read scope): usage is read from Postgres.
        const verified = await router.user({ ...caller, op: 'auth.verify', args: {} });
        return { status: 200, body: await page(query, { kind: 'user', userId: verified.userId }) };
      },
    }),
    route({
      method: 'get',
      path: '/v1/admin/usage',
      summary: 'Usage across users by bucket and resource (and user, tier)',
      tag: 'admin',
      auth: 'admin',
      query: [
        ...RANGE,
        { name: 'group_by', description: 'comma-separated, of `resource` (always), `user` and `tier`' },
        { name: 'user_id', description: 'only this user' },
        { name: 'tier', description: 'only users on this tier now' },
      ],
      responses: {
        200: { description: 'a page of usage', schema: S.UsagePage },
        400: { description: 'a parameter is missing, unknown or malformed' },
      },
      async handle({ query }) {
        return { status: 200, body: await page(query, { kind: 'admin' }) };
      },
    }),
    route({
      method: 'get',
      path: '/v1/admin/usage/export',
      summary: 'A month of usage for billing: one line per user, resource and day, streamed',
      tag: 'admin',
      auth: 'admin',
      query: [MONTH, { name: 'format', description: '`csv` (default) or `ndjson`', enum: ['csv', 'ndjson'] }],
      responses: {
        200: {
          description: `\`${EXPORT_CSV_HEADER.trim()}\` (CSV with a header line, RFC 4180) or one JSON object per line; \`Tally-Export-Users\` says how many users are paged over`,
          mediaType: 'text/csv',
        },
        400: { description: 'a parameter is missing, unknown or malformed' },
      },
      async handle({ query }) {
        onlyParameters(query, ['month', 'format']);
        const month = exportMonth(query.month);
        const format = exportFormat(query.format);
        const users = await usage.countUsers();
        // The first page is read before the answer's head: a database that cannot answer
        // gets a 503, not a cut 200.
        const pages = usage.exportUsage(month)[Symbol.asyncIterator]();
        const first = await pages.next();
        return {
          status: 200,
          contentType: format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson',
          headers: {
            'content-disposition': `attachment; filename="usage-${query.month}.${format}"`,
            'tally-export-users': String(users),
          },
          async stream(write) {
            if (format === 'csv') await write(EXPORT_CSV_HEADER);
            for (let page = first; page.done !== true; page = await pages.next()) await write(exportText(page.value, format));
          },
        };
      },
    }),
    route({
      method: 'get',
      path: '/v1/admin/usage/top',
      summary: 'The users who used the most of each resource in a month',
      tag: 'admin',
      auth: 'admin',
      query: [MONTH, { name: 'limit', description: `users per resource, 1 to ${MAX_TOP_LIMIT}; default ${TOP_LIMIT}` }],
      responses: { 200: { description: 'the top users', schema: S.TopUsers }, 400: { description: 'a parameter is missing or malformed' } },
      async handle({ query }) {
        onlyParameters(query, ['month', 'limit']);
        const month = exportMonth(query.month);
        const limit = query.limit === undefined ? TOP_LIMIT : /^\d{1,3}$/.test(query.limit) ? Number(query.limit) : Number.NaN;
        if (!(limit >= 1 && limit <= MAX_TOP_LIMIT)) {
          throw new InvalidRequestError(`\`limit\` is a whole number from 1 to ${MAX_TOP_LIMIT}`);
        }
        const users = await usage.topUsers(month, limit);
        return {
          status: 200,
          body: {
            month: query.month,
            users: users.map((user) => ({
              user_id: user.userId,
              tier: user.tier,
              resource: user.resource,
              amount: user.amount,
              requests: user.requests,
              denied: user.denied,
            })),
          },
        };
      },
    }),
  ];
}

function onlyParameters(query: Readonly<Record<string, string>>, allowed: readonly string[]): void {
  for (const name of Object.keys(query)) {
    if (!allowed.includes(name)) throw new InvalidRequestError(`unknown parameter "${name}" (use ${allowed.join(', ')})`);
  }
}
