/** The cluster part's result and its table: apart from cluster.ts, so that run.ts loads nothing of the node. */

export interface ClusterPhase {
  name: string;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  non2xx: number;
  socketErrors: number;
  forwarded: number;
  meanBatch: number;
}

/** One node alone against three, both with the same connections in all. */
export interface ClusterLevel {
  connections: number;
  single: ClusterPhase;
  three: ClusterPhase;
  /** three.rps / single.rps */
  ratio: number;
  /** three.p99Ms − single.p99Ms */
  addedP99Ms: number;
}

/** @tally/client under many single-call callers (its auto-batching makes the batches). */
export interface ClientPhase {
  name: string;
  callers: number;
  decisionsPerSecond: number;
  /** Per call, from the call to its answer. */
  p50Ms: number;
  p99Ms: number;
  /** Items per message the client sent. */
  meanMessage: number;
  /** Items the nodes forwarded to another node, per decision. */
  forwardedPerDecision: number;
  /** Items a node answered `moved` for. */
  moved: number;
  errors: number;
}

export interface ClusterResult {
  seconds: number;
  /** The lowest concurrency first. */
  levels: ClusterLevel[];
  nats: { batch: number; inFlight: number; decisionsPerSecond: number; allowed: number; errors: number; p99Ms: number; vsHttp: number };
  client: {
    single: ClientPhase;
    /** The same with `maxBatch` 128. */
    small: ClientPhase;
    routed: ClientPhase;
    anyNode: ClientPhase;
    /** single.decisionsPerSecond / HTTP's best req/s on one node */
    singleVsHttp: number;
    smallVsHttp: number;
    /** routed / anyNode, decisions per second */
    routedVsAny: number;
  };
}

export function formatCluster(result: ClusterResult): string {
  const row = (phase: ClusterPhase) =>
    `| ${phase.name} | ${phase.rps.toFixed(0)} | ${phase.p50Ms.toFixed(2)} | ${phase.p99Ms.toFixed(2)} | ${phase.forwarded} | ${phase.meanBatch.toFixed(1)} | ${phase.non2xx + phase.socketErrors} |`;
  const { nats, client } = result;
  return [
    `| setup (${result.seconds} s each) | connections | req/s | p50 ms | p99 ms | forwarded | mean batch | errors |`,
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
    ...result.levels.flatMap((level) => [level.single, level.three].map((phase) => row(phase).replace(' |', ` | ${level.connections} |`))),
    '',
    ...result.levels.map(
      (level) => `${level.connections} connections: three nodes / one ${level.ratio.toFixed(2)}×; forwarding adds ${level.addedP99Ms.toFixed(2)} ms at p99`,
    ),
    `NATS API, batches of ${nats.batch} (${nats.inFlight} in flight): ${nats.decisionsPerSecond.toFixed(0)} decisions/s, ` +
      `${nats.vsHttp.toFixed(2)}× HTTP's best req/s on three nodes; p99 per batch ${nats.p99Ms.toFixed(1)} ms; ${nats.errors} errors`,
    '',
    `| @tally/client (${client.single.callers} callers, one call each at a time) | decisions/s | p50 ms | p99 ms | items/message | forwarded/decision | moved | errors |`,
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
    ...[client.single, client.small, client.routed, client.anyNode].map(
      (phase) =>
        `| ${phase.name} | ${phase.decisionsPerSecond.toFixed(0)} | ${phase.p50Ms.toFixed(2)} | ${phase.p99Ms.toFixed(2)} | ${phase.meanMessage.toFixed(1)} | ${phase.forwardedPerDecision.toFixed(3)} | ${phase.moved} | ${phase.errors} |`,
    ),
    '',
    `client on one node / HTTP on one node: ${client.singleVsHttp.toFixed(2)}× (with messages of 128: ${client.smallVsHttp.toFixed(2)}×); ` +
      `three nodes, routed / queue group: ${client.routedVsAny.toFixed(2)}×`,
  ].join('\n');
}
