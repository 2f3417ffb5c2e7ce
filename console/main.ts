/**
 * The cluster console, served by every node at /console. The admin token is asked for once
 * and kept in this page's memory only (never in storage or a cookie). Every second the page
 * reads GET /v1/admin/cluster from the node that served it and draws the nodes, the
 * 1024-shard map coloured by owner (moving shards outlined) and the moves in progress; a
 * lookup shows a user's shard, owner and quota.
 */

// The view's own file, not src/api's front door: the page is type-checked without Node's types.
import type { ClusterView } from '../src/api/clusterView.js';

const REFRESH_MS = 1000;
const PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];

let token: string | null = null;
let timer: number | undefined;
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
  $('app').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = why;
}

async function lookUp(id: string): Promise<void> {
  const { status, body } = await api<Record<string, unknown>>(`/v1/admin/users/${encodeURIComponent(id)}`);
  const out = $('user-result');
  if (status !== 200) {
    out.textContent = String((body as { detail?: string }).detail ?? `answered ${status}`);
    return;
  }
  const limits = (body.limits as { name: string; limit: number; remaining: number }[]).map((l) => `${l.name}: ${l.remaining}/${l.limit} left`).join(', ');
  out.textContent = `${body.email} (${body.tier}${body.blocked ? ', blocked' : ''}) on shard ${body.shard}, owner ${body.owner ?? 'none'}; ${limits}`;
}

$<HTMLFormElement>('login-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const field = $<HTMLInputElement>('token');
  token = field.value;
  field.value = '';
  $('login').hidden = true;
  $('app').hidden = false;
  void refresh();
  timer = window.setInterval(() => void refresh(), REFRESH_MS);
});

$<HTMLFormElement>('user-form').addEventListener('submit', (event) => {
  event.preventDefault();
  void lookUp($<HTMLInputElement>('user-id').value.trim());
});
