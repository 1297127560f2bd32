-- pfgate PostgreSQL schema, version 2: provider calls in flight, the in-flight rule across instances
-- (SQLite's version 3). call_key is a keyed digest of the lowercase username and the E.164 number
-- (the number itself is not stored); outcome is NULL while the call is in flight. Unknown users get
-- calls too (PfAuthUser_5), so there is no foreign key to users.
CREATE TABLE inflight_calls (
    request_id TEXT   NOT NULL PRIMARY KEY,
    call_key   TEXT   NOT NULL,
    outcome    TEXT,
    expires_at BIGINT NOT NULL
);
-- At most one call in flight per user and number: this index is the decision between instances
-- (INSERT ... ON CONFLICT DO NOTHING: one claimant inserts, the others see its row).
CREATE UNIQUE INDEX inflight_calls_pending ON inflight_calls (call_key) WHERE outcome IS NULL;
CREATE INDEX inflight_calls_expires_at ON inflight_calls (expires_at);
