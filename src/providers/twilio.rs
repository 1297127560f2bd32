//! The Twilio Verify v2 provider. (being written)
