import uws from 'uWebSockets.js';
const mode = process.argv[2];
uws.App().post('/x', (res) => {
  res.onAborted(() => {});
  res.onData((c, last) => {
    if (!last) return;
    if (mode === 'sync') { res.cork(() => res.end('ok')); return; }
    Promise.resolve().then(() => res.cork(() => res.end('ok')));
  });
}).listen('127.0.0.1', 9911, () => console.log('up'));
