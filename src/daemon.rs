//! `smshub run`: opens the store, starts the HTTP server and the pipelines, talks to systemd,
//! and stops cleanly on SIGTERM/SIGINT.
//!
//! systemd contract (Type=notify): `READY=1` once the store is open and the listener is bound;
//! `STATUS=` with a one-line summary; `WATCHDOG=1` from the main loop only while every part
//! reports healthy, so a stuck loop or a stuck component gets the service restarted;
//! `STOPPING=1` when a stop begins. Without `NOTIFY_SOCKET` all of this is a no-op.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sd_notify::NotifyState;
use serde::Serialize;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::shutdown::{Shutdown, StopSignals};
use crate::store::Store;

/// How long a stop may take before the daemon gives up waiting for its tasks (systemd's
/// TimeoutStopSec is 30 s; stay under it).
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// Shared state of the running daemon, handed to the HTTP handlers and the pipelines.
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub health: Arc<Health>,
    pub started: Instant,
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
        })
    }
}

/// What each part of the daemon says about itself; the watchdog is fed only while all is well.
pub struct Health {
    started: Instant,
    inner: Mutex<BTreeMap<String, Component>>,
}

struct Component {
    problem: Option<String>,
    last_progress: Instant,
    /// A component that has not shown progress for this long counts as stuck.
    stall_after: Duration,
}

/// The `/healthz` document.
#[derive(Debug, Clone, Serialize)]
pub struct HealthReport {
    pub healthy: bool,
    pub problems: Vec<String>,
    pub uptime_s: u64,
}

impl Health {
    pub fn new() -> Health {
        Health { started: Instant::now(), inner: Mutex::new(BTreeMap::new()) }
    }

    /// Records that `component` made progress, with its current problem if any.
    pub fn update(&self, component: &str, stall_after: Duration, problem: Option<String>) {
        if let Ok(mut map) = self.inner.lock() {
            map.insert(component.to_string(), Component { problem, last_progress: Instant::now(), stall_after });
        }
    }

    pub fn report(&self) -> HealthReport {
        let mut problems = Vec::new();
        match self.inner.lock() {
            Ok(map) => {
                for (name, c) in map.iter() {
                    if let Some(p) = &c.problem {
                        problems.push(format!("{name}: {p}"));
                    }
                    let idle = c.last_progress.elapsed();
                    if idle > c.stall_after {
                        problems.push(format!("{name}: no progress for {}s", idle.as_secs()));
                    }
                }
            }
            Err(_) => problems.push("health table poisoned".into()),
        }
        HealthReport { healthy: problems.is_empty(), problems, uptime_s: self.started.elapsed().as_secs() }
    }
}

impl Default for Health {
    fn default() -> Self {
        Health::new()
    }
}

fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// Runs the daemon until SIGTERM/SIGINT. Errors at start (database, listener) are returned
/// with what to do; once running, problems are logged and shown on `/healthz`.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let mut stop = StopSignals::install().context("installing the SIGTERM/SIGINT handlers")?;
    let store = Store::open(&config.store.path)?;
    let interrupted = store.call(|db| db.recover_interrupted_parts()).await?;
    if interrupted > 0 {
        tracing::warn!(
            parts = interrupted,
            "parts were in the modem's hands when smshub last stopped; their outcome is unknown"
        );
    }
    let listener = TcpListener::bind(config.http.listen).await.with_context(|| {
        format!(
            "cannot listen on {} (http.listen in {}): is another program using the port?",
            config.http.listen,
            config.source.display()
        )
    })?;
    let local = listener.local_addr().context("reading the listener's address")?;

    let health = Arc::new(Health::new());
    let state = Arc::new(AppState {
        config: config.clone(),
        store: store.clone(),
        health: health.clone(),
        started: Instant::now(),
    });
    let (shutdown, signal) = Shutdown::new();
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(crate::web::serve(listener, state.clone(), signal.clone()));

    tracing::info!(listen = %local, db = %config.store.path.display(), version = env!("CARGO_PKG_VERSION"), "smshub is running");
    // Tests and scripts read this line to find the port when http.listen uses port 0.
    eprintln!("smshub: listening on http://{local}");
    let status = format!("running; HTTP on {local}");
    notify(&[NotifyState::Ready, NotifyState::Status(&status)]);

    let watchdog = sd_notify::watchdog_enabled();
    let tick = watchdog.map(|w| w / 2).unwrap_or(Duration::from_secs(5)).min(Duration::from_secs(5));
    let mut ticker = tokio::time::interval(tick);
    let reason = loop {
        tokio::select! {
            sig = stop.recv() => break sig,
            _ = ticker.tick() => {
                let store_ok = tokio::time::timeout(Duration::from_secs(5), store.call(|db| db.schema_version())).await;
                let problem = match store_ok {
                    Ok(Ok(_)) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(_) => Some("the database did not answer within 5 s".to_string()),
                };
                health.update("store", tick * 4, problem);
                health.update("main loop", tick * 4, None);
                let report = health.report();
                if report.healthy {
                    notify(&[NotifyState::Watchdog]);
                } else {
                    let status = format!("unhealthy: {}", report.problems.join("; "));
                    tracing::warn!(problems = %report.problems.join("; "), "unhealthy: not feeding the watchdog");
                    notify(&[NotifyState::Status(&status)]);
                }
            }
        }
    };

    tracing::info!(signal = reason, "stopping");
    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    shutdown.trigger();
    let drained = tokio::time::timeout(STOP_TIMEOUT, async {
        while let Some(res) = tasks.join_next().await {
            if let Err(e) = res {
                tracing::error!(error = %e, "a task failed while stopping");
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("some tasks did not stop within {STOP_TIMEOUT:?}; exiting anyway (the store keeps their state)");
    }
    tracing::info!("stopped");
    Ok(())
}
