/// <reference types="vite/client" />
/**
 * The cluster console, served by every node at /console. The admin token is asked for once
 * and kept in this page's memory only (never in storage or a cookie). Every second the page
 * reads GET /v1/admin/cluster from the node that served it and draws the nodes, the
 * 1024-shard map coloured by owner (moving shards outlined) and the moves in progress; a
 * lookup shows a user's shard, owner and quota, and a chart of the user's usage over the last
 * 30 days. Every 10 s it draws each node's quota decisions per second over the last 15 minutes (kept
 * by the node: GET /v1/admin/cluster/rates) and this month's top users. The charts are uPlot,
 * bundled into the page with its stylesheet: nothing is fetched from elsewhere.
 */

import uPlot from 'uplot';
import uPlotStyle from 'uplot/dist/uPlot.min.css?inline';
// The view's own file, not src/api's front door: the page is type-checked without Node's types.
import type { ClusterRates, ClusterView } from '../src/api/clusterView.js';

const REFRESH_MS = 1000;
/** The rates and the top users: the nodes sample their rates every 10 s. */
const SLOW_REFRESH_MS = 10_000;
const DAY_S = 86_400;
const USAGE_DAYS = 30;
const RATES_WINDOW_S = 15 * 60;
const CHART_HEIGHT = 240;
const MAX_CHART_WIDTH = 960;
const PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];

let token: string | null = null;
let timer: number | undefined;
let slowTimer: number | undefined;
let usageChart: uPlot | null = null;
let ratesChart: uPlot | null = null;
/** The node ids the rates chart has series for, in order: another set makes a new chart. */
let ratesSeries = '';
/** Answers to an earlier lookup that arrive after a later one are dropped. */
let lookups = 0;
const colours = new Map<string, string>();
/** Each node's request count and when this page first saw it at that value: rates between heartbeats. */
const counted = new Map<string, { requests: number; at: number; rate: number }>();

function rateOf(node: string, requests: number | undefined): string {
  if (requests === undefined) return '-';
  const now = performance.now();
  const before = counted.get(node);
  if (before === undefined || requests < before.requests) {
    counted.set(node, { requests, at: now, rate: 0 });
    return '…';
  }
  if (requests > before.requests) counted.set(node, { requests, at: now, rate: ((requests - before.requests) * 1000) / (now - before.at) });
  return `${Math.round(counted.get(node)!.rate)}/s`;
}

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

function colourOf(node: string): string {
  let colour = colours.get(node);
  if (colour === undefined) {
    colour = PALETTE[colours.size % PALETTE.length]!;
    colours.set(node, colour);
  }
  return colour;
}

async function api<T>(path: string): Promise<{ status: number; body: T }> {
  const response = await fetch(path, { headers: { authorization: `Bearer ${token}` } });
  return { status: response.status, body: (await response.json()) as T };
}

function text(tag: string, content: string, attributes: Record<string, string> = {}): HTMLElement {
  const element = document.createElement(tag);
  element.textContent = content;
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
  return element;
}

function drawNodes(view: ClusterView): void {
  const body = $('nodes').querySelector('tbody')!;
  body.replaceChildren(
    ...view.nodes.map((node) => {
      const row = document.createElement('tr');
      row.dataset.node = node.id;
      const swatch = text('span', '■', { class: 'swatch', style: `color:${colourOf(node.id)}` });
      const id = document.createElement('td');
      id.append(swatch, ` ${node.id}${node.id === view.leader ? ' (coordinator)' : ''}${node.self ? ' (this node)' : ''}`);
      const lease = node.lease_age_ms === undefined ? '-' : `${node.lease_age_ms} ms`;
      row.append(id, text('td', node.status), text('td', String(node.shards)), text('td', lease), text('td', rateOf(node.id, node.requests)));
      return row;
    }),
  );
}

