import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from './logger.js';

function collect(): { lines: string[]; destination: Writable } {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      lines.push(String(chunk));
      done();
    },
  });
  return { lines, destination };
}

describe('createLogger', () => {
  it('redacts credentials wherever they appear in a logged object', () => {
    const { lines, destination } = collect();
    const log = createLogger({ level: 'info', nodeId: 'node-a', destination });
    log.info({ headers: { authorization: 'Bearer secret-token' }, password: 'hunter2', request: { token: 'eyJ.secret', key: 'tk_secret' } }, 'request');
    const text = lines.join('');
    for (const secret of ['secret-token', 'hunter2', 'eyJ.secret', 'tk_secret']) expect(text).not.toContain(secret);
    expect(JSON.parse(text)).toMatchObject({ node: 'node-a', password: '[redacted]', msg: 'request' });
  });

  it('writes JSON lines with level names, and the node once', () => {
    const { lines, destination } = collect();
    const log = createLogger({ level: 'debug', format: 'json', nodeId: 'node-a', destination });
    log.warn({ shard: 3 }, 'careful');
    log.debug('detail');
    const [warn, debug] = lines.map((line) => JSON.parse(line));
    expect(warn).toMatchObject({ level: 'warn', node: 'node-a', shard: 3, msg: 'careful' });
    expect(warn.time).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect(debug.level).toBe('debug');
    expect(lines[0]!.match(/"node"/g)).toHaveLength(1);
  });

  it('writes one readable line per entry in the pretty format, still redacted', () => {
    const { lines, destination } = collect();
    const log = createLogger({ level: 'info', format: 'pretty', nodeId: 'node-a', destination });
    log.info({ url: 'http://localhost:8080', token: 'eyJ.secret' }, 'tally is serving');
    const text = lines.join('');
    expect(text.trimEnd().split('\n')).toHaveLength(1);
    expect(text).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: tally is serving /);
    expect(text).toContain('"url":"http://localhost:8080"');
    expect(text).not.toContain('eyJ.secret');
    expect(text).not.toMatch(/^\{/);
  });
});
