//! Retry delays of the background tasks: 1.5ⁿ seconds, capped at a minute.

use std::time::Duration;

/// The delay before retrying after `failures` consecutive failures (≥ 1).
pub fn delay(failures: u32) -> Duration {
    let seconds = 1.5f64.powi(i32::try_from(failures.saturating_sub(1)).unwrap_or(i32::MAX));
    Duration::from_secs_f64(seconds.min(60.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps() {
        assert_eq!(delay(1), Duration::from_secs(1));
        assert_eq!(delay(2), Duration::from_secs_f64(1.5));
        assert_eq!(delay(50), Duration::from_secs(60));
    }
}
