//! `smshub run`: opens the store, starts the HTTP server and the pipelines, talks to systemd,
//! and stops cleanly on SIGTERM/SIGINT.
//!
//! systemd contract (Type=notify): `READY=1` once the store is open and the listener is bound;
//! `STATUS=` with a one-line summary; `WATCHDOG=1` from the main loop only while every part
//! reports healthy, so a stuck loop or a stuck component gets the service restarted;
//! `STOPPING=1` when a stop begins. Without `NOTIFY_SOCKET` all of this is a no-op.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sd_notify::NotifyState;
use tokio::net::TcpListener;

use crate::config::{Config, ModemConfig};
use crate::health::Health;
use crate::inbound::receive::ModemReceiver;
use crate::modem::driver::{self, Connector, DriverConfig, ModemIo, ModemState};
use crate::outbound::{ModemSender, Wake};
use crate::provet::ProvetClient;
use crate::shutdown::{Shutdown, StopSignals};
use crate::store::Store;
use crate::tls::ReloadableCert;
use crate::web::AppState;
use crate::web::conn::Surface;
use crate::web::outsiders::OutsiderLog;
use crate::web::server::Listener;

/// How long a stop may take before the daemon gives up waiting for its tasks (systemd's
/// TimeoutStopSec is 30 s; stay under it).
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// The driver's settings from a `[[modem]]` section.
pub fn driver_config(m: &ModemConfig) -> DriverConfig {
    DriverConfig {
        name: m.name.clone(),
        pin: m.pin.as_ref().map(|p| p.expose().to_string()),
        profile: m.profile,
        send_timeout: m.send_timeout,
        min_send_interval: m.min_send_interval,
        ..DriverConfig::default()
    }
}

/// Opens the modem's device (again after every unplug) with classic termios.
pub fn serial_connector(m: &ModemConfig) -> Connector {
    let device = m.device.clone();
    let baud = m.baud;
    Arc::new(move || {
        let device = device.clone();
        Box::pin(async move { crate::modem::tty::open_serial(&device, baud).map(|s| Box::new(s) as Box<dyn ModemIo>) })
    })
}

fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// One Provet client per `[[provet]]` instance, by name. A client that cannot be built from its
/// config (bad URL, plain http not allowed) stops the start.
fn provet_clients(
    config: &Config,
    metrics: &crate::metrics::Metrics,
) -> anyhow::Result<BTreeMap<String, Arc<ProvetClient>>> {
    let mut clients = BTreeMap::new();
    for p in &config.provet {
        let client = ProvetClient::new(p)
            .with_context(|| format!("cannot start the Provet client (config {})", config.source.display()))?
            .with_metrics(metrics.clone());
        clients.insert(p.name.clone(), Arc::new(client));
    }
    Ok(clients)
}

/// One [`crate::outbound::provet::ProvetWorker`] per `[[provet]]` instance.
fn spawn_provet_workers(
    config: &Arc<Config>,
    clients: &BTreeMap<String, Arc<ProvetClient>>,
    store: &Store,
    wake: &Wake,
    metrics: &crate::metrics::Metrics,
    signal: &crate::shutdown::ShutdownSignal,
    tasks: &mut tokio::task::JoinSet<()>,
) -> anyhow::Result<()> {
    for p in &config.provet {
        let Some(client) = clients.get(&p.name) else { continue };
        let worker = crate::outbound::provet::ProvetWorker {
            config: p.clone(),
            client: client.clone(),
            store: store.clone(),
            wake: wake.clone(),
            default_country: config.default_country.clone(),
            max_age_days: config.outbound.max_age_days,
            metrics: metrics.clone(),
        };
        tasks.spawn(worker.run(signal.clone()));
    }
    Ok(())
}

/// Binds one listener and loads its certificate; a failure stops the start with what to do.
async fn bind(
    config: &Config,
    section: &str,
    l: &crate::config::ListenerConfig,
    surface: Surface,
) -> anyhow::Result<Listener> {
    let tcp = TcpListener::bind(l.listen).await.with_context(|| {
        format!(
            "cannot listen on {} ({section}.listen in {}): is another program using the port?",
            l.listen,
            config.source.display()
        )
    })?;
    let tls = match &l.tls {
        Some(files) => Some(Arc::new(
            ReloadableCert::load(&files.cert, &files.key)
                .map_err(|e| anyhow::anyhow!("{section}.tls_cert_file in {}: {e}", config.source.display()))?,
        )),
        None => None,
    };
    Ok(Listener { surface, tcp, config: l.clone(), tls })
}

