import { describe, expect, it } from 'vitest';
import { createLogger } from './logger.js';

describe('createLogger', () => {
  it('redacts credentials wherever they appear in a logged object', () => {
    const lines: string[] = [];
    const log = createLogger('info', 'node-a', { write: (line: string) => lines.push(line) });
    log.info({ headers: { authorization: 'Bearer secret-token' }, password: 'hunter2', request: { token: 'eyJ.secret', key: 'tk_secret' } }, 'request');
    const text = lines.join('');
    for (const secret of ['secret-token', 'hunter2', 'eyJ.secret', 'tk_secret']) expect(text).not.toContain(secret);
    expect(JSON.parse(text)).toMatchObject({ node: 'node-a', password: '[redacted]', msg: 'request' });
  });
});
