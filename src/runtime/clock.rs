//! The wall clock, in Kafka's unit.

/// Wall-clock milliseconds since the Unix epoch (Kafka timestamps). A clock set before 1970
/// reads as 0 rather than failing.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}
