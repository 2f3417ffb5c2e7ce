/**
 * What the two bench servers share about uWebSockets.js. The package this project installs
 * falls back to a pure-Node implementation (with only a console warning) when its native
 * binary does not load; a benchmark against that would measure the wrong server, so the
 * servers refuse to start on it.
 */
import uws from 'uWebSockets.js';

function requireNativeUws(): void {
  // Only the native module has the SSL and HTTP/3 apps; the fallback exports App alone.
  if (typeof (uws as unknown as Record<string, unknown>).SSLApp !== 'function') {
    throw new Error('uWebSockets.js is running its pure-Node fallback, not the native server: refusing to benchmark it');
  }
}

export function listen(app: uws.TemplatedApp, port: number): Promise<number> {
  requireNativeUws();
  return new Promise((resolve, reject) => {
    app.listen('127.0.0.1', port, (socket) => {
      if (socket === false) reject(new Error(`cannot listen on 127.0.0.1:${port}`));
      else resolve(uws.us_socket_local_port(socket));
    });
  });
}
