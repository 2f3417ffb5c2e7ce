/**
 * How a node and the operator CLI prove themselves to NATS. The settings carry the names the
 * `nats` CLI uses (NATS_USER/NATS_PASSWORD, NATS_TOKEN, NATS_NKEY, NATS_CREDS, and
 * NATS_CA/NATS_CERT/NATS_KEY for TLS); config.ts reads and checks them, this turns them into
 * nats.js options. Files are read here, at connect time, so that a rotated creds file is
 * picked up by the next start without a change of settings.
 */
import { readFileSync } from 'node:fs';
import { credsAuthenticator, type NodeConnectionOptions, nkeyAuthenticator } from '@nats-io/transport-node';

/** One way to authenticate (or none), and TLS (mutual when a certificate and its key are given). */
export interface NatsAuth {
  readonly user?: { readonly name: string; readonly password: string };
  readonly token?: string;
  /** A file holding an nkey seed (`SU…`). */
  readonly nkeyFile?: string;
  /** A creds file: a user JWT and its nkey seed. */
  readonly credsFile?: string;
  readonly tls?: { readonly caFile?: string; readonly certFile?: string; readonly keyFile?: string };
}

/** The nats.js options for `auth`: throws when a file named cannot be read. */
export function natsConnectOptions(auth: NatsAuth): Partial<NodeConnectionOptions> {
  const options: Partial<NodeConnectionOptions> = {};
  if (auth.user !== undefined) {
    options.user = auth.user.name;
    options.pass = auth.user.password;
  }
  if (auth.token !== undefined) options.token = auth.token;
  if (auth.nkeyFile !== undefined) options.authenticator = nkeyAuthenticator(new TextEncoder().encode(readFileSync(auth.nkeyFile, 'utf8').trim()));
  if (auth.credsFile !== undefined) options.authenticator = credsAuthenticator(readFileSync(auth.credsFile));
  if (auth.tls !== undefined) options.tls = { ...auth.tls };
  return options;
}

/** What the log may say about `auth`: which kind, never a secret. */
export function describeNatsAuth(auth: NatsAuth): { auth: string; tls: boolean } {
  const kind =
    auth.user !== undefined
      ? `user ${auth.user.name}`
      : auth.token !== undefined
        ? 'token'
        : auth.nkeyFile !== undefined
          ? 'nkey'
          : auth.credsFile !== undefined
            ? 'creds'
            : 'none';
  return { auth: kind, tls: auth.tls !== undefined };
}
