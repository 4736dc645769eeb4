//! What the HTTP handlers share with the running daemon.

use std::sync::Arc;
use std::time::Instant;

use super::auth::Auth;
use super::outsiders::OutsiderLog;
use super::server::ListenerStats;
use crate::config::Config;
use crate::health::Health;
use crate::outbound::Wake;
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
}

impl AppState {
    /// The `/status` document.
    pub async fn status_json(&self) -> serde_json::Value {
        let outbox = self.store.call(|db| db.outbox_counts()).await.unwrap_or_default();
        serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "clinic_code": self.config.clinic_code,
            "uptime_s": self.started.elapsed().as_secs(),
            "health": self.health.report(),
            "outbox": outbox,
            "listeners": {
                "public": self.public_stats.json(),
                "admin": self.admin_stats.json(),
            },
        })
    }
}
