-- pfgate SQLite schema, version 4: the identity the organisation's identity provider gives a user
-- (Entra ID's `oid`, an OpenID Connect `sub`), for the OIDC step-up provider's
-- `match = "external_id"`: an `oid` never equals a username, so the mapping is stored. Written
-- trimmed and lower case by the store (GUIDs arrive in either case); NULL when not set.
ALTER TABLE users ADD COLUMN external_id TEXT;
-- One IdP identity maps to at most one user (NULLs are distinct: any number of users have none),
-- or one person's sign-in could approve another's authentication.
CREATE UNIQUE INDEX users_external_id ON users (external_id);