/// SIGHUP (`systemctl reload smshub`): read the certificates again.
struct Reload(Option<tokio::signal::unix::Signal>);

impl Reload {
    fn install() -> std::io::Result<Reload> {
        let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        Ok(Reload(Some(hup)))
    }

    async fn recv(&mut self) {
        match &mut self.0 {
            Some(hup) => {
                if hup.recv().await.is_none() {
                    self.0 = None;
                }
            }
            None => std::future::pending().await,
        }
    }
}

/// Reloads every listener's certificate; one that fails to load keeps the old one and says why.
fn reload_certificates(certificates: &[Arc<ReloadableCert>]) {
    notify(&[NotifyState::Reloading]);
    if certificates.is_empty() {
        tracing::info!("SIGHUP: no TLS listener, nothing to reload");
    }
    for cert in certificates {
        match cert.reload() {
            Ok(()) => tracing::info!(certificate = %cert.cert_path().display(), "SIGHUP: TLS certificate reloaded"),
            Err(e) => tracing::error!(
                certificate = %cert.cert_path().display(),
                "SIGHUP: TLS certificate not reloaded, the old one stays in use: {e}"
            ),
        }
    }
    notify(&[NotifyState::Ready]);
}

/// Runs the daemon until SIGTERM/SIGINT. Errors at start (database, listener) are returned
/// with what to do; once running, problems are logged and shown on `/healthz`.
pub async fn run(config: Config) -> anyhow::Result<()> {
    // Installed before READY=1, so an early SIGTERM is a clean stop, not a kill.
    let mut signals = StopSignals::install().context("installing the SIGTERM/SIGINT handlers")?;
    run_until(config, async move { signals.recv().await }).await
}

