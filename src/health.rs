//! The daemon's health table: each part reports its problem and its last progress; `/healthz`,
//! systemd's `STATUS=` and the watchdog read it.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

/// What each part of the daemon says about itself. A *problem* (modem unplugged, database
/// error) makes `/healthz` answer 503; a *stall* (no progress for longer than the component
/// allows) also stops the systemd watchdog, because only a restart can cure a stuck task.
pub struct Health {
    started: Instant,
    inner: Mutex<BTreeMap<String, Component>>,
}

struct Component {
    problem: Option<String>,
    last_progress: Instant,
    stall_after: Duration,
}

/// The `/healthz` document.
#[derive(Debug, Clone, Serialize)]
pub struct HealthReport {
    pub healthy: bool,
    pub problems: Vec<String>,
    /// Components that stopped making progress: the watchdog is not fed while this is non-empty.
    pub stuck: Vec<String>,
    pub uptime_s: u64,
}

impl Health {
    pub fn new() -> Health {
        Health { started: Instant::now(), inner: Mutex::new(BTreeMap::new()) }
    }

    /// Records `component`'s last progress and its current problem, if any.
    pub fn update(&self, component: &str, last_progress: Instant, stall_after: Duration, problem: Option<String>) {
        if let Ok(mut map) = self.inner.lock() {
            map.insert(component.to_string(), Component { problem, last_progress, stall_after });
        }
    }

    pub fn report(&self) -> HealthReport {
        let mut problems = Vec::new();
        let mut stuck = Vec::new();
        match self.inner.lock() {
            Ok(map) => {
                for (name, c) in map.iter() {
                    if let Some(p) = &c.problem {
                        problems.push(format!("{name}: {p}"));
                    }
                    let idle = c.last_progress.elapsed();
                    if idle > c.stall_after {
                        stuck.push(format!("{name}: no progress for {}s", idle.as_secs()));
                    }
                }
            }
            Err(_) => stuck.push("health table poisoned".into()),
        }
        HealthReport {
            healthy: problems.is_empty() && stuck.is_empty(),
            problems,
            stuck,
            uptime_s: self.started.elapsed().as_secs(),
        }
    }
}

impl Default for Health {
    fn default() -> Self {
        Health::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_is_unhealthy_but_only_a_stall_stops_the_watchdog() {
        let h = Health::new();
        h.update("modem main", Instant::now(), Duration::from_secs(60), Some("unplugged".into()));
        let r = h.report();
        assert!(!r.healthy);
        assert_eq!(r.problems, ["modem main: unplugged"]);
        assert!(r.stuck.is_empty(), "an unplugged modem is not cured by a restart");

        let long_ago = Instant::now().checked_sub(Duration::from_secs(120)).unwrap();
        h.update("main loop", long_ago, Duration::from_secs(20), None);
        let r = h.report();
        assert_eq!(r.stuck.len(), 1, "{r:?}");
        assert!(r.stuck[0].starts_with("main loop: no progress for"), "{r:?}");

        h.update("modem main", Instant::now(), Duration::from_secs(60), None);
        h.update("main loop", Instant::now(), Duration::from_secs(20), None);
        assert!(h.report().healthy);
    }
}
