//! Retry timing shared by every pipeline (modem sends, Provet calls, forward deliveries), so
//! "how long until the next try" means the same everywhere.

use std::time::Duration;

/// The wait before the next attempt after `attempt` failed attempts (1 = the first failure):
/// `initial · 2^(attempt-1)`, capped at `max`, then drawn uniformly from its upper half.
///
/// The jitter keeps a backlog (say, a day of SMS queued while the clinic's server was down)
/// from hitting the receiver in lock-step when it comes back; keeping at least half the wait
/// keeps the schedule predictable enough to reason about ("10 attempts take about …").
pub fn backoff(attempt: u32, initial: Duration, max: Duration) -> Duration {
    let exponent = attempt.saturating_sub(1).min(32);
    let factor = 1u64 << exponent;
    let full = initial.checked_mul(u32::try_from(factor).unwrap_or(u32::MAX)).unwrap_or(max).min(max);
    let half = full / 2;
    let spread = full.saturating_sub(half).as_millis();
    let extra_ms = if spread == 0 { 0 } else { fastrand::u64(0..=u64::try_from(spread).unwrap_or(u64::MAX)) };
    half + Duration::from_millis(extra_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_bounds_and_stays_under_the_cap() {
        let initial = Duration::from_secs(30);
        let max = Duration::from_secs(3600);
        for _ in 0..200 {
            for (attempt, full_secs) in [(1u32, 30u64), (2, 60), (3, 120), (4, 240), (7, 1920), (8, 3600), (30, 3600)] {
                let d = backoff(attempt, initial, max);
                let full = Duration::from_secs(full_secs);
                assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?} not in [{:?}, {full:?}]", full / 2);
            }
        }
    }

    #[test]
    fn backoff_survives_huge_attempt_numbers_and_zero_durations() {
        assert!(backoff(u32::MAX, Duration::from_secs(1), Duration::from_secs(10)) <= Duration::from_secs(10));
        assert_eq!(backoff(5, Duration::ZERO, Duration::from_secs(10)), Duration::ZERO);
        assert!(backoff(0, Duration::from_secs(4), Duration::from_secs(10)) <= Duration::from_secs(4));
    }

    #[test]
    fn backoff_actually_varies() {
        let draws: std::collections::BTreeSet<_> =
            (0..50).map(|_| backoff(3, Duration::from_secs(10), Duration::from_secs(600))).collect();
        assert!(draws.len() > 1, "jitter produced a single value: {draws:?}");
    }
}