/// Runs the daemon until `stop` resolves (with the reason it gives). `smshub demo` stops it
/// this way; `run` passes the signal handlers.
pub async fn run_until(config: Config, stop: impl std::future::Future<Output = &'static str>) -> anyhow::Result<()> {
    let config = Arc::new(config);
    tokio::pin!(stop);
    let store = Store::open(&config.store.path)?;
    // Events are written by the store thread in the transaction of each change; it wakes the
    // event webhooks' task after each.
    let wake = Wake::default();
    let routes = config.event_routes().waking(wake.events.clone());
    store
        .call(move |db| {
            db.route_events(routes);
            // Syncs where a side effect depends on a commit, not at every commit (store/durability.rs).
            db.defer_syncs()
        })
        .await?;
    let interrupted = store.call(|db| db.recover_interrupted_parts()).await?;
    store.call(|db| db.release_all_claims()).await?;
    store.call(|db| db.prune_sessions(crate::store::now_ms())).await?;
    if interrupted > 0 {
        tracing::warn!(
            parts = interrupted,
            "parts were in the modem's hands when smshub last stopped; their outcome is unknown"
        );
    }
    // Before the listeners say they are up: SIGHUP's default action would end the process.
    let mut reload = Reload::install().context("installing the SIGHUP handler")?;
    let public = bind(&config, "http", &config.http.listener, Surface::Public).await?;
    let admin = bind(&config, "admin", &config.admin.listener, Surface::Admin).await?;
    let local = public.tcp.local_addr().context("reading the listener's address")?;
    let admin_local = admin.tcp.local_addr().context("reading the admin listener's address")?;
    let scheme = |l: &Listener| if l.tls.is_some() { "https" } else { "http" };
    let (public_url, admin_url) =
        (format!("{}://{local}", scheme(&public)), format!("{}://{admin_local}", scheme(&admin)));
    let certificates: Vec<Arc<ReloadableCert>> = public.tls.iter().chain(admin.tls.iter()).cloned().collect();

    // Counters start from what the store knows, so a restart does not reset them.
    let metrics = crate::metrics::Metrics::new();
    match store.read(|db| db.metrics_baseline()).await {
        Ok(baseline) => metrics.start_from(&baseline),
        Err(e) => tracing::warn!(error = %e, "cannot read the metrics' start values; counters start at zero"),
    }
    let provet_clients = provet_clients(&config, &metrics)?;
    let health = Arc::new(Health::new());
    let outsiders = Arc::new(OutsiderLog::default());
    let state = Arc::new(AppState {
        config: config.clone(),
        store: store.clone(),
        health: health.clone(),
        started: Instant::now(),
        wake: wake.clone(),
        outsiders: outsiders.clone(),
        auth: Default::default(),
        public_stats: Arc::default(),
        admin_stats: Arc::default(),
        counts: Default::default(),
        metrics: metrics.clone(),
        modems: Default::default(),
        provet_clients: provet_clients.clone(),
    });
    let (shutdown, signal) = Shutdown::new();
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(crate::web::server::serve(
        public,
        crate::web::public_router(state.clone()),
        state.public_stats.clone(),
        outsiders.clone(),
        signal.clone(),
    ));
    tasks.spawn(crate::web::server::serve(
        admin,
        crate::web::admin_router(state.clone()),
        state.admin_stats.clone(),
        outsiders.clone(),
        signal.clone(),
    ));

    let forwarders: Vec<String> = config.forwarders.iter().map(|f| f.name().to_string()).collect();
    // One Notify for every receiver: the Forwarders task waits on it.
    let wake_forward = Arc::new(tokio::sync::Notify::new());
    let forwarding = crate::inbound::deliver::Forwarders::new(
        store.clone(),
        config.clone(),
        wake_forward.clone(),
        wake.clone(),
        metrics.clone(),
    );
    tasks.spawn(forwarding.run(signal.clone()));
    if !config.event_webhooks.is_empty() {
        let hooks = crate::events::deliver::EventWebhooks::new(
            store.clone(),
            config.clone(),
            wake.events.clone(),
            metrics.clone(),
        );
        tasks.spawn(hooks.run(signal.clone()));
    }
    let mut modems = Vec::new();
    let mut modem_stall_after = Duration::from_secs(300);
    let pool = crate::outbound::pool::Pool::default();
    for m in &config.modems {
        let (handle, events, driver_task) = driver::spawn(driver_config(m), serial_connector(m), signal.receiver());
        // The driver may sit in one +CMGS for send_timeout: only much longer than that is "stuck".
        modem_stall_after =
            modem_stall_after.max(m.send_timeout.saturating_mul(2).saturating_add(Duration::from_secs(60)));
        tasks.spawn(async move {
            if let Err(e) = driver_task.await {
                tracing::error!(error = %e, "modem driver task failed");
            }
        });
        let sender = ModemSender {
            modem_name: m.name.clone(),
            modem: handle.clone(),
            store: store.clone(),
            config: config.outbound.clone(),
            wake: wake.clone(),
            metrics: metrics.clone(),
            pool: pool.clone(),
        };
        metrics.watch_modem(&m.name, handle.status());
        tasks.spawn(pool.clone().track(m.name.clone(), handle.status(), wake.clone(), signal.clone()));
        tasks.spawn(sender.run(signal.clone()));
        let receiver = ModemReceiver {
            modem_name: m.name.clone(),
            modem: handle.clone(),
            store: store.clone(),
            forwarders: forwarders.clone(),
            concat_timeout: config.inbound.concat_timeout,
            wake_forward: wake_forward.clone(),
            metrics: metrics.clone(),
        };
        tasks.spawn(receiver.run(events, signal.clone()));
        if !config.event_webhooks.is_empty() {
            let watch =
                crate::events::modem::watch_modem(m.name.clone(), handle.status(), store.clone(), signal.clone());
            tasks.spawn(watch);
        }
        modems.push((m.name.clone(), handle));
    }

    let _ = state.modems.set(modems.iter().map(|(name, handle)| (name.clone(), handle.status())).collect());
    spawn_provet_workers(&config, &provet_clients, &store, &wake, &metrics, &signal, &mut tasks)?;
    if let Some(path) = &config.admin.socket {
        // Without it `smshub send` still works (it writes the database): a warning, not a stop.
        match crate::local_socket::bind(path) {
            Ok(listener) => {
                tasks.spawn(crate::local_socket::serve(
                    listener,
                    path.clone(),
                    store.clone(),
                    wake.clone(),
                    config.default_country.clone(),
                    signal.clone(),
                ));
            }
            Err(e) => tracing::warn!(
                socket = %path.display(),
                error = %e,
                "cannot listen on [admin] socket; `smshub send` will write the database and the daemon sees it within a minute"
            ),
        }
    }
    tasks.spawn(retention(store.clone(), config.store.keep_days, signal.clone()));
    tasks.spawn(crate::memory::run(signal.clone()));

    tracing::info!(listen = %public_url, admin = %admin_url, db = %config.store.path.display(), version = env!("CARGO_PKG_VERSION"), "smshub is running");
    // Tests and scripts read these lines to find the ports when a listen address uses port 0
    // (the admin line first: the public one says the daemon is up).
    eprintln!("smshub: admin on {admin_url}");
    eprintln!("smshub: listening on {public_url}");
    let mut last_status = format!("running; HTTP on {local}, admin on {admin_local}");
    notify(&[NotifyState::Ready, NotifyState::Status(&last_status)]);

    let watchdog = sd_notify::watchdog_enabled();
    let tick = watchdog.map(|w| w / 2).unwrap_or(Duration::from_secs(5)).min(Duration::from_secs(5));
    let mut ticker = tokio::time::interval(tick);
    let reason = loop {
        tokio::select! {
            sig = &mut stop => break sig,
            _ = reload.recv() => reload_certificates(&certificates),
            _ = ticker.tick() => {
                outsiders.flush();
                // Syncs old deferred commits, checkpoints an idle WAL, and writes a heartbeat when
                // nothing was committed for a while (a full disk fails writes while reads work).
                let store_ok = tokio::time::timeout(Duration::from_secs(5), store.call(|db| db.tick())).await;
                let problem = match store_ok {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(format!("cannot write the database: {e}")),
                    Err(_) => Some("the database did not answer within 5 s".to_string()),
                };
                let now = Instant::now();
                health.update("store", now, tick * 4, problem);
                health.update("disk", now, tick * 4, crate::store::disk_problem(&config.store.path, config.store.min_free_mb));
                health.update("main loop", now, tick * 4, None);
                for (name, modem) in &modems {
                    let st = modem.status().borrow().clone();
                    let problem = (st.state != ModemState::Ready).then(|| st.state.to_string());
                    health.update(&format!("modem {name}"), st.last_progress, modem_stall_after, problem);
                }
                let report = health.report();
                if report.stuck.is_empty() {
                    notify(&[NotifyState::Watchdog]);
                } else {
                    tracing::error!(stuck = %report.stuck.join("; "), "a component is stuck: not feeding the watchdog");
                }
                let status = if report.healthy {
                    format!("running; HTTP on {local}, admin on {admin_local}; {} modem(s) ready", modems.len())
                } else {
                    format!("degraded: {}", report.problems.iter().chain(&report.stuck).cloned().collect::<Vec<_>>().join("; "))
                };
                if status != last_status {
                    notify(&[NotifyState::Status(&status)]);
                    last_status = status;
                }
            }
        }
    };

    tracing::info!(signal = reason, "stopping");
    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    shutdown.trigger();
    let drained = tokio::time::timeout(STOP_TIMEOUT, async {
        while let Some(res) = tasks.join_next().await {
            match res {
                Ok(()) => {}
                // The runtime itself is going away (an in-process daemon whose host returned):
                // nothing failed, the task was dropped.
                Err(e) if e.is_cancelled() => tracing::debug!(error = %e, "a task was cancelled while stopping"),
                Err(e) => tracing::error!(error = %e, "a task failed while stopping"),
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

/// `[store] keep_days`, applied a minute after start and then daily, one small batch per store
/// call so the pipeline's jobs run between batches.
async fn retention(store: crate::store::Store, keep_days: u64, mut shutdown: crate::shutdown::ShutdownSignal) {
    const FIRST_RUN: Duration = Duration::from_secs(60);
    const EVERY: Duration = Duration::from_secs(24 * 3600);
    let mut wait = FIRST_RUN;
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = EVERY;
        let mut total = crate::store::PurgeCounts::default();
        loop {
            if shutdown.is_triggered() {
                return;
            }
            match store.call(move |db| db.purge_one_batch(keep_days)).await {
                Ok(batch) if batch.is_empty() => break,
                Ok(batch) => total.add(&batch),
                Err(e) => {
                    tracing::error!(error = %e, "retention: purging old data failed; trying again tomorrow");
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if !total.is_empty() {
            tracing::info!(
                keep_days,
                outbox = total.outbox_erased,
                inbox = total.inbox_erased,
                attempts = total.attempts_deleted,
                events = total.events_deleted + total.webhook_calls_deleted,
                audit = total.audit_deleted,
                "retention: erased old texts and numbers"
            );
        }
    }
}
