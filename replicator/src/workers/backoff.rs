//! The one retry backoff: 1.5ⁿ seconds, capped at [`CAP`]. Every retry is
//! a request to the local sidecar, so a short cap costs little and brings
//! the node back within seconds of CouchDB.

use std::time::Duration;

/// The longest delay between two attempts.
pub const CAP: Duration = Duration::from_secs(10);

/// The delay before retrying after `failures` consecutive failures (≥ 1).
pub fn delay(failures: u32) -> Duration {
    let seconds = 1.5f64.powi(i32::try_from(failures.saturating_sub(1)).unwrap_or(i32::MAX));
    Duration::from_secs_f64(seconds).min(CAP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps() {
        assert_eq!(delay(1), Duration::from_secs(1));
        assert_eq!(delay(2), Duration::from_secs_f64(1.5));
        assert_eq!(delay(50), CAP);
    }
}
