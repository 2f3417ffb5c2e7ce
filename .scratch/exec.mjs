import { ActorRuntime, initHashing, issueApiKey, newUserId, TierRegistry, UserService, parseApiKey } from '../dist/src/shards/index.js';
await initHashing();
const LIMITS = [{ name: 'requests', kind: 'rate', limit: 1e9, period_ms: 60000, burst: 1e6 }, { name: 'tokens', kind: 'budget', limit: 1e12, period: 'month' }];
const tiers = new TierRegistry(); tiers.put([{ name: 'bench', limits: LIMITS, failOpen: false, updatedAt: Date.now() }]);
const rt = new ActorRuntime({ maxActors: 1e6, idleMs: 1e9, negativeTtlMs: 1000, negativeMax: 10 });
for (const s of rt.shards) s.status = 'owned';
const id = newUserId(); const k = issueApiKey(id); const d = new Date();
const store = { loadUser: async () => ({ user: { id, email: 'a@b.c', name: 'n', tier: 'bench', passwordHash: 'x', preferences: {}, blocked: false, overrides: [], createdAt: d }, sessions: [], keys: [{ id: k.keyId, userId: id, prefix: k.prefix, hash: k.hash, name: 'b', scopes: ['quota'], createdAt: d, expiresAt: null, lastUsedAt: null }], state: null }) };
const users = new UserService(rt, store, tiers);
const parsed = parseApiKey(k.key);
const req = { userId: id, credential: { kind: 'key', keyId: parsed.keyId, hash: parsed.hash }, op: 'quota.consume', args: { cost: 1, resource: 'default' } };
for (let round = 0; round < 3; round++) {
  const t = performance.now(); const N = 200000;
  for (let i = 0; i < N; i++) await users.execute(req, Date.now());
  console.log('execute ns', ((performance.now() - t) * 1e6 / N).toFixed(0));
}
