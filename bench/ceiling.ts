/**
 * The ceiling: what uWebSockets.js does with no work at all. `POST /v1/quota/consume`
 * reads the body to its end, as any POST handler must, and answers a constant JSON body.
 * Run as a child process: `node ceiling.js <port>`; prints `listening <port>`.
 */
import uws from 'uWebSockets.js';

const REPLY = '{"allowed":true,"limits":[]}';

export function startCeiling(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    uws
      .App()
      .post('/v1/quota/consume', (res) => {
        res.onAborted(() => {});
        res.onData((_chunk, isLast) => {
          if (isLast) res.cork(() => res.writeStatus('200 OK').writeHeader('content-type', 'application/json').end(REPLY));
        });
      })
      .listen('127.0.0.1', port, (socket) => (socket === false ? reject(new Error('cannot listen')) : resolve(uws.us_socket_local_port(socket))));
  });
}

if (process.argv[1]?.endsWith('ceiling.js')) {
  startCeiling(Number(process.argv[2] ?? 0)).then((port) => console.log(`listening ${port}`));
}
