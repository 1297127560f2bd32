//! The Duo Auth API v2 provider. (being written)
