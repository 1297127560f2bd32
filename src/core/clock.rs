//! The wall clock as pfgate reads it: seconds since the Unix epoch, for signatures (the webhook's
//! timestamps), token lifetimes (OIDC) and the store's expiry times.

/// Seconds since the Unix epoch; 0 if the system clock is before 1970.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
