-- The default tiers. `anonymous` limits the unauthenticated routes per client address;
-- `free` fails open when a user's owner cannot be reached; paid tiers are strict.
INSERT INTO tiers (name, limits, fail_open) VALUES
  ('anonymous', '[{"name":"requests","kind":"rate","limit":60,"period_ms":60000,"burst":20}]', false),
  ('free', '[{"name":"requests","kind":"rate","limit":60,"period_ms":60000,"burst":20},{"name":"tokens","kind":"budget","limit":100000,"period":"month"}]', true),
  ('pro', '[{"name":"requests","kind":"rate","limit":600,"period_ms":60000,"burst":50},{"name":"tokens","kind":"budget","limit":2000000,"period":"month"}]', false),
  ('enterprise', '[{"name":"requests","kind":"rate","limit":6000,"period_ms":60000,"burst":500},{"name":"tokens","kind":"budget","limit":50000000,"period":"month"}]', false)
ON CONFLICT (name) DO NOTHING;