function drawGrid(view: ClusterView): void {
  const grid = $('grid');
  const owners = view.shards.owners ?? [];
  const moving = new Set(view.shards.moving);
  if (grid.childElementCount !== view.shards.count) {
    grid.replaceChildren(...Array.from({ length: view.shards.count }, (_, shard) => text('div', '', { class: 'cell', title: `shard ${shard}` })));
  }
  const cells = grid.children;
  for (let shard = 0; shard < view.shards.count; shard++) {
    const cell = cells[shard] as HTMLElement;
    const owner = owners[shard] ?? null;
    cell.dataset.owner = owner ?? '';
    cell.style.background = owner === null ? '#ddd' : colourOf(owner);
    cell.classList.toggle('moving', moving.has(shard));
    cell.title = `shard ${shard}: ${owner ?? 'no owner'}${moving.has(shard) ? ' (moving)' : ''}`;
  }
  const owned = new Set(owners.filter((owner): owner is string => owner !== null));
  $('summary').textContent = `${view.shards.count} shards over ${owned.size} owners; ${moving.size} moving`;
}

function drawMoves(view: ClusterView): void {
  const moves = view.shards.moves ?? [];
  $('moves').replaceChildren(
    ...(moves.length === 0 ? [text('li', 'none')] : moves.slice(0, 50).map((move) => text('li', `shard ${move.shard}: ${move.from} → ${move.to}`))),
  );
}

async function refresh(): Promise<void> {
  try {
    const { status, body } = await api<ClusterView>('/v1/admin/cluster');
    if (status === 401 || status === 403) return signOut('that token is not the admin token');
    drawNodes(body);
    drawGrid(body);
    drawMoves(body);
    $('updated').textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    $('updated').textContent = `this node does not answer: ${String(error)}`;
  }
}

function signOut(why: string): void {
  token = null;
  window.clearInterval(timer);
  window.clearInterval(slowTimer);
  $('app').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = why;
}

async function lookUp(id: string): Promise<void> {
  const lookup = ++lookups;
  const { status, body } = await api<Record<string, unknown>>(`/v1/admin/users/${encodeURIComponent(id)}`);
  if (lookup !== lookups) return;
  const out = $('user-result');
  if (status !== 200) {
    out.textContent = String((body as { detail?: string }).detail ?? `answered ${status}`);
    $('user-usage').hidden = true;
    return;
  }
  const limits = (body.limits as { name: string; limit: number; remaining: number }[]).map((l) => `${l.name}: ${l.remaining}/${l.limit} left`).join(', ');
  out.textContent = `${body.email} (${body.tier}${body.blocked ? ', blocked' : ''}) on shard ${body.shard}, owner ${body.owner ?? 'none'}; ${limits}`;
  await Promise.all([drawUsage(id, lookup), refreshTopUsers()]);
}

// ---- charts (uPlot) ----------------------------------------------------------------------

const count = new Intl.NumberFormat('en');
const compact = new Intl.NumberFormat('en', { notation: 'compact', maximumFractionDigits: 1 });

function chartWidth(): number {
  return Math.max(320, Math.min(MAX_CHART_WIDTH, $('app').clientWidth));
}

/** A y axis: its label, values in compact notation, in the series' colour when there are several scales. */
function yAxis(label: string, options: uPlot.Axis = {}): uPlot.Axis {
  return { label, size: 56, values: (_u, splits) => splits.map((value) => compact.format(value)), ...options };
}

interface UsageResult {
  resource: string;
  amount: number;
  requests: number;
  denied: number;
}

interface UsagePage {
  data: { start: string; results: UsageResult[] }[];
  next_page: string | null;
}

/** A user's usage by UTC day and resource over the last 30 days, all pages of it. */
async function usageByDay(id: string, first: number): Promise<Map<string, number[]> | string> {
  const start = new Date(first * 1000).toISOString();
  const end = new Date((first + USAGE_DAYS * DAY_S) * 1000).toISOString();
  const byResource = new Map<string, number[]>();
  let page: string | null = null;
  do {
    const query: string = `start=${start}&end=${end}&bucket=1d&group_by=user&user_id=${encodeURIComponent(id)}${page === null ? '' : `&page=${encodeURIComponent(page)}`}`;
    const { status, body } = await api<UsagePage & { detail?: string }>(`/v1/admin/usage?${query}`);
    if (status !== 200) return `usage not available: ${body.detail ?? `answered ${status}`}`;
    for (const bucket of body.data) {
      const day = Math.round((Date.parse(bucket.start) / 1000 - first) / DAY_S);
      if (day < 0 || day >= USAGE_DAYS) continue;
      for (const result of bucket.results) {
        const amounts = byResource.get(result.resource) ?? new Array<number>(USAGE_DAYS).fill(0);
        amounts[day]! += result.amount;
        byResource.set(result.resource, amounts);
      }
    }
    page = body.next_page;
  } while (page !== null);
  return byResource;
}

