/** Reading one sample of the node's Prometheus exposition, for assertions. */
import type { Api } from './http.js';

/**
 * The value of `name` with exactly these labels (`{}` for none), 0 when the series is absent
 * (a counter that never moved is not always exposed).
 */
export async function metric(api: Api, name: string, labels: Record<string, string> = {}): Promise<number> {
  const { text } = await api('GET', '/metrics');
  const wanted = Object.entries(labels).map(([key, value]) => `${key}="${value}"`);
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (match === null || match[1] !== name) continue;
    const present = match[2] === undefined || match[2] === '' ? [] : match[2].split(',');
    if (present.length === wanted.length && wanted.every((label) => present.includes(label))) return Number(match[3]);
  }
  return 0;
}
