//! Warnings caused by outsiders (wrong webhook tokens, refused button hashes, connections over a
//! cap, accept errors), summarised: the first of a kind is logged at once, the rest are counted
//! and logged at most once a minute per kind with the count and the last (masked) source. A
//! flood of bad requests therefore costs a few journal lines, and journald's rate limit never
//! drops the lines that matter.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::conn::{Surface, mask_address};

/// How often one kind of warning may be logged.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Tally {
    /// Not yet logged.
    pending: u64,
    last_source: Option<String>,
    last_logged: Option<Instant>,
    surface: Surface,
}

/// The summarised warnings of the daemon's listeners and handlers.
#[derive(Debug)]
pub struct OutsiderLog {
    interval: Duration,
    kinds: Mutex<HashMap<&'static str, Tally>>,
}

impl Default for OutsiderLog {
    fn default() -> Self {
        OutsiderLog::new(SUMMARY_INTERVAL)
    }
}

impl OutsiderLog {
    pub fn new(interval: Duration) -> OutsiderLog {
        OutsiderLog { interval, kinds: Mutex::new(HashMap::new()) }
    }

    /// Counts one event of `kind` (a fixed sentence, e.g. "Provet webhook with a wrong token")
    /// from `source`.
    pub fn note(&self, kind: &'static str, surface: Surface, source: IpAddr) {
        self.record(kind, surface, mask_address(source));
    }

    /// Counts one error of ours (no client address), e.g. a failed accept.
    pub fn note_error(&self, kind: &'static str, surface: Surface, error: &str) {
        self.record(kind, surface, error.chars().take(120).collect());
    }

    fn record(&self, kind: &'static str, surface: Surface, source: String) {
        let mut kinds = self.kinds.lock().unwrap_or_else(|p| p.into_inner());
        let tally = kinds.entry(kind).or_insert(Tally { pending: 0, last_source: None, last_logged: None, surface });
        tally.pending += 1;
        tally.last_source = Some(source);
        tally.surface = surface;
        if tally.last_logged.is_none_or(|t| t.elapsed() >= self.interval) {
            emit(kind, tally, self.interval);
        }
    }

    /// Logs every kind whose count has waited a whole interval (the daemon calls this on its
    /// tick, so a burst that stopped is still reported). Returns how many lines it wrote.
    pub fn flush(&self) -> usize {
        let mut kinds = self.kinds.lock().unwrap_or_else(|p| p.into_inner());
        let mut lines = 0;
        for (kind, tally) in kinds.iter_mut() {
            if tally.pending > 0 && tally.last_logged.is_none_or(|t| t.elapsed() >= self.interval) {
                emit(kind, tally, self.interval);
                lines += 1;
            }
        }
        lines
    }

    /// Events of `kind` counted and not yet logged (for tests).
    pub fn pending(&self, kind: &str) -> u64 {
        self.kinds.lock().unwrap_or_else(|p| p.into_inner()).get(kind).map_or(0, |t| t.pending)
    }
}

fn emit(kind: &str, tally: &mut Tally, interval: Duration) {
    let source = tally.last_source.as_deref().unwrap_or("?");
    if tally.pending == 1 && tally.last_logged.is_none() {
        tracing::warn!(listener = tally.surface.as_str(), source, "{kind}");
    } else {
        tracing::warn!(
            listener = tally.surface.as_str(),
            count = tally.pending,
            last_source = source,
            "{kind}: {} time(s) in the last {} s",
            tally.pending,
            interval.as_secs()
        );
    }
    tally.pending = 0;
    tally.last_logged = Some(Instant::now());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_counted_and_logged_once_per_interval() {
        let log = OutsiderLog::new(Duration::from_millis(200));
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        const KIND: &str = "Provet webhook with a wrong token";
        log.note(KIND, Surface::Public, ip);
        assert_eq!(log.pending(KIND), 0, "the first one is logged at once");
        for _ in 0..2000 {
            log.note(KIND, Surface::Public, ip);
        }
        assert_eq!(log.pending(KIND), 2000, "the rest wait for the summary");
        assert_eq!(log.flush(), 0, "not before the interval has passed");
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(log.flush(), 1);
        assert_eq!(log.pending(KIND), 0);
        assert_eq!(log.flush(), 0, "nothing new, nothing logged");
    }
}