/**
 * The user's usage over the last 30 UTC days: a group of bars per day, one bar per resource.
 * Resources are counted in different units (requests, tokens…), so each has its own scale and
 * axis, in its colour. The legend shows the hovered day's amounts, else the 30 days' totals.
 */
async function drawUsage(id: string, lookup: number): Promise<void> {
  const today = Math.floor(Date.now() / 1000 / DAY_S) * DAY_S;
  const first = today - (USAGE_DAYS - 1) * DAY_S;
  const usage = await usageByDay(id, first);
  if (lookup !== lookups) return;
  usageChart?.destroy();
  usageChart = null;
  $('user-usage').hidden = false;
  const empty = $('usage-empty');
  if (typeof usage === 'string' || usage.size === 0) {
    empty.textContent = typeof usage === 'string' ? usage : 'no usage in the last 30 days';
    empty.hidden = false;
    return;
  }
  empty.hidden = true;
  const resources = [...usage.keys()].sort();
  // Each day's bars centred on its noon, together 80 % of the day wide.
  const days = Array.from({ length: USAGE_DAYS }, (_, day) => first + day * DAY_S + DAY_S / 2);
  const groupS = DAY_S * 0.8;
  const barS = groupS / resources.length;
  const utc = (seconds: number) => new Date(seconds * 1000).toISOString().slice(0, 10);
  const series: uPlot.Series[] = resources.map((resource, i) => {
    const total = usage.get(resource)!.reduce((sum, amount) => sum + amount, 0);
    return {
      label: resource,
      scale: `resource:${resource}`,
      fill: PALETTE[i % PALETTE.length],
      stroke: PALETTE[i % PALETTE.length],
      width: 0,
      points: { show: false },
      value: (_u, value, _series, index) => (index === null ? `${count.format(total)} in 30 days` : count.format(value ?? 0)),
      paths: uPlot.paths.bars!({
        disp: {
          x0: { unit: 1, values: (u) => (u.data[0] as number[]).map((x) => x - groupS / 2 + i * barS) },
          size: { unit: 1, values: (u) => (u.data[0] as number[]).map(() => barS * 0.9) },
        },
      }),
    };
  });
  const scales: uPlot.Scales = { x: { time: true, range: () => [first, first + USAGE_DAYS * DAY_S] } };
  for (const resource of resources) scales[`resource:${resource}`] = { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] };
  usageChart = new uPlot(
    {
      width: chartWidth(),
      height: CHART_HEIGHT,
      tzDate: (seconds) => uPlot.tzDate(new Date(seconds * 1000), 'Etc/UTC'),
      scales,
      series: [{ label: 'day (UTC)', value: (_u, value) => (value === null ? 'last 30 days' : utc(value)) }, ...series],
      axes: [
        { label: 'day (UTC)', values: (_u, splits) => splits.map((split) => utc(split).slice(5)) },
        ...resources.map((resource, i) =>
          yAxis(resource, {
            scale: `resource:${resource}`,
            side: i % 2 === 0 ? 3 : 1,
            stroke: PALETTE[i % PALETTE.length],
            grid: { show: i === 0 },
          }),
        ),
      ],
      cursor: { points: { show: false } },
    },
    [days, ...resources.map((resource) => usage.get(resource)!)],
    $('usage-chart'),
  );
}

