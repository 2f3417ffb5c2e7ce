import { randomBytes, scryptSync } from 'node:crypto';
import { base64url, SignJWT } from 'jose';
import postgres from 'postgres';
import { beforeEach, describe, expect, it } from 'vitest';
import { createKey, createUser, type StartedNode, startTestNode, useTestNode } from '../support/tally.js';

const node = useTestNode();
let t: StartedNode;
beforeEach(() => {
  t = node();
});

async function login(email: string, password: string, device?: { name: string; type: string }) {
  return t.api('POST', '/v1/sessions', { body: { email, password, ...(device === undefined ? {} : { device }) }, headers: { 'user-agent': 'vitest' } });
}

describe('sessions', () => {
  it('logs in on several devices and lists them', async () => {
    const user = await createUser(t.api);
    const phone = await login(user.email, user.password, { name: 'Pixel', type: 'phone' });
    expect(phone.status).toBe(201);
    expect(phone.body.session).toMatchObject({ device: { name: 'Pixel', type: 'phone' }, user_agent: 'vitest', ip: '127.0.0.1' });
    expect(Date.parse(phone.body.expires_at)).toBeGreaterThan(Date.now());
    const list = await t.api('GET', '/v1/sessions', { token: phone.body.token });
    expect(list.status).toBe(200);
    expect(list.body.current).toBe(phone.body.session.id);
    expect(list.body.sessions.map((s: { id: string }) => s.id).sort()).toEqual([user.sessionId, phone.body.session.id].sort());
  });

  it('gives the same 401 for an unknown email and a wrong password', async () => {
    const user = await createUser(t.api);
    const wrong = await login(user.email, 'wrong password');
    const unknown = await login('nobody@example.com', 'wrong password');
    expect(wrong.status).toBe(401);
    expect(unknown.status).toBe(401);
    expect(wrong.body.detail).toBe(unknown.body.detail);
  });

  it('refuses a revoked session from the very next request', async () => {
    const user = await createUser(t.api);
    const other = await login(user.email, user.password);
    const revoke = await t.api('DELETE', `/v1/sessions/${other.body.session.id}`, { token: user.token });
    expect(revoke.status).toBe(204);
    const refused = await t.api('GET', '/v1/user/profile', { token: other.body.token });
    expect(refused.status).toBe(401);
    const still = await t.api('GET', '/v1/user/profile', { token: user.token });
    expect(still.status).toBe(200);
  });

  it('answers 404 for another user’s session id and leaves it alive', async () => {
    const a = await createUser(t.api);
    const b = await createUser(t.api);
    const res = await t.api('DELETE', `/v1/sessions/${b.sessionId}`, { token: a.token });
    expect(res.status).toBe(404);
    expect((await t.api('GET', '/v1/sessions', { token: b.token })).status).toBe(200);
  });

  it('logs out everywhere, optionally keeping the current session', async () => {
    const user = await createUser(t.api);
    const second = await login(user.email, user.password);
    const third = await login(user.email, user.password);
    const kept = await t.api('POST', '/v1/sessions/logout-all', { token: third.body.token, body: { keep_current: true } });
    expect(kept.body).toEqual({ revoked: 2 });
    expect((await t.api('GET', '/v1/sessions', { token: second.body.token })).status).toBe(401);
    expect((await t.api('GET', '/v1/sessions', { token: third.body.token })).status).toBe(200);
    const all = await t.api('POST', '/v1/sessions/logout-all', { token: third.body.token });
    expect(all.body).toEqual({ revoked: 1 });
    expect((await t.api('GET', '/v1/sessions', { token: third.body.token })).status).toBe(401);
  });

  it('limits failed logins per email with 429 and Retry-After', async () => {
    const user = await createUser(t.api);
    let last = await login(user.email, 'wrong password');
    for (let i = 0; i < 12 && last.status !== 429; i++) last = await login(user.email, 'wrong password');
    expect(last.status).toBe(429);
    expect(Number(last.headers.get('retry-after'))).toBeGreaterThan(0);
    // Even the right password is refused while the email is locked out.
    expect((await login(user.email, user.password)).status).toBe(429);
  });
});

