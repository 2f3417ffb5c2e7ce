/**
 * What every target is asked, in one place so that no target gets an easier question:
 * the route, the body, the 200 API keys it rotates through, and the limits they run under.
 */
import { randomBytes } from 'node:crypto';

export const CONSUME_PATH = '/v1/quota/consume';
export const CONSUME_BODY = '{"cost":1}';
/**
 * An LLM gateway's consume: one request and its tokens. Measured by the pipeline part only,
 * under BENCH_TOKENS_TIER, where it charges the same two limits as CONSUME_BODY does under
 * BENCH_TIER, so the two figures differ only by the body's path through the node.
 */
export const TOKENS_BODY = '{"cost":1,"amounts":{"tokens":1500}}';
export const KEY_COUNT = 200;

/**
 * The bench tier: a GCRA rate limit and a monthly budget, both far above what one run can
 * spend, so that every target measures admitted requests. The Redis peer runs the same
 * rate limit.
 */
export const BENCH_RATE_LIMIT = { name: 'requests', kind: 'rate', limit: 1_000_000_000, period_ms: 60_000, burst: 1_000_000 } as const;
const BENCH_BUDGET_LIMIT = { name: 'tokens', kind: 'budget', limit: 1_000_000_000_000, period: 'month' } as const;
export const BENCH_TIER = { limits: [BENCH_RATE_LIMIT, BENCH_BUDGET_LIMIT] };
export const BENCH_TOKENS_TIER = { limits: [BENCH_RATE_LIMIT, { ...BENCH_BUDGET_LIMIT, resource: 'tokens' }] };

const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';

function randomBase32(length: number): string {
  return Array.from(randomBytes(length), (byte) => BASE32[byte & 31]).join('');
}

/**
 * Random keys shaped like Tally's (`tk_<user>_<key id>_<secret>`), for the targets that do
 * not issue keys: the same header length means the same bytes on the wire.
 */
export function randomApiKeys(count = KEY_COUNT): string[] {
  return Array.from({ length: count }, () => `tk_u${randomBase32(20)}_k${randomBase32(12)}_${randomBytes(32).toString('base64url')}`);
}