/** Each node's quota decisions per second over the last 15 minutes, one line per node in its colour. */
function drawRates(rates: ClusterRates): void {
  const times = [...new Set(rates.nodes.flatMap((node) => node.points.map((point) => Date.parse(point.at) / 1000)))].sort((a, b) => a - b);
  const index = new Map(times.map((time, i) => [time, i]));
  const lines = rates.nodes.map((node) => {
    const line = new Array<number | null>(times.length).fill(null);
    for (const point of node.points) line[index.get(Date.parse(point.at) / 1000)!] = point.per_second;
    return line;
  });
  const data: uPlot.AlignedData = [times, ...lines];
  const points = rates.nodes.reduce((sum, node) => sum + node.points.length, 0);
  // The longest line's points: what a test waits for before it looks.
  $('rates-chart').dataset.points = String(Math.max(0, ...rates.nodes.map((node) => node.points.length)));
  $('rates-note').textContent =
    points === 0 ? `no points yet: a node's first comes ${rates.interval_ms / 1000} s after it starts` : `a point every ${rates.interval_ms / 1000} s`;
  const ids = rates.nodes.map((node) => node.id).join('\n');
  if (ratesChart !== null && ids === ratesSeries) {
    ratesChart.setData(data);
    return;
  }
  ratesChart?.destroy();
  ratesSeries = ids;
  ratesChart = new uPlot(
    {
      width: chartWidth(),
      height: CHART_HEIGHT,
      // The last 15 minutes, up to now, whatever points there are.
      scales: {
        x: { time: true, range: () => [Date.now() / 1000 - RATES_WINDOW_S, Date.now() / 1000] },
        y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] },
      },
      series: [
        { label: 'time', value: (_u, value) => (value === null ? 'last 15 minutes' : new Date(value * 1000).toLocaleTimeString()) },
        ...rates.nodes.map(
          (node): uPlot.Series => ({
            label: node.id,
            stroke: colourOf(node.id),
            width: 2,
            points: { size: 6 },
            value: (u, value, series, at) => {
              if (at !== null) return value === null ? '–' : `${count.format(value)}/s`;
              const line = u.data[series] as (number | null)[];
              const latest = line.findLast((v) => v !== null);
              return latest === undefined || latest === null ? '–' : `${count.format(latest)}/s now`;
            },
          }),
        ),
      ],
      axes: [{ label: 'time' }, yAxis('decisions per second')],
    },
    data,
    $('rates-chart'),
  );
}

interface TopUsers {
  month: string;
  users: { user_id: string; tier: string; resource: string; amount: number; requests: number; denied: number }[];
}

/** This month's top users (UTC), by resource, as the usage history has them. */
async function refreshTopUsers(): Promise<void> {
  const month = new Date().toISOString().slice(0, 7);
  const { status, body } = await api<TopUsers & { detail?: string }>(`/v1/admin/usage/top?month=${month}&limit=10`);
  const rows = $('top-users').querySelector('tbody')!;
  if (status !== 200) {
    rows.replaceChildren(text('tr', ''));
    rows.firstElementChild!.append(text('td', `not available: ${body.detail ?? `answered ${status}`}`, { colspan: '6', class: 'muted' }));
    return;
  }
  $('top-month').textContent = body.month;
  if (body.users.length === 0) {
    rows.replaceChildren(text('tr', ''));
    rows.firstElementChild!.append(text('td', 'no usage this month', { colspan: '6', class: 'muted' }));
    return;
  }
  rows.replaceChildren(
    ...body.users.map((user) => {
      const row = document.createElement('tr');
      row.dataset.user = user.user_id;
      const id = document.createElement('td');
      const link = text('a', user.user_id, { href: '#user-form', title: 'look this user up' });
      link.addEventListener('click', () => {
        $<HTMLInputElement>('user-id').value = user.user_id;
        void lookUp(user.user_id);
      });
      id.append(link);
      const number = (value: number) => text('td', count.format(value), { class: 'number' });
      row.append(id, text('td', user.tier), text('td', user.resource), number(user.amount), number(user.requests), number(user.denied));
      return row;
    }),
  );
}

async function refreshSlow(): Promise<void> {
  try {
    const { status, body } = await api<ClusterRates>('/v1/admin/cluster/rates');
    if (status === 200) drawRates(body);
    await refreshTopUsers();
  } catch (error) {
    $('rates-note').textContent = `this node does not answer: ${String(error)}`;
  }
}

const style = document.createElement('style');
style.textContent = uPlotStyle;
document.head.append(style);

window.addEventListener('resize', () => {
  for (const chart of [usageChart, ratesChart]) chart?.setSize({ width: chartWidth(), height: CHART_HEIGHT });
});

$<HTMLFormElement>('login-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const field = $<HTMLInputElement>('token');
  token = field.value;
  field.value = '';
  $('login').hidden = true;
  $('app').hidden = false;
  void refresh();
  timer = window.setInterval(() => void refresh(), REFRESH_MS);
  void refreshSlow();
  slowTimer = window.setInterval(() => void refreshSlow(), SLOW_REFRESH_MS);
});

$<HTMLFormElement>('user-form').addEventListener('submit', (event) => {
  event.preventDefault();
  void lookUp($<HTMLInputElement>('user-id').value.trim());
});
