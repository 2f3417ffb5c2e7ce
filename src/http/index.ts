/** The HTTP edge: uWebSockets.js server, routes, auth, problem details, OpenAPI. */
import { HttpServer, type HttpServerOptions } from './app.js';
import type { Credentials } from './auth.js';
import { openApiDocument } from './openapi.js';
import type { RouteDefinition } from './route.js';
import { adminRoutes } from './routes/admin.js';
import { consoleRoutes } from './routes/console.js';
import type { RouteDeps } from './routes/deps.js';
import { keyRoutes } from './routes/keys.js';
import { opsRoutes } from './routes/ops.js';
import { quotaRoutes } from './routes/quota.js';
import { serviceRoutes } from './routes/service.js';
import { sessionRoutes } from './routes/sessions.js';
import { usageRoutes } from './routes/usage.js';
import { userRoutes } from './routes/users.js';

export { HttpServer } from './app.js';
export { ListenError, probeListen } from './listen.js';
export type { HttpMetrics } from './metrics.js';

export type { HealthReport, RouteDeps } from './routes/deps.js';

/** The routes; the service routes check the session tokens and API keys in their bodies with the edge's own credentials. */
function buildRoutes(deps: RouteDeps, credentials: Credentials, version: string): RouteDefinition[] {
  let document: string | undefined;
  const routes: RouteDefinition[] = [
    ...userRoutes(deps),
    ...sessionRoutes(deps),
    ...keyRoutes(deps),
    ...quotaRoutes(deps),
    ...usageRoutes(deps),
    ...serviceRoutes(deps, credentials),
    ...adminRoutes(deps),
    ...consoleRoutes(),
  ];
  routes.push(...opsRoutes(deps, () => (document ??= JSON.stringify(openApiDocument(routes, version)))));
  return routes;
}

export function createHttpServer(deps: RouteDeps, options: Omit<HttpServerOptions, 'routes'> & { version: string }): HttpServer {
  return new HttpServer({ ...options, routes: buildRoutes(deps, options.credentials, options.version) });
}
