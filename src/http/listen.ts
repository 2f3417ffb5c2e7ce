/**
 * Listening, and why it failed. uWebSockets.js says only that it could not listen; a probe
 * with node:net finds the system's reason, which a node reports before it opens anything
 * else (a port another process holds must not cost that process its shards).
 */
import uws from 'uWebSockets.js';
import { createServer } from 'node:net';

/** No SO_REUSEPORT (the addon exports it; its typings declare it only as an enum member). */
export const LIBUS_LISTEN_EXCLUSIVE_PORT: number = (uws as unknown as { LIBUS_LISTEN_EXCLUSIVE_PORT: number }).LIBUS_LISTEN_EXCLUSIVE_PORT;

/** The port could not be bound; `code` is the system's reason (EADDRINUSE, EACCES, EADDRNOTAVAIL…) when known. */
export class ListenError extends Error {
  override readonly name = 'ListenError';
  constructor(
    readonly host: string,
    readonly port: number,
    readonly code: string | undefined,
  ) {
    super(`cannot listen on ${host}:${port}: ${LISTEN_REASONS[code ?? ''] ?? code ?? 'the address is not available'}`);
  }
}

const LISTEN_REASONS: Record<string, string> = {
  EADDRINUSE: 'the port is already in use by another process',
  EACCES: 'permission denied (ports below 1024 need privileges)',
  EADDRNOTAVAIL: 'the address is not one of this machine’s',
};

/**
 * Binds `host:port` for a moment and lets go: the error it would meet, or null. uWebSockets.js
 * says only that listening failed, and a node checks this before it opens anything else.
 */
export function probeListen(host: string, port: number): Promise<ListenError | null> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once('error', (error: NodeJS.ErrnoException) => resolve(new ListenError(host, port, error.code)));
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve(null)));
  });
}

/** Why uWebSockets.js could not listen on `host:port`, as far as a probe can tell. */
export async function listenFailure(host: string, port: number): Promise<ListenError> {
  return (await probeListen(host, port)) ?? new ListenError(host, port, undefined);
}
