/**
 * GET /console: the cluster console, one HTML page with its script inlined (the bundle Vite
 * builds from `console/` into `dist/console/console.js`, with the chart library and its
 * stylesheet), so that it needs nothing from a CDN or from another route. The page asks for
 * the admin token and keeps it in memory; the route itself serves no data.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { schemas as S } from '../../api/index.js';
import { type RouteDefinition, route } from '../route.js';

/** Where the bundle is: beside the compiled node (dist/console), or in dist/ when run from source (tests). */
const BUNDLES = [join(import.meta.dirname, '../../../console/console.js'), join(import.meta.dirname, '../../../dist/console/console.js')];

const NOT_BUILT =
  '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Tally cluster console</title></head>' +
  '<body><h1>Tally cluster console</h1><p>This build has no console bundle: run <code>npm run build</code>.</p></body></html>';

const STYLE = `
body { font: 14px system-ui, sans-serif; margin: 1.5rem; color: #222; }
h1 { font-size: 1.3rem; } h2 { font-size: 1.05rem; margin-top: 1.5rem; }
table { border-collapse: collapse; } td, th { padding: .25rem .75rem; text-align: left; border-bottom: 1px solid #eee; }
#grid { display: grid; grid-template-columns: repeat(32, 14px); gap: 2px; }
.cell { width: 14px; height: 14px; border-radius: 2px; }
.cell.moving { outline: 2px solid #000; outline-offset: -2px; }
.swatch { font-size: 1.1rem; } .muted { color: #777; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
.chart { margin: .5rem 0; } .chart .u-legend td, .chart .u-legend th { border: 0; padding: 0 .25rem; }
`;

function page(script: string): string {
  // A script's text may not contain "</script": "<\\/" reads the same to JavaScript.
  const safe = script.replaceAll('</', '<\\/');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Tally cluster console</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>${STYLE}</style></head>
<body>
<h1>Tally cluster console</h1>
<section id="login"><form id="login-form"><label>Admin token <input id="token" type="password" autocomplete="off" required></label>
<button type="submit">Sign in</button></form><p id="login-error" class="muted"></p></section>
<section id="app" hidden>
<p id="summary"></p><p id="updated" class="muted"></p>
<h2>Nodes</h2><table id="nodes"><thead><tr><th>node</th><th>status</th><th>shards</th><th>lease age</th><th>requests</th></tr></thead><tbody></tbody></table>
<h2>Decisions per second, last 15 minutes</h2><div id="rates-chart" class="chart"></div><p id="rates-note" class="muted"></p>
<h2>Shard map</h2><div id="grid"></div>
<h2>Moves in progress</h2><ul id="moves"></ul>
<h2>User</h2><form id="user-form"><input id="user-id" placeholder="user id" required> <button type="submit">Look up</button></form><p id="user-result"></p>
<div id="user-usage" hidden><h3>Usage, last 30 days</h3><div id="usage-chart" class="chart"></div><p id="usage-empty" class="muted" hidden></p></div>
<h2>Top users this month <span id="top-month" class="muted"></span></h2>
<table id="top-users"><thead><tr><th>user</th><th>tier</th><th>resource</th><th>amount</th><th>requests</th><th>denied</th></tr></thead><tbody></tbody></table>
</section>
<script>${safe}</script>
</body></html>`;
}

export function consoleRoutes(): RouteDefinition[] {
  let html: string | null = null;
  return [
    route({
      method: 'get',
      path: '/console',
      summary: 'The cluster console (an HTML page; it asks for the admin token)',
      tag: 'operations',
      auth: 'none',
      responses: {
        200: { description: 'the page (or, in a build without the bundle, a page saying so)', schema: S.Text, mediaType: 'text/html; charset=utf-8' },
      },
      handle() {
        if (html === null) {
          // A missing bundle is not cached: a later `npm run build` is picked up without a restart.
          const bundle = BUNDLES.find((path) => existsSync(path));
          if (bundle === undefined) return { status: 200, text: NOT_BUILT, contentType: 'text/html; charset=utf-8' };
          html = page(readFileSync(bundle, 'utf8'));
        }
        return { status: 200, text: html, contentType: 'text/html; charset=utf-8' };
      },
    }),
  ];
}
