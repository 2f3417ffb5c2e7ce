/**
 * The NATS settings nodes and the CLI share (NATS_TOKEN, NATS_NKEY, NATS_CA/NATS_CERT/NATS_KEY),
 * read by `loadNatsAuth` and turned into nats.js options by `natsConnectOptions`, against real
 * nats-servers that demand each: the right credential connects, a missing or wrong one is
 * refused. (NATS_USER/NATS_PASSWORD: trust.test.ts and cli.test.ts, on the shipped configuration.)
 */
import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { connect, nkeys } from '@nats-io/transport-node';
import { afterAll, describe, expect, it } from 'vitest';
import { natsConnectOptions } from '../../src/node/cluster/index.js';
import { loadNatsAuth } from '../../src/node/index.js';
import { startNatsServer, stopAllNatsServers } from '../support/natsServer.js';
import { makeTempDir } from '../support/tmp.js';

afterAll(() => stopAllNatsServers());

/** Connects as a node would with `env`, and closes again: resolves, or rejects with the server's refusal. */
async function connectWith(url: string, env: Record<string, string>): Promise<void> {
  const nc = await connect({ ...natsConnectOptions(loadNatsAuth(env)), servers: url, reconnect: false, timeout: 3000 });
  await nc.flush();
  await nc.close();
}

describe('NATS credentials', () => {
  it('connects with a token, and not without it', async () => {
    const server = await startNatsServer(['--auth', 'a-token-for-tally-nodes']);
    await connectWith(server.url, { NATS_TOKEN: 'a-token-for-tally-nodes' });
    await expect(connectWith(server.url, { NATS_TOKEN: 'another-token' })).rejects.toThrow(/Authorization/i);
    await expect(connectWith(server.url, {})).rejects.toThrow(/Authorization/i);
  });

  it('connects with an nkey seed file, and not with another seed', async () => {
    const dir = await makeTempDir();
    const user = nkeys.createUser();
    const stranger = nkeys.createUser();
    const config = join(dir, 'nkey.conf');
    await writeFile(config, `authorization: { users: [ { nkey: ${user.getPublicKey()} } ] }\n`);
    await writeFile(join(dir, 'user.nk'), `${new TextDecoder().decode(user.getSeed())}\n`);
    await writeFile(join(dir, 'stranger.nk'), new TextDecoder().decode(stranger.getSeed()));
    const server = await startNatsServer(['-c', config]);
    await connectWith(server.url, { NATS_NKEY: join(dir, 'user.nk') });
    await expect(connectWith(server.url, { NATS_NKEY: join(dir, 'stranger.nk') })).rejects.toThrow(/Authorization/i);
  });

  it('connects over mutual TLS with NATS_CA, NATS_CERT and NATS_KEY, and not without a client certificate', async () => {
    const dir = await makeTempDir();
    const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
    openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=tally-test-ca', '-keyout', 'ca.key', '-out', 'ca.pem');
    const issue = (name: string, extensions: string) => {
      openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${name}`, '-keyout', `${name}.key`, '-out', `${name}.csr`);
      execFileSync('sh', ['-c', `printf '%s\\n' '${extensions}' > ${name}.ext`], { cwd: dir });
      openssl(
        'x509',
        '-req',
        '-in',
        `${name}.csr`,
        '-CA',
        'ca.pem',
        '-CAkey',
        'ca.key',
        '-CAcreateserial',
        '-days',
        '1',
        '-extfile',
        `${name}.ext`,
        '-out',
        `${name}.pem`,
      );
    };
    issue('server', 'subjectAltName=IP:127.0.0.1,DNS:localhost');
    issue('client', 'extendedKeyUsage=clientAuth');
    const at = (file: string) => join(dir, file);
    const server = await startNatsServer(['--tls', '--tlscert', at('server.pem'), '--tlskey', at('server.key'), '--tlscacert', at('ca.pem'), '--tlsverify']);
    await connectWith(server.url, { NATS_CA: at('ca.pem'), NATS_CERT: at('client.pem'), NATS_KEY: at('client.key') });
    await expect(connectWith(server.url, { NATS_CA: at('ca.pem') })).rejects.toThrow();
    await expect(connectWith(server.url, {})).rejects.toThrow();
  });
});
