-- Room on every page of `api_keys` and `sessions` for the next version of a row, so that
-- writing a key's or a session's last use (once a minute at most, written behind) stays on
-- its page and touches no index (a heap-only tuple): `last_used_at` and `last_active_at` are
-- in no index. Without room, each such update inserted into every index of the table: three
-- for a key (its id, its hash, its user), two for a session. Applies to pages written from
-- now on: a key or session written before keeps its packed page until its page is rewritten.
ALTER TABLE api_keys SET (fillfactor = 80);
ALTER TABLE sessions SET (fillfactor = 80);
