-- pfgate SQLite schema: the secrets key check (issue #23). One row: a keyed digest of a fixed label
-- under the secrets key (HMAC-SHA-256; never the key, and nothing the key can be recovered from),
-- written by the first pfgate that opens the database and compared by every pfgate at start, so an
-- instance with another key refuses to start instead of sealing secrets the others cannot open.
CREATE TABLE key_check (
    id         INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    digest     TEXT    NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
