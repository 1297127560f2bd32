-- pfgate SQLite schema, version 3: provider calls in flight, so that processes sharing one database
-- file place one call per user and number (the in-flight rule across processes, as the PostgreSQL
-- backend does across hosts). call_key is a keyed digest of the lowercase username and the E.164
-- number (the number itself is not stored); outcome is NULL while the call is in flight. Unknown
-- users get calls too (PfAuthUser_5), so there is no foreign key to users.
CREATE TABLE inflight_calls (
    request_id TEXT    NOT NULL PRIMARY KEY,
    call_key   TEXT    NOT NULL,
    outcome    TEXT,
    expires_at INTEGER NOT NULL
) STRICT;
-- At most one call in flight per user and number: this index is the decision between claimants.
CREATE UNIQUE INDEX inflight_calls_pending ON inflight_calls (call_key) WHERE outcome IS NULL;
CREATE INDEX inflight_calls_expires_at ON inflight_calls (expires_at);
