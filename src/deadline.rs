//! Deadline arithmetic that cannot panic. `Instant + Duration` panics on overflow, and a
//! duration can come from outside (a `Retry-After`, a token's `expires_in`, a config value);
//! with `panic = "abort"` that is a crash loop. Every "now + wait" goes through here.

use std::time::Duration;

/// The longest wait any deadline is set to. Nothing in smshub waits longer; a longer value
/// from outside is a mistake or an attack, and a year is still "effectively never".
pub const LONGEST_WAIT: Duration = Duration::from_secs(366 * 24 * 3600);

/// `now + wait` on tokio's clock, with `wait` capped at [`LONGEST_WAIT`].
pub fn tokio_in(wait: Duration) -> tokio::time::Instant {
    after(tokio::time::Instant::now().into_std(), wait).into()
}

/// `now + wait` on the std clock, with `wait` capped at [`LONGEST_WAIT`].
pub fn std_in(wait: Duration) -> std::time::Instant {
    after(std::time::Instant::now(), wait)
}

/// `at + wait`, with `wait` capped at [`LONGEST_WAIT`]; if even that overflows the platform's
/// clock, `at` plus the largest step that fits (halving until it does).
pub fn after(at: std::time::Instant, wait: Duration) -> std::time::Instant {
    let mut step = wait.min(LONGEST_WAIT);
    loop {
        if let Some(t) = at.checked_add(step) {
            return t;
        }
        step /= 2;
    }
}

/// `d` limited to `[min, max]`.
pub fn clamp(d: Duration, min: Duration, max: Duration) -> Duration {
    d.max(min).min(max)
}

/// Seconds as a [`Duration`], for a float from outside (JSON): NaN and negatives are `None`,
/// anything beyond `max` (including infinity and 1e300) is `max`.
pub fn from_secs_f64_capped(secs: f64, max: Duration) -> Option<Duration> {
    if secs.is_nan() || secs < 0.0 {
        return None;
    }
    if secs >= max.as_secs_f64() {
        return Some(max);
    }
    Duration::try_from_secs_f64(secs).ok().map(|d| d.min(max))
}

/// A duration in whole milliseconds for the store's `*_at` columns (unix ms), saturating.
pub fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `at_ms + d` in unix milliseconds, saturating.
pub fn ms_after(at_ms: i64, d: Duration) -> i64 {
    at_ms.saturating_add(millis(d))
}

/// `at_ms - d` in unix milliseconds, saturating.
pub fn ms_before(at_ms: i64, d: Duration) -> i64 {
    at_ms.saturating_sub(millis(d))
}

/// How long to sleep until unix-ms time `at` (at least 10 ms, so a due time in the past does not
/// spin), but never longer than `max`; `max` when there is no `at`. The pipelines' "until the next
/// retry is due, or the sweep" wait.
pub fn until_ms(at: Option<i64>, now_ms: i64, max: Duration) -> Duration {
    match at {
        Some(at) => Duration::from_millis(at.saturating_sub(now_ms).clamp(10, millis(max).max(10)).unsigned_abs()),
        None => max,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_waits_do_not_overflow_the_clock() {
        let now = std::time::Instant::now();
        let far = after(now, Duration::MAX);
        assert!(far > now);
        assert!(far.duration_since(now) <= LONGEST_WAIT);
        assert_eq!(after(now, Duration::from_secs(5)).duration_since(now), Duration::from_secs(5));
        assert!(std_in(Duration::from_secs(u64::MAX)) > now);
        let t = tokio_in(Duration::MAX);
        assert!(t > tokio::time::Instant::from_std(now));
    }

    #[test]
    fn float_seconds_from_outside_are_capped_or_refused() {
        let max = Duration::from_secs(86_400);
        assert_eq!(from_secs_f64_capped(1e300, max), Some(max));
        assert_eq!(from_secs_f64_capped(f64::INFINITY, max), Some(max));
        assert_eq!(from_secs_f64_capped(18_446_744_073_709_551_615.0, max), Some(max));
        assert_eq!(from_secs_f64_capped(f64::NAN, max), None);
        assert_eq!(from_secs_f64_capped(-1.0, max), None);
        assert_eq!(from_secs_f64_capped(1.5, max), Some(Duration::from_millis(1500)));
    }

    #[test]
    fn millisecond_timestamps_saturate() {
        assert_eq!(ms_after(1_000, Duration::from_millis(5)), 1_005);
        assert_eq!(ms_after(1_000, Duration::MAX), i64::MAX);
        assert_eq!(ms_before(-5, Duration::MAX), i64::MIN);
        assert_eq!(ms_before(1_000, Duration::from_millis(1)), 999);
        assert_eq!(millis(Duration::from_secs(u64::MAX)), i64::MAX);
    }

    #[test]
    fn clamp_keeps_a_duration_inside_its_bounds() {
        let (lo, hi) = (Duration::from_secs(60), Duration::from_secs(3600));
        assert_eq!(clamp(Duration::ZERO, lo, hi), lo);
        assert_eq!(clamp(Duration::MAX, lo, hi), hi);
        assert_eq!(clamp(Duration::from_secs(120), lo, hi), Duration::from_secs(120));
    }

    #[test]
    fn until_ms_is_bounded_both_ways() {
        let max = Duration::from_secs(60);
        assert_eq!(until_ms(None, 1_000, max), max);
        assert_eq!(until_ms(Some(1_500), 1_000, max), Duration::from_millis(500));
        assert_eq!(until_ms(Some(0), 1_000, max), Duration::from_millis(10), "overdue: soon, not a spin");
        assert_eq!(until_ms(Some(i64::MAX), i64::MIN, max), max);
        assert_eq!(until_ms(Some(i64::MIN), i64::MAX, max), Duration::from_millis(10));
    }
}
