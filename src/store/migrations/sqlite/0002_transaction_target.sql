-- pfgate SQLite schema, version 2: where a provider-checked one-time code was sent (E.164 number),
-- so the check goes to the same number (Twilio Verify's VerificationCheck needs it).
ALTER TABLE transactions ADD COLUMN target TEXT;
