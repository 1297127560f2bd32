-- pfgate SQLite schema, version 5 (PostgreSQL's version 4): failed-attempt counters for the lockout
-- (issue #17, item 2) and the principal that started a transaction (issue #23, item 7).
--
-- One row per user with failures: how many in the window that began at window_start, and the end
-- of a lock when the threshold was reached. Counted by one INSERT ... ON CONFLICT DO UPDATE, so
-- processes sharing the database count into the same row. Follows renames, goes with a delete.
CREATE TABLE auth_failures (
    username_key TEXT    NOT NULL PRIMARY KEY
                 REFERENCES users (username_key) ON UPDATE CASCADE ON DELETE CASCADE,
    failures     INTEGER NOT NULL,
    window_start INTEGER NOT NULL,
    locked_until INTEGER
) STRICT;

-- Only the principal that started a transaction may complete it. Rows written before this version
-- have none and can no longer be completed (they expire within the authentication deadline).
ALTER TABLE transactions ADD COLUMN started_by TEXT;
