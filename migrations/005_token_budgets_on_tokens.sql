-- The default tiers' token budgets count tokens, not requests: they apply only to the
-- amounts of resource "tokens" a consume or reservation brings (`amounts: {tokens: n}`),
-- and the request limits count requests. Before, a consume of cost 1500 was charged 1500
-- to the request limit too, so a call could not say "one request, 1,500 tokens".
-- Only tiers still exactly as 002 seeded them change: a tier an operator edited keeps what
-- the operator chose. Users keep their usage: counters move by limit name and kind.
UPDATE tiers
SET limits = '[{"name":"requests","kind":"rate","limit":60,"period_ms":60000,"burst":20},{"name":"tokens","kind":"budget","limit":100000,"period":"month","resource":"tokens"}]',
    updated_at = now()
WHERE name = 'free'
  AND limits = '[{"name":"requests","kind":"rate","limit":60,"period_ms":60000,"burst":20},{"name":"tokens","kind":"budget","limit":100000,"period":"month"}]'::jsonb;

UPDATE tiers
SET limits = '[{"name":"requests","kind":"rate","limit":600,"period_ms":60000,"burst":50},{"name":"tokens","kind":"budget","limit":2000000,"period":"month","resource":"tokens"}]',
    updated_at = now()
WHERE name = 'pro'
  AND limits = '[{"name":"requests","kind":"rate","limit":600,"period_ms":60000,"burst":50},{"name":"tokens","kind":"budget","limit":2000000,"period":"month"}]'::jsonb;

UPDATE tiers
SET limits = '[{"name":"requests","kind":"rate","limit":6000,"period_ms":60000,"burst":500},{"name":"tokens","kind":"budget","limit":50000000,"period":"month","resource":"tokens"}]',
    updated_at = now()
WHERE name = 'enterprise'
  AND limits = '[{"name":"requests","kind":"rate","limit":6000,"period_ms":60000,"burst":500},{"name":"tokens","kind":"budget","limit":50000000,"period":"month"}]'::jsonb;
