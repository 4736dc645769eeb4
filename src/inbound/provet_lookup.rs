//! "Is this sender a client in Provet?", for `[keywords] unknown_sender = "not_in_provet"`:
//! `GET client/?phonenumbers__icontains=<number>` on every `[[provet]]` instance (docs/provet.md
//! §3), answers cached.
//!
//! It fails open, and it is bounded everywhere, because it sits in front of forwarding (the
//! keyword step runs before the forwarders are kicked):
//! - one batch of lookups takes at most [`BATCH_DEADLINE`]; what is not answered by then counts
//!   as "Provet could not say", and the sender is judged as with `never_texted` alone;
//! - the cache holds at most [`MAX_ENTRIES`] numbers for [`TTL`] each (a full cache drops its
//!   oldest entries), so a flood of new senders neither grows memory nor hammers Provet;
//! - failed lookups are not cached, so Provet coming back is noticed at the next message.
//!
//! Numbers are searched in the E.164 form smshub stores. A client whose number Provet keeps in
//! another form (national, with spaces) is not found; that sender then is judged by "never
//! texted", which is the behaviour without this option. Logged masked, never in full.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::phone::mask_number;
use crate::provet::ProvetClient;

/// Longest time one batch of lookups may hold up the keyword step.
pub const BATCH_DEADLINE: Duration = Duration::from_secs(3);
/// How long an answer is reused.
pub const TTL: Duration = Duration::from_secs(15 * 60);
/// Numbers cached at most.
pub const MAX_ENTRIES: usize = 2000;
/// Senders looked up per batch at most; the rest count as "could not say".
const MAX_PER_BATCH: usize = 50;

/// Cached client lookups over the configured Provet instances.
#[derive(Clone)]
pub struct ClientLookup {
    clients: Vec<Arc<ProvetClient>>,
    cache: Arc<Mutex<HashMap<String, (bool, Instant)>>>,
}

impl ClientLookup {
    pub fn new(clients: Vec<Arc<ProvetClient>>) -> ClientLookup {
        ClientLookup { clients, cache: Arc::default() }
    }

    /// Of `numbers` (E.164), those Provet has a client for. Numbers Provet could not answer for
    /// within the deadline are simply not in the set (fail open).
    pub async fn clients_among(&self, numbers: &[String]) -> HashSet<String> {
        let mut known = HashSet::new();
        let mut ask = Vec::new();
        {
            let cache = self.lock();
            for n in numbers {
                match cache.get(n) {
                    Some((true, at)) if at.elapsed() < TTL => {
                        known.insert(n.clone());
                    }
                    Some((false, at)) if at.elapsed() < TTL => {}
                    _ if !ask.contains(n) && ask.len() < MAX_PER_BATCH => ask.push(n.clone()),
                    _ => {}
                }
            }
        }
        let deadline = crate::deadline::tokio_in(BATCH_DEADLINE);
        for n in ask {
            match tokio::time::timeout_at(deadline, self.lookup(&n)).await {
                Ok(Some(is_client)) => {
                    self.remember(&n, is_client);
                    if is_client {
                        known.insert(n);
                    }
                }
                Ok(None) => {}
                Err(_) => {
                    tracing::warn!(
                        from = %mask_number(&n),
                        "Provet client lookup took longer than {} s; judging the sender without it",
                        BATCH_DEADLINE.as_secs()
                    );
                    break;
                }
            }
        }
        known
    }

    /// `Some(true)`: a client on any instance; `Some(false)`: every instance said no; `None`:
    /// some instance could not answer and none said yes.
    async fn lookup(&self, number: &str) -> Option<bool> {
        let mut undecided = false;
        for c in &self.clients {
            match c.has_client_with_number(number).await {
                Ok(true) => return Some(true),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(provet = %c.name(), from = %mask_number(number), error = %e, "Provet client lookup failed; judging the sender without it");
                    undecided = true;
                }
            }
        }
        (!undecided).then_some(false)
    }

    fn remember(&self, number: &str, is_client: bool) {
        let mut cache = self.lock();
        if cache.len() >= MAX_ENTRIES {
            cache.retain(|_, (_, at)| at.elapsed() < TTL);
        }
        if cache.len() >= MAX_ENTRIES {
            // Still full of fresh entries: drop the oldest quarter.
            let mut ages: Vec<(Instant, String)> = cache.iter().map(|(k, (_, at))| (*at, k.clone())).collect();
            ages.sort();
            for (_, k) in ages.into_iter().take(MAX_ENTRIES / 4) {
                cache.remove(&k);
            }
        }
        cache.insert(number.to_string(), (is_client, Instant::now()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (bool, Instant)>> {
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    #[cfg(test)]
    fn cached(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testbed::fake_provet::{Failure, FakeOptions, FakeProvet};

    #[tokio::test]
    async fn clients_are_found_cached_and_an_outage_fails_open() {
        let fake = FakeProvet::start(FakeOptions::default()).await.unwrap();
        fake.add_client("Helmut", "Eldridge", false, &[("+358401111111", true)]);
        let client = Arc::new(ProvetClient::new(&fake.client_config("clinic")).unwrap());
        let lookup = ClientLookup::new(vec![client]);
        let numbers = vec!["+358401111111".to_string(), "+358409999999".to_string()];
        let known = lookup.clients_among(&numbers).await;
        assert_eq!(known, HashSet::from(["+358401111111".to_string()]));
        let calls = fake.calls().len();
        assert!(fake.calls().iter().any(|c| c.path.contains("client/?phonenumbers__icontains=%2B358401111111")));
        // Cached: no new calls, same answer, even while Provet is down.
        fake.set_stall(true);
        assert_eq!(lookup.clients_among(&numbers).await, known);
        assert_eq!(fake.calls().len(), calls);
        // A new number during the outage: not known, and not cached (asked again later).
        let other = vec!["+358402222222".to_string()];
        assert!(lookup.clients_among(&other).await.is_empty());
        assert_eq!(lookup.cached(), 2);
        fake.set_stall(false);
        fake.fail_next(1, Failure::Status(503));
        assert!(lookup.clients_among(&other).await.is_empty(), "a 5xx is not an answer");
        assert_eq!(lookup.cached(), 2);
        assert!(lookup.clients_among(&other).await.is_empty());
        assert_eq!(lookup.cached(), 3, "a real 'no' is cached");
    }

    #[tokio::test]
    async fn the_cache_stays_bounded() {
        let lookup = ClientLookup::new(Vec::new());
        for i in 0..(MAX_ENTRIES + 10) {
            lookup.remember(&format!("+3584000{i:05}"), false);
        }
        assert!(lookup.cached() <= MAX_ENTRIES, "{}", lookup.cached());
    }
}
