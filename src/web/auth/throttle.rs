//! Failed logins, counted per client address and per user name in a sliding window: after
//! [`FAILURES_ALLOWED`] failures within [`WINDOW`] the next attempt is refused (429 with
//! `Retry-After`) without checking the password, until the oldest failure leaves the window.
//!
//! Per address stops one machine guessing; per user stops many machines guessing one
//! password. An IPv6 client counts by its /64 (one subscriber gets a whole /64). Both tables
//! are bounded: when one is full the key whose last failure is oldest is forgotten.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures allowed per address and per user within [`WINDOW`].
pub const FAILURES_ALLOWED: usize = 5;

/// The sliding window.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Addresses or users remembered at most (each costs a few hundred bytes).
const MAX_KEYS: usize = 4096;

/// Recent failed logins.
#[derive(Debug)]
pub struct LoginThrottle {
    allowed: usize,
    window: Duration,
    addresses: Mutex<Failures<IpAddr>>,
    users: Mutex<Failures<String>>,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        LoginThrottle::new(FAILURES_ALLOWED, WINDOW)
    }
}

impl LoginThrottle {
    pub fn new(allowed: usize, window: Duration) -> LoginThrottle {
        LoginThrottle {
            allowed,
            window,
            addresses: Mutex::new(Failures::default()),
            users: Mutex::new(Failures::default()),
        }
    }

    /// `Err(wait)` when `client` or `user` (if any: a name that cannot exist is not counted
    /// per user) has used up its failures.
    pub fn check(&self, client: IpAddr, user: Option<&str>, now: Instant) -> Result<(), Duration> {
        let by_address = lock(&self.addresses).wait(&address_key(client), self.allowed, self.window, now);
        let by_user = user.and_then(|u| lock(&self.users).wait(u, self.allowed, self.window, now));
        match by_address.max(by_user) {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    /// Counts one failed login.
    pub fn failed(&self, client: IpAddr, user: Option<&str>, now: Instant) {
        lock(&self.addresses).record(address_key(client), self.allowed, self.window, now);
        if let Some(u) = user {
            lock(&self.users).record(u.to_string(), self.allowed, self.window, now);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The address as counted: IPv4 as is (also when a dual-stack listener sees it as
/// `::ffff:a.b.c.d`, which would otherwise put every IPv4 client in one /64), IPv6 by its /64.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        v4 @ IpAddr::V4(_) => v4,
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

/// Failure times per key, oldest first, at most `allowed` kept per key.
#[derive(Debug)]
struct Failures<K> {
    by_key: HashMap<K, VecDeque<Instant>>,
}

impl<K> Default for Failures<K> {
    fn default() -> Self {
        Failures { by_key: HashMap::new() }
    }
}

impl<K: Hash + Eq + Clone> Failures<K> {
    /// How long `key` must wait, if it must.
    fn wait<Q>(&mut self, key: &Q, allowed: usize, window: Duration, now: Instant) -> Option<Duration>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let times = self.by_key.get_mut(key)?;
        forget_old(times, window, now);
        if times.len() < allowed {
            return None;
        }
        let oldest = *times.front()?;
        Some((oldest + window).saturating_duration_since(now))
    }

    fn record(&mut self, key: K, allowed: usize, window: Duration, now: Instant) {
        if !self.by_key.contains_key(&key) && self.by_key.len() >= MAX_KEYS {
            self.by_key.retain(|_, times| {
                forget_old(times, window, now);
                !times.is_empty()
            });
            if self.by_key.len() >= MAX_KEYS {
                let stalest = self.by_key.iter().min_by_key(|(_, t)| t.back().copied()).map(|(k, _)| k.clone());
                if let Some(k) = stalest {
                    self.by_key.remove(&k);
                }
            }
        }
        let times = self.by_key.entry(key).or_default();
        forget_old(times, window, now);
        times.push_back(now);
        while times.len() > allowed {
            times.pop_front();
        }
    }
}

fn forget_old(times: &mut VecDeque<Instant>, window: Duration, now: Instant) {
    while times.front().is_some_and(|t| now.saturating_duration_since(*t) >= window) {
        times.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_sixth_failure_within_a_minute_waits_for_the_oldest_to_leave() {
        let t = LoginThrottle::default();
        let a = ip("203.0.113.5");
        let t0 = Instant::now();
        for i in 0..5 {
            assert_eq!(t.check(a, Some("anna"), t0 + Duration::from_secs(i)), Ok(()));
            t.failed(a, Some("anna"), t0 + Duration::from_secs(i));
        }
        assert_eq!(t.check(a, Some("anna"), t0 + Duration::from_secs(10)), Err(Duration::from_secs(50)));
        assert_eq!(t.check(a, None, t0 + Duration::from_secs(10)), Err(Duration::from_secs(50)), "per address");
        assert_eq!(
            t.check(ip("198.51.100.1"), Some("anna"), t0 + Duration::from_secs(10)),
            Err(Duration::from_secs(50)),
            "per user from another address"
        );
        assert_eq!(t.check(ip("198.51.100.1"), Some("ben"), t0 + Duration::from_secs(10)), Ok(()));
        assert_eq!(t.check(a, Some("anna"), t0 + Duration::from_secs(60)), Ok(()), "the first one left the window");
        t.failed(a, Some("anna"), t0 + Duration::from_secs(60));
        assert_eq!(t.check(a, Some("anna"), t0 + Duration::from_secs(60)), Err(Duration::from_secs(1)));
    }

    #[test]
    fn an_ipv6_client_counts_by_its_slash_64() {
        let t = LoginThrottle::new(1, WINDOW);
        let now = Instant::now();
        t.failed(ip("2001:db8:1:2::1"), None, now);
        assert!(t.check(ip("2001:db8:1:2:ffff::9"), None, now).is_err());
        assert!(t.check(ip("2001:db8:1:3::1"), None, now).is_ok());
        // IPv4 clients of a dual-stack listener are still told apart.
        t.failed(ip("::ffff:203.0.113.5"), None, now);
        assert!(t.check(ip("203.0.113.5"), None, now).is_err());
        assert!(t.check(ip("::ffff:203.0.113.6"), None, now).is_ok());
    }

    #[test]
    fn the_tables_stay_bounded_under_a_spray_of_names() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        for i in 0..(MAX_KEYS + 100) {
            t.failed(ip("203.0.113.5"), Some(&format!("user{i}")), now + Duration::from_millis(i as u64));
        }
        assert_eq!(lock(&t.users).by_key.len(), MAX_KEYS);
        assert_eq!(lock(&t.addresses).by_key[&ip("203.0.113.5")].len(), FAILURES_ALLOWED);
    }
}