describe('session token security', () => {
  it('refuses a token signed with another secret, an alg=none token and an expired token', async () => {
    const user = await createUser(t.api);
    const [, payload] = user.token.split('.');
    const claims = JSON.parse(new TextDecoder().decode(base64url.decode(payload!)));

    const forged = await new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode('another secret of at least 32 bytes!!'));
    const none = `${base64url.encode(JSON.stringify({ alg: 'none', typ: 'JWT' }))}.${payload}.`;
    const tampered = `${user.token.split('.')[0]}.${base64url.encode(JSON.stringify({ ...claims, sub: 'uaaaaaaaaaaaaaaaaaaaa' }))}.${user.token.split('.')[2]}`;
    for (const token of [forged, none, tampered]) {
      const res = await t.api('GET', '/v1/user/profile', { token });
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
    }
  });

  it('refuses an expired token', async () => {
    const expired = await startTestNode({ env: { TALLY_JWT_SECRET: 'x'.repeat(40), TALLY_SESSION_TTL_MS: '60000' } });
    try {
      const user = await createUser(expired.api);
      const [, payload] = user.token.split('.');
      const claims = JSON.parse(new TextDecoder().decode(base64url.decode(payload!)));
      const old = await new SignJWT({ ...claims, exp: Math.floor(Date.now() / 1000) - 10 })
        .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
        .sign(new TextEncoder().encode('x'.repeat(40)));
      const res = await expired.api('GET', '/v1/user/profile', { token: old });
      expect(res.status).toBe(401);
      expect(res.body.detail).toMatch(/expired/);
    } finally {
      await expired.stop();
      await expired.dropDatabase();
    }
  });

  it('refuses a blocked user’s sessions and keys at once, and accepts them again after unblocking', async () => {
    const user = await createUser(t.api);
    const key = await createKey(t.api, user);
    const block = await t.api('PATCH', `/v1/admin/users/${user.id}`, { token: t.adminToken, body: { blocked: true } });
    expect(block.status).toBe(200);
    expect((await t.api('GET', '/v1/user/profile', { token: user.token })).status).toBe(403);
    expect((await t.api('POST', '/v1/quota/consume', { token: key.key, body: {} })).status).toBe(403);
    await t.api('PATCH', `/v1/admin/users/${user.id}`, { token: t.adminToken, body: { blocked: false } });
    expect((await t.api('GET', '/v1/user/profile', { token: user.token })).status).toBe(200);
  });

  it('refuses a blocked user a new session: 403, and no session is made', async () => {
    const user = await createUser(t.api);
    await t.api('PATCH', `/v1/admin/users/${user.id}`, { token: t.adminToken, body: { blocked: true } });
    const refused = await login(user.email, user.password);
    expect(refused.status).toBe(403);
    expect(refused.body.detail).toBe('this user is blocked');
    await t.api('PATCH', `/v1/admin/users/${user.id}`, { token: t.adminToken, body: { blocked: false } });
    const again = await login(user.email, user.password);
    expect(again.status).toBe(201);
    const listed = await t.api('GET', '/v1/sessions', { token: again.body.token });
    expect(listed.body.sessions.map((s: { id: string }) => s.id)).toEqual([user.sessionId, again.body.session.id]);
  });
});

describe('stored login state', () => {
  const withDatabase = async <T>(work: (sql: postgres.Sql) => Promise<T>): Promise<T> => {
    const sql = postgres(t.databaseUrl!, { max: 1, onnotice: () => {} });
    try {
      return await work(sql);
    } finally {
      await sql.end();
    }
  };

  it('rehashes a password stored under older scrypt parameters at the next login', async () => {
    const user = await createUser(t.api);
    const salt = randomBytes(16);
    const old = `scrypt$16384$8$1$${salt.toString('base64url')}$${scryptSync(user.password, salt, 32, { N: 16384, r: 8, p: 1 }).toString('base64url')}`;
    await withDatabase((sql) => sql`update users set password_hash = ${old} where id = ${user.id}`);
    expect((await login(user.email, user.password)).status).toBe(201);
    const [row] = await withDatabase((sql) => sql<{ password_hash: string }[]>`select password_hash from users where id = ${user.id}`);
    expect(row!.password_hash).toMatch(/^scrypt\$16384\$8\$5\$[\w-]{22}\$[\w-]{43}$/);
    expect((await login(user.email, user.password)).status).toBe(201);
    expect((await login(user.email, 'not the password')).status).toBe(401);
  });

  it('keys login counters by a hash of the email, and gives each an expiry', async () => {
    const user = await createUser(t.api);
    expect((await login(user.email, 'not the password')).status).toBe(401);
    await new Promise((resolve) => setTimeout(resolve, 300)); // flushed
    const rows = await withDatabase(
      (sql) => sql<{ entity_key: string; expires_at: Date | null }[]>`select entity_key, expires_at from actor_state where entity_key like 'limiter:%'`,
    );
    expect(rows.length).toBeGreaterThan(0);
    for (const row of rows) {
      expect(row.entity_key).not.toContain('@');
      expect(row.expires_at).toBeInstanceOf(Date);
      // A window counts whole slots: its last charge stops counting at most W + W/10 later.
      expect(row.expires_at!.getTime()).toBeLessThanOrEqual(Date.now() + 16.5 * 60_000);
    }
    expect(rows.some((row) => row.entity_key.startsWith('limiter:login-email:'))).toBe(true);
  });
});
