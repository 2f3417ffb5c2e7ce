-- Room on every page of the tables the write-behind rewrites for a new version of each of
-- its rows at once: `actor_state` (a flush's states), `api_keys` and `sessions` (their
-- last-use times, written with a flush).
--
-- At 70 (`actor_state`, 010) or 80 (011) a page had room for the next version of fewer than
-- half, or a quarter, of its rows. A flush writes users in the order they were served, and
-- users served in the order their rows were written (a batch job cycling through its users,
-- the scale bench's clients) put whole pages' rows in one statement. Old versions written
-- by that statement cannot be pruned before it commits, so once the free space was used the
-- rest went to other pages, through every index of the table: in the scale bench at
-- 100,000 users, 54-61 % of the warm phase's state updates stayed on their page and the table
-- doubled; in the cold pass 70 % of the keys' last-use updates left their page, each
-- inserting into the three indexes of `api_keys`. At 50 every row of a full page fits its
-- next version beside it (measured: 100 % heap-only, `actor_state` steady at 81 MB for
-- 100,000 users where at 70 it grew from 54 to 117 MB in three passes; a key's first use
-- also makes its row longer, by the time it did not have, and 94 % of a page of keys never
-- used keep their page). Applies to pages written from now on.
ALTER TABLE actor_state SET (fillfactor = 50);
ALTER TABLE api_keys SET (fillfactor = 50);
ALTER TABLE sessions SET (fillfactor = 50);
