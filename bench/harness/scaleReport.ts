/** The scale part's result and its table; free of `src/` imports, so run.ts can print it. */

export interface Phase {
  name: string;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  requests: number;
  non2xx: number;
  socketErrors: number;
  lagMaxMs: number;
  lagP99Ms: number;
  flushes: number;
  flushMeanMs: number;
  rowsPerFlush: number;
  /** Minor (scavenge) GC time per request, µs: should not grow with the users held. */
  minorGcUsPerRequest: number;
  /** Cold pass only: users activated per second while the pass ran. */
  activationsPerSecond?: number;
  /** The node's CPU per request (µs); undefined when it cannot be read. */
  nodeCpuUsPerRequest?: number | undefined;
  /**
   * PostgreSQL's CPU over the phase (every postgres process on this machine: scale.ts) per
   * row the flusher wrote, µs, and in all, s. It counts whatever the server did meanwhile:
   * loads, last-use writes and autovacuum as well as the flushes.
   */
  postgresCpuUsPerRow?: number | undefined;
  postgresCpuSeconds?: number | undefined;
  /** The same seconds by kind of process (`postgresSpentByKind` in harness/cpu.ts): what of it the statements took. */
  postgresCpuSecondsByKind?: Record<string, number> | undefined;
  /** Cold pass only: PostgreSQL's CPU per user activated, µs (the loads, and the writes they led to). */
  postgresCpuUsPerActivation?: number;
}

export interface ScaleResult {
  users: number;
  /** The users of the comparison phases. */
  small: number;
  idleSeconds: number;
  seedSeconds: number;
  phases: Phase[];
  activeAfterWarm: number;
  heapPerUserBytes: number;
  /** The same difference without collecting first: what the heap holds as it runs. */
  heapPerUserNoGcBytes?: number;
  lost: { evicted: number; passivated: number; refused: number; neverLoaded: number };
}

const figure = (value: number | undefined, digits: number) => (value === undefined ? '' : value.toFixed(digits));

/** `perUnit` (the phase's PostgreSQL CPU per row or activation, µs) split as its seconds split by kind of process. */
function byKind(phase: Phase, perUnit: number | undefined): string {
  const kinds = phase.postgresCpuSecondsByKind;
  const total = phase.postgresCpuSeconds;
  if (kinds === undefined || perUnit === undefined || total === undefined || total <= 0) return '';
  const parts = Object.entries(kinds)
    .filter(([, seconds]) => seconds > 0)
    .sort(([, a], [, b]) => b - a)
    .map(([kind, seconds]) => `${kind} ${((perUnit * seconds) / total).toFixed(1)}`);
  return parts.length === 0 ? '' : `; by process: ${parts.join(', ')}`;
}

export function formatScale(result: ScaleResult): string {
  const rows = [
    '| phase | req/s | p50 ms | p99 ms | non-2xx | socket errors | loop max ms | loop p99 ms | flushes | ms per flush | rows per flush | minor GC µs/req | node CPU µs/req | PG CPU µs/row | activations/s | PG CPU µs/activation |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...result.phases.map(
      (p) =>
        `| ${p.name} | ${p.rps.toFixed(0)} | ${p.p50Ms.toFixed(2)} | ${p.p99Ms.toFixed(2)} | ${p.non2xx} | ${p.socketErrors} | ${p.lagMaxMs.toFixed(1)} | ${p.lagP99Ms.toFixed(1)} | ${p.flushes} | ${p.flushMeanMs.toFixed(1)} | ${p.rowsPerFlush.toFixed(0)} | ${p.minorGcUsPerRequest.toFixed(2)} | ${figure(p.nodeCpuUsPerRequest, 1)} | ${figure(p.postgresCpuUsPerRow, 1)} | ${figure(p.activationsPerSecond, 0)} | ${figure(p.postgresCpuUsPerActivation, 1)} |`,
    ),
  ];
  const small = result.phases[0]!;
  const cold = result.phases[1]!;
  const warm = result.phases[2]!;
  return [
    ...rows,
    '',
    `warm at ${result.users} / warm at ${result.small}: ${(warm.rps / small.rps).toFixed(2)} (target >= 0.8); p99 at ${result.users}: ${warm.p99Ms.toFixed(1)} ms (target <= 20)`,
    `PostgreSQL CPU per flushed row, warm at ${result.users}: ${figure(warm.postgresCpuUsPerRow, 1) || 'unknown (the server is not on this machine)'} µs (target <= 8)${byKind(warm, warm.postgresCpuUsPerRow)}`,
    `PostgreSQL CPU per activation, cold pass: ${figure(cold.postgresCpuUsPerActivation, 1) || 'unknown'} µs${byKind(cold, cold.postgresCpuUsPerActivation)}`,
    `heap per active user after ${result.idleSeconds} s idle and a full GC: ${result.heapPerUserBytes.toFixed(0)} bytes, without one: ${figure(result.heapPerUserNoGcBytes, 0)} bytes (target <= 1024); active after the warm phase: ${result.activeAfterWarm} of ${result.users}`,
    `not in memory: evicted ${result.lost.evicted}, passivated ${result.lost.passivated}, refused at the cap ${result.lost.refused}, never loaded ${result.lost.neverLoaded}; seeding took ${result.seedSeconds.toFixed(1)} s`,
  ].join('\n');
}
