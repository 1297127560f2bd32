-- pfgate PostgreSQL schema, version 1: the user directory and the short-lived authentication state,
-- the same tables as SQLite's versions 1 and 2 (src/store/row.rs maps both). Applied once, inside a
-- transaction holding an advisory lock (several instances may start at once), by
-- src/store/postgres.rs; never edit after release (add 0003_*.sql).
--
-- username_key is the lowercase username (lookups are case-insensitive); username keeps the case it
-- was first stored with. Enums hold their PfWsSdk wire literals. pin_hash is an argon2id PHC string;
-- oath_secret and static_token are sealed (AES-256-GCM, "v1:..."), bound to field and username_key,
-- so every instance must have the same secrets key. Everything attached to a user follows a rename
-- and goes with a delete (foreign keys with ON UPDATE / ON DELETE CASCADE). Times are Unix seconds.

CREATE TABLE users (
    username_key        TEXT    NOT NULL PRIMARY KEY,
    username            TEXT    NOT NULL,
    first_name          TEXT    NOT NULL,
    last_name           TEXT    NOT NULL,
    email               TEXT    NOT NULL,
    user_group          TEXT    NOT NULL,
    phone_country_code  TEXT    NOT NULL,
    phone_number        TEXT    NOT NULL,
    phone_extension     TEXT    NOT NULL,
    backup_country_code TEXT    NOT NULL,
    backup_number       TEXT    NOT NULL,
    backup_extension    TEXT    NOT NULL,
    mode                TEXT    NOT NULL,
    pin_mode            TEXT    NOT NULL,
    sms_direction       TEXT    NOT NULL,
    sms_mode            TEXT    NOT NULL,
    phone_app_mode      TEXT    NOT NULL,
    enabled             BOOLEAN NOT NULL,
    disabled_behavior   TEXT    NOT NULL,
    pin_hash            TEXT,
    pin_change_required BOOLEAN NOT NULL,
    pin_changed_at      BIGINT,
    oath_secret         TEXT,
    oath_serial         TEXT    NOT NULL,
    oath_time_interval  BIGINT  NOT NULL,
    static_token        TEXT,
    voice_call_language TEXT    NOT NULL,
    sms_text_language   TEXT    NOT NULL,
    phone_app_language  TEXT    NOT NULL,
    oath_token_language TEXT    NOT NULL
);

-- At most one block per user.
CREATE TABLE blocks (
    username_key TEXT   NOT NULL PRIMARY KEY
                 REFERENCES users (username_key) ON UPDATE CASCADE ON DELETE CASCADE,
    reason       TEXT   NOT NULL,
    actor        TEXT   NOT NULL,
    created_at   BIGINT NOT NULL
);

-- At most one one-time bypass per user; a new one replaces the old.
CREATE TABLE bypasses (
    username_key TEXT   NOT NULL PRIMARY KEY
                 REFERENCES users (username_key) ON UPDATE CASCADE ON DELETE CASCADE,
    reason       TEXT   NOT NULL,
    expires_at   BIGINT NOT NULL,
    created_by   TEXT   NOT NULL
);
CREATE INDEX bypasses_expires_at ON bypasses (expires_at);

-- Pending authentications; code_hash is an argon2id PHC string of an SMS code, never the code;
-- target is where a provider-checked code went ("provider +E164").
CREATE TABLE transactions (
    id           TEXT   NOT NULL PRIMARY KEY,
    username_key TEXT   NOT NULL
                 REFERENCES users (username_key) ON UPDATE CASCADE ON DELETE CASCADE,
    kind         TEXT   NOT NULL,
    code_hash    TEXT,
    expires_at   BIGINT NOT NULL,
    target       TEXT
);
CREATE INDEX transactions_username_key ON transactions (username_key);
CREATE INDEX transactions_expires_at ON transactions (expires_at);

-- Accepted one-time codes (replay protection across instances); digest is a keyed HMAC-SHA-256 of
-- the code, never the code.
CREATE TABLE used_codes (
    username_key TEXT   NOT NULL
                 REFERENCES users (username_key) ON UPDATE CASCADE ON DELETE CASCADE,
    digest       TEXT   NOT NULL,
    expires_at   BIGINT NOT NULL,
    PRIMARY KEY (username_key, digest)
);
CREATE INDEX used_codes_expires_at ON used_codes (expires_at);
