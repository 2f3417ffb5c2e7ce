/** What the HTTP server reports per request; the node's metrics registry implements it. */
export interface HttpMetrics {
  observe(route: string, status: number, durationMs: number): void;
}
