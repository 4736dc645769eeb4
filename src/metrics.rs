//! The Prometheus metrics of `GET /metrics` (admin listener): one registry, one typed handle.
//!
//! [`Metrics`] is cheap to clone and lives in `AppState`; the pipelines call its methods
//! (`sent`, `failed`, `part_sent`, `received`, `forward_attempt`, `event_delivery`,
//! `provet_request`, `http_request`). Counters start from what the store knows
//! ([`Metrics::start_from`], once at daemon start), so a restart does not reset them to zero;
//! the gauges (outbox, modems, disk) are read when scraped ([`Metrics::render`]).
//!
//! Label values are bounded: failure reasons are sorted into [`REASON_CLASSES`], HTTP routes
//! are route templates (`/api/v1/messages/{id}`, never the raw path; `unmatched` otherwise),
//! forwarders, webhooks, instances and modems are names from the config.

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::modem::driver::ModemStatus;
use crate::store::{MetricsBaseline, PendingFigures};

/// The `reason_class` values of `smshub_messages_failed_total`.
pub const REASON_CLASSES: &[&str] =
    &["opted_out", "network_refused", "unknown_outcome", "retries_exhausted", "invalid", "cancelled", "other"];

/// The class of a failure reason as the store records it (see [`REASON_CLASSES`]).
pub fn reason_class(reason: &str) -> &'static str {
    let r = reason.to_ascii_lowercase();
    if r.contains("opted out") {
        "opted_out"
    } else if r.contains("gave up after") {
        "retries_exhausted"
    } else if r.contains("+cms error") {
        "network_refused"
    } else if r.contains("may or may not") || r.contains("outcome unknown") {
        "unknown_outcome"
    } else if r.contains("cancelled") {
        "cancelled"
    } else if r.contains("phone number") || r.contains("cannot encode") || r.contains("no recipient or text") {
        "invalid"
    } else {
        "other"
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModemLabels {
    modem: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ForwardLabels {
    forwarder: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    webhook: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProvetLabels {
    instance: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    listener: &'static str,
    route: String,
    status: u16,
}

/// Send durations (handed to the modem → `+CMGS`), in seconds: 50 ms to about 100 s.
const SEND_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 60.0, 100.0];

struct Inner {
    registry: Registry,
    sent: Counter,
    failed: Family<ReasonLabels, Counter>,
    received: Counter,
    modem_sent: Family<ModemLabels, Counter>,
    modem_failed: Family<ModemLabels, Counter>,
    modem_received: Family<ModemLabels, Counter>,
    parts_sent: Counter,
    send_duration: Histogram,
    forward_attempts: Family<ForwardLabels, Counter>,
    event_deliveries: Family<WebhookLabels, Counter>,
    provet_requests: Family<ProvetLabels, Counter>,
    http_requests: Family<HttpLabels, Counter>,
    outbox_pending: Gauge,
    oldest_pending: Gauge,
    signal: Family<ModemLabels, Gauge>,
    registered: Family<ModemLabels, Gauge>,
    storage_used: Family<ModemLabels, Gauge>,
    storage_total: Family<ModemLabels, Gauge>,
    db_free: Gauge,
    modems: Mutex<Vec<(String, watch::Receiver<ModemStatus>)>>,
}

/// The handle the pipelines and handlers share.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// What the scrape reads from outside the registry.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scrape {
    pub pending: PendingFigures,
    /// Unix ms now.
    pub now_ms: i64,
    pub db_free_bytes: Option<u64>,
}

fn gauge_value(v: impl TryInto<i64>) -> i64 {
    v.try_into().unwrap_or(i64::MAX)
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::default();
        let sent = Counter::default();
        r.register("smshub_messages_sent", "Messages the modem took every part of", sent.clone());
        let failed = Family::<ReasonLabels, Counter>::default();
        r.register("smshub_messages_failed", "Messages that failed, by class of reason", failed.clone());
        let received = Counter::default();
        r.register("smshub_messages_received", "SMS received (joined messages)", received.clone());
        // Per modem beside the totals (whose names and series stay as they were, for the shipped
        // alert rules). They count from this start: Prometheus' rate() handles the reset.
        let modem_sent = Family::<ModemLabels, Counter>::default();
        r.register("smshub_modem_messages_sent", "Messages sent, by the modem that sent them", modem_sent.clone());
        let modem_failed = Family::<ModemLabels, Counter>::default();
        r.register(
            "smshub_modem_messages_failed",
            "Messages that failed while a modem's sender had them, by modem",
            modem_failed.clone(),
        );
        let modem_received = Family::<ModemLabels, Counter>::default();
        r.register(
            "smshub_modem_messages_received",
            "SMS received (joined messages), by the modem that received them",
            modem_received.clone(),
        );
        let parts_sent = Counter::default();
        r.register("smshub_parts_sent", "Parts (PDUs) the modem acknowledged with +CMGS", parts_sent.clone());
        let send_duration = Histogram::new(SEND_BUCKETS.iter().copied());
        r.register(
            "smshub_send_duration_seconds",
            "Time from handing a part to the modem to its +CMGS answer",
            send_duration.clone(),
        );
        let forward_attempts = Family::<ForwardLabels, Counter>::default();
        r.register(
            "smshub_forward_attempts",
            "Attempts to forward a received SMS, by forwarder and outcome (delivered, failed)",
            forward_attempts.clone(),
        );
        let event_deliveries = Family::<WebhookLabels, Counter>::default();
        r.register(
            "smshub_event_deliveries",
            "Event webhook calls, by webhook and outcome (delivered, failed)",
            event_deliveries.clone(),
        );
        let provet_requests = Family::<ProvetLabels, Counter>::default();
        r.register(
            "smshub_provet_requests",
            "Provet Cloud API requests, by instance and outcome (ok, not_found, unreachable, refused, bad_answer)",
            provet_requests.clone(),
        );
        let http_requests = Family::<HttpLabels, Counter>::default();
        r.register(
            "smshub_http_requests",
            "HTTP requests answered, by listener, route template and status",
            http_requests.clone(),
        );
        let outbox_pending = Gauge::default();
        r.register("smshub_outbox_pending", "Messages waiting to be sent", outbox_pending.clone());
        let oldest_pending = Gauge::default();
        r.register(
            "smshub_outbox_oldest_pending_seconds",
            "Age of the oldest message waiting to be sent (0 when none waits)",
            oldest_pending.clone(),
        );
        let signal = Family::<ModemLabels, Gauge>::default();
        r.register(
            "smshub_modem_signal_dbm",
            "Signal strength of the modem (dBm; absent when unknown)",
            signal.clone(),
        );
        let registered = Family::<ModemLabels, Gauge>::default();
        r.register(
            "smshub_modem_registered",
            "1 when the modem is ready and registered on the network, else 0",
            registered.clone(),
        );
        let storage_used = Family::<ModemLabels, Gauge>::default();
        r.register("smshub_modem_sim_storage_used", "Messages stored on the SIM/modem", storage_used.clone());
        let storage_total = Family::<ModemLabels, Gauge>::default();
        r.register("smshub_modem_sim_storage_total", "Message slots of the SIM/modem storage", storage_total.clone());
        let db_free = Gauge::default();
        r.register("smshub_db_free_bytes", "Free bytes on the database's filesystem", db_free.clone());
        // Every class appears from the start, so a rate over it is defined.
        for class in REASON_CLASSES {
            let _ = failed.get_or_create(&ReasonLabels { reason_class: class });
        }
        Metrics(Arc::new(Inner {
            registry: r,
            sent,
            failed,
            received,
            modem_sent,
            modem_failed,
            modem_received,
            parts_sent,
            send_duration,
            forward_attempts,
            event_deliveries,
            provet_requests,
            http_requests,
            outbox_pending,
            oldest_pending,
            signal,
            registered,
            storage_used,
            storage_total,
            db_free,
            modems: Mutex::new(Vec::new()),
        }))
    }

    /// Adds what the store knew at start to the counters.
    pub fn start_from(&self, b: &MetricsBaseline) {
        let m = &self.0;
        m.sent.inc_by(b.sent);
        m.received.inc_by(b.received);
        m.parts_sent.inc_by(b.parts_sent);
        for (reason, n) in &b.failed {
            m.failed
                .get_or_create(&ReasonLabels { reason_class: reason_class(reason.as_deref().unwrap_or("")) })
                .inc_by(*n);
        }
        for ((forwarder, outcome), n) in &b.forward_attempts {
            m.forward_attempts
                .get_or_create(&ForwardLabels { forwarder: forwarder.clone(), outcome: outcome.clone() })
                .inc_by(*n);
        }
        for ((webhook, outcome), n) in &b.event_deliveries {
            m.event_deliveries
                .get_or_create(&WebhookLabels { webhook: webhook.clone(), outcome: outcome.clone() })
                .inc_by(*n);
        }
    }

    /// Shows modem `name`'s status in the modem gauges.
    pub fn watch_modem(&self, name: &str, status: watch::Receiver<ModemStatus>) {
        // The per-modem counters appear from the start, so a rate over them is defined.
        let labels = ModemLabels { modem: name.to_string() };
        for family in [&self.0.modem_sent, &self.0.modem_failed, &self.0.modem_received] {
            let _ = family.get_or_create(&labels);
        }
        if let Ok(mut modems) = self.0.modems.lock() {
            modems.push((name.to_string(), status));
        }
    }

    /// Modem `modem` sent a message (every part acknowledged).
    pub fn sent(&self, modem: &str) {
        self.0.sent.inc();
        self.0.modem_sent.get_or_create(&ModemLabels { modem: modem.to_string() }).inc();
    }

    /// A message failed while modem `modem`'s sender had it (besides [`Metrics::failed`]).
    pub fn modem_failed(&self, modem: &str) {
        self.0.modem_failed.get_or_create(&ModemLabels { modem: modem.to_string() }).inc();
    }

    /// A message failed with `reason` (sorted into its class).
    pub fn failed(&self, reason: &str) {
        self.0.failed.get_or_create(&ReasonLabels { reason_class: reason_class(reason) }).inc();
    }

    /// The modem acknowledged a part `took` after it was handed over.
    pub fn part_sent(&self, took: std::time::Duration) {
        self.0.parts_sent.inc();
        self.0.send_duration.observe(took.as_secs_f64());
    }

    /// Modem `modem` received a message.
    pub fn received(&self, modem: &str) {
        self.0.received.inc();
        self.0.modem_received.get_or_create(&ModemLabels { modem: modem.to_string() }).inc();
    }

    /// One forward attempt of `forwarder` ended `delivered` or not.
    pub fn forward_attempt(&self, forwarder: &str, delivered: bool) {
        let outcome = if delivered { "delivered" } else { "failed" };
        self.0
            .forward_attempts
            .get_or_create(&ForwardLabels { forwarder: forwarder.into(), outcome: outcome.into() })
            .inc();
    }

    /// One call of event webhook `webhook`: `delivered` (2xx) or `failed`.
    pub fn event_delivery(&self, webhook: &str, delivered: bool) {
        let outcome = if delivered { "delivered" } else { "failed" };
        self.0
            .event_deliveries
            .get_or_create(&WebhookLabels { webhook: webhook.into(), outcome: outcome.into() })
            .inc();
    }

    /// One Provet API request of `instance` (outcomes: see `ProvetClient::call`).
    pub fn provet_request(&self, instance: &str, outcome: &'static str) {
        self.0
            .provet_requests
            .get_or_create(&ProvetLabels { instance: instance.into(), outcome: outcome.into() })
            .inc();
    }

    /// One answered HTTP request.
    pub fn http_request(&self, listener: &'static str, route: &str, status: u16) {
        self.0.http_requests.get_or_create(&HttpLabels { listener, route: route.into(), status }).inc();
    }

    /// The text exposition (OpenMetrics, which Prometheus reads), gauges set from `scrape` and
    /// the modems' current status.
    pub fn render(&self, scrape: &Scrape) -> String {
        let m = &self.0;
        m.outbox_pending.set(gauge_value(scrape.pending.pending));
        let age_ms = scrape.pending.oldest_created_at.map_or(0, |t| scrape.now_ms.saturating_sub(t).max(0));
        m.oldest_pending.set(age_ms / 1000);
        // Unreadable free space shows as 0: the disk alert fires, which an unreadable filesystem
        // deserves (health says the same).
        m.db_free.set(scrape.db_free_bytes.map_or(0, gauge_value));
        let modems: Vec<(String, ModemStatus)> = match m.modems.lock() {
            Ok(list) => list.iter().map(|(n, rx)| (n.clone(), rx.borrow().clone())).collect(),
            Err(_) => Vec::new(),
        };
        for (name, st) in modems {
            let labels = ModemLabels { modem: name };
            match st.signal_dbm {
                Some(dbm) => {
                    m.signal.get_or_create(&labels).set(i64::from(dbm));
                }
                None => {
                    m.signal.remove(&labels);
                }
            }
            let registered = st.state == crate::modem::driver::ModemState::Ready
                && st.registration.as_ref().is_some_and(|r| r.registered());
            m.registered.get_or_create(&labels).set(i64::from(registered));
            match st.storage {
                Some(s) => {
                    m.storage_used.get_or_create(&labels).set(i64::from(s.used));
                    m.storage_total.get_or_create(&labels).set(i64::from(s.total));
                }
                None => {
                    m.storage_used.remove(&labels);
                    m.storage_total.remove(&labels);
                }
            }
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &m.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_fall_into_the_fixed_classes() {
        let cases = [
            ("recipient opted out", "opted_out"),
            ("part 1 of 2: +CMS ERROR: 38 (network out of order)", "network_refused"),
            ("part 1 of 1: modem busy; gave up after 5 attempts", "retries_exhausted"),
            ("part 2 of 3: outcome unknown (timeout); not resent, to avoid a duplicate", "unknown_outcome"),
            ("cancelled by operator", "cancelled"),
            ("unusable phone number: too short", "invalid"),
            ("HTTP 403", "other"),
            ("", "other"),
        ];
        for (reason, class) in cases {
            assert_eq!(reason_class(reason), class, "{reason}");
            assert!(REASON_CLASSES.contains(&class));
        }
    }

    #[test]
    fn the_baseline_and_live_increments_show_in_the_text() {
        let m = Metrics::new();
        let base = MetricsBaseline {
            sent: 3,
            failed: vec![(Some("recipient opted out".into()), 2)],
            received: 4,
            parts_sent: 5,
            ..Default::default()
        };
        m.start_from(&base);
        let (_tx, rx) = watch::channel(ModemStatus::new());
        m.watch_modem("sim-b", rx);
        m.sent("sim-a");
        m.modem_failed("sim-a");
        m.part_sent(std::time::Duration::from_millis(300));
        m.forward_attempt("clinic", true);
        m.http_request("admin", "/api/v1/messages/{id}", 404);
        let text = m.render(&Scrape {
            pending: PendingFigures { pending: 2, oldest_created_at: Some(1_000) },
            now_ms: 61_000,
            db_free_bytes: Some(1 << 30),
        });
        for line in [
            "smshub_messages_sent_total 4",
            "smshub_messages_failed_total{reason_class=\"opted_out\"} 2",
            "smshub_messages_failed_total{reason_class=\"other\"} 0",
            "smshub_messages_received_total 4",
            "smshub_modem_messages_sent_total{modem=\"sim-a\"} 1",
            "smshub_modem_messages_failed_total{modem=\"sim-a\"} 1",
            "smshub_modem_messages_sent_total{modem=\"sim-b\"} 0",
            "smshub_modem_messages_received_total{modem=\"sim-b\"} 0",
            "smshub_parts_sent_total 6",
            "smshub_send_duration_seconds_count 1",
            "smshub_forward_attempts_total{forwarder=\"clinic\",outcome=\"delivered\"} 1",
            "smshub_http_requests_total{listener=\"admin\",route=\"/api/v1/messages/{id}\",status=\"404\"} 1",
            "smshub_outbox_pending 2",
            "smshub_outbox_oldest_pending_seconds 60",
            "smshub_db_free_bytes 1073741824",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
