//! The modem pool's shared view of which modems are healthy, for the senders' claims.
//!
//! Each modem's sender prefers the messages meant for its modem (`via_modem`: the modem that
//! received the SMS a reply answers, or the one the recipient last texted) and leaves another
//! modem's messages alone while that modem is healthy. "Healthy" is `Ready`, or not `Ready` for
//! less than [`GRACE`]: a modem that re-initialises for a moment keeps its conversations, one
//! that hung, vanished or never came up hands them to the others. A modem that is not in the
//! pool at all (renamed or removed from the config) is never healthy, so no message waits for
//! it.
//!
//! One tracking task per modem ([`Pool::track`]) follows the driver's status watch, so a
//! sender stuck in a `+CMGS` on its own hung modem does not hold up the others' view; when a
//! modem's grace runs out it wakes the senders, which then take its messages.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::Wake;
use crate::modem::driver::{ModemState, ModemStatus};
use crate::shutdown::ShutdownSignal;

/// How long a modem may be not `Ready` before its messages go to another modem. As long as the
/// driver's one `AT` probe ([`crate::modem::driver::DriverConfig::probe_timeout`]): a hang is
/// noticed at the prompt timeout, the state turns `Recovering`, and by the time the probe has
/// failed and the hung sender has released its message, the others may take it. Short blips
/// (a re-init after the modem announced a restart takes about a second) stay within it.
pub const GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy)]
struct Health {
    ready: bool,
    /// When `ready` last changed (or tracking began).
    since: Instant,
}

/// The pool's health map. Cheap to clone; every sender holds one.
#[derive(Clone, Debug, Default)]
pub struct Pool {
    modems: Arc<Mutex<HashMap<String, Health>>>,
}

impl Pool {
    /// The other modems whose messages `me` must leave alone right now.
    pub fn healthy_others(&self, me: &str) -> Vec<String> {
        let now = Instant::now();
        let Ok(modems) = self.modems.lock() else { return Vec::new() };
        modems
            .iter()
            .filter(|(name, h)| name.as_str() != me && (h.ready || now.duration_since(h.since) < GRACE))
            .map(|(name, _)| name.clone())
            .collect()
    }

    fn note(&self, name: &str, ready: bool) -> bool {
        let Ok(mut modems) = self.modems.lock() else { return false };
        let h = modems.entry(name.to_string()).or_insert(Health { ready, since: Instant::now() });
        if h.ready != ready {
            *h = Health { ready, since: Instant::now() };
            return true;
        }
        false
    }

    /// Follows modem `name`'s status until shutdown; wakes the senders when it becomes ready and
    /// when its grace runs out (so another modem takes its messages without waiting for a poll).
    pub async fn track(
        self,
        name: String,
        mut status: watch::Receiver<ModemStatus>,
        wake: Wake,
        mut shutdown: ShutdownSignal,
    ) {
        loop {
            let ready = status.borrow_and_update().state == ModemState::Ready;
            if self.note(&name, ready) && ready {
                Wake::all(&wake.send);
            }
            let grace_left = if ready {
                None
            } else {
                let since = self.modems.lock().ok().and_then(|m| m.get(&name).map(|h| h.since));
                since.map(|s| GRACE.saturating_sub(s.elapsed()))
            };
            tokio::select! {
                _ = shutdown.wait() => break,
                changed = status.changed() => if changed.is_err() { break },
                _ = sleep_opt(grace_left) => {
                    Wake::all(&wake.send);
                    // Nothing more to announce until the state changes again.
                    tokio::select! {
                        _ = shutdown.wait() => break,
                        changed = status.changed() => if changed.is_err() { break },
                    }
                }
            }
        }
        // A stopped driver is not healthy: its messages go to the others.
        self.note(&name, false);
    }
}

async fn sleep_opt(d: Option<Duration>) {
    match d {
        // A few ms past the grace, so the woken senders see it expired.
        Some(d) => tokio::time::sleep(d + Duration::from_millis(20)).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_modem_is_healthy_while_ready_and_for_the_grace_after() {
        let pool = Pool::default();
        pool.note("a", true);
        pool.note("b", true);
        assert_eq!(pool.healthy_others("a"), vec!["b".to_string()]);
        assert!(pool.note("b", false), "a change is reported");
        assert!(!pool.note("b", false), "the same state again is not a change");
        assert_eq!(pool.healthy_others("a"), vec!["b".to_string()], "within the grace");
        pool.modems.lock().unwrap().get_mut("b").unwrap().since -= GRACE;
        assert!(pool.healthy_others("a").is_empty(), "after the grace its messages are free");
        assert!(pool.healthy_others("c").contains(&"a".to_string()));
    }
}
