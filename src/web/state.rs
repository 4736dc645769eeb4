//! What the HTTP handlers share with the running daemon.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::auth::Auth;
use super::outsiders::OutsiderLog;
use super::server::ListenerStats;
use crate::config::Config;
use crate::health::Health;
use crate::modem::driver::ModemStatus;
use crate::outbound::Wake;
use crate::provet::ProvetClient;
use crate::store::Store;

/// Shared state of the running daemon, handed to the HTTP handlers and the pipelines.
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub health: Arc<Health>,
    pub started: Instant,
    pub wake: Wake,
    /// Summarised warnings caused by outsiders.
    pub outsiders: Arc<OutsiderLog>,
    /// Sign-in: the failed-login throttle and the password-hashing permits.
    pub auth: Auth,
    pub public_stats: Arc<ListenerStats>,
    pub admin_stats: Arc<ListenerStats>,
    pub counts: CountsCache,
    /// The `/metrics` registry; the pipelines hold clones of it.
    pub metrics: crate::metrics::Metrics,
    /// Each modem's live status (name, watch), set once the drivers start (the listeners start
    /// first); the dashboard reads it.
    pub modems: OnceLock<Vec<(String, tokio::sync::watch::Receiver<ModemStatus>)>>,
    /// One Provet client per `[[provet]]` instance (by name), shared with its worker (one
    /// token cache); the side panel reads clients and numbers through it.
    pub provet_clients: BTreeMap<String, Arc<ProvetClient>>,
}

/// The counts `/status` shows: the outbox by state, and each modem's last 24 hours.
#[derive(Debug, Clone, Default)]
pub struct StatusCounts {
    pub outbox: BTreeMap<String, i64>,
    pub modems: BTreeMap<String, crate::store::ModemFigures>,
}

/// The counts `/status` shows, read at most once per [`CountsCache::MAX_AGE`] (on the
/// reader connection), however many callers ask: the others get the last counts.
#[derive(Default)]
pub struct CountsCache {
    last: Mutex<Option<(Instant, StatusCounts)>>,
    refreshing: AtomicBool,
}

impl CountsCache {
    pub const MAX_AGE: Duration = Duration::from_secs(1);

    pub async fn get(&self, store: &Store) -> StatusCounts {
        let cached = self.last.lock().ok().and_then(|l| l.clone());
        if let Some((at, counts)) = &cached
            && at.elapsed() < Self::MAX_AGE
        {
            return counts.clone();
        }
        if self.refreshing.swap(true, Ordering::AcqRel) {
            // Another caller is reading them right now.
            return cached.map(|(_, c)| c).unwrap_or_default();
        }
        // Cleared on drop, also when the caller goes away mid-read.
        struct Refreshing<'a>(&'a AtomicBool);
        impl Drop for Refreshing<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        let _refreshing = Refreshing(&self.refreshing);
        let since = crate::deadline::ms_before(crate::store::now_ms(), Duration::from_secs(24 * 3600));
        let fresh = store
            .read(move |db| Ok(StatusCounts { outbox: db.outbox_counts()?, modems: db.modem_figures_since(since)? }))
            .await;
        match fresh {
            Ok(counts) => {
                if let Ok(mut l) = self.last.lock() {
                    *l = Some((Instant::now(), counts.clone()));
                }
                counts
            }
            Err(_) => cached.map(|(_, c)| c).unwrap_or_default(),
        }
    }
}

impl AppState {
    /// The `/status` document.
    pub async fn status_json(&self) -> serde_json::Value {
        let counts = self.counts.get(&self.store).await;
        // Every configured modem appears, with zeros when it did nothing in the last day.
        let modems: serde_json::Map<String, serde_json::Value> = self
            .config
            .modems
            .iter()
            .map(|m| {
                let f = counts.modems.get(&m.name).copied().unwrap_or_default();
                let v = serde_json::json!({
                    "number": m.number.as_ref().map(|n| n.as_str()),
                    "last_24h": f,
                });
                (m.name.clone(), v)
            })
            .collect();
        let outbox = counts.outbox;
        serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "clinic_code": self.config.clinic_code,
            "uptime_s": self.started.elapsed().as_secs(),
            "health": self.health.report(),
            "outbox": outbox,
            "modems": modems,
            "listeners": {
                "public": self.public_stats.json(),
                "admin": self.admin_stats.json(),
            },
            "disk": {
                "free_mb": crate::store::free_bytes(&self.config.store.path).ok().map(|b| b / (1024 * 1024)),
                "min_free_mb": self.config.store.min_free_mb,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn status_counts_are_read_at_most_once_per_second_on_the_reader_connection() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let cache = CountsCache::default();
        assert!(cache.get(&store).await.outbox.values().all(|n| *n == 0));
        let to = crate::phone::PhoneNumber::parse("+358401234567", None).unwrap();
        store.call(move |db| db.insert_local("cli", &to, "x")).await.unwrap();
        let many = ask_many(&cache, &store, 50).await;
        assert!(
            many.iter().all(|c| c.outbox.get("fetched").copied().unwrap_or(0) == 0),
            "served from the cache: {many:?}"
        );
        tokio::time::sleep(CountsCache::MAX_AGE + Duration::from_millis(100)).await;
        assert_eq!(cache.get(&store).await.outbox.get("fetched"), Some(&1));
        // The reader connection cannot write.
        assert!(store.read(|db| db.kv_set("k", "v")).await.is_err());
    }

    async fn ask_many(cache: &CountsCache, store: &Store, n: usize) -> Vec<StatusCounts> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(cache.get(store).await);
        }
        out
    }
}
