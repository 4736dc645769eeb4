//! The TOML configuration: file → typed [`Config`], with errors that name the file, the line,
//! the key and what is wrong, because the person reading them is a clinic's IT contact
//! looking at a text file over SSH.
//!
//! Loading happens in two steps: serde parses the text into `Raw*` structs
//! (`deny_unknown_fields`, so a misspelt key is an error, never a silent default), then
//! [`Config::from_raw`] checks meaning (URLs, numbers, names) and resolves secrets.
//!
//! Secrets (Provet client secret, webhook token, SIM PIN, Twilio auth token, SMTP password,
//! custom-integration salt) can be given three ways: inline (`client_secret = "..."`), as a
//! file (`client_secret_file = "/etc/smshub/provet-secret"`, which must not be readable by
//! other users), or as a systemd credential (`client_secret_credential = "provet-secret"`,
//! read from `$CREDENTIALS_DIRECTORY`). Exactly one way per secret.

mod event_webhook;
mod listener;
mod raw;
mod source;

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::phone::PhoneNumber;
pub use event_webhook::{EnvelopeVersion, EventWebhookConfig};
pub use listener::{ConnLimits, ListenerConfig, TlsFiles};
use raw::*;
use source::Context;

/// Where smshub looks for its config when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/smshub/smshub.toml";

/// A config error, printed as `file:line: key: reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub key: Option<String>,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// A secret value: never printed, never logged. `Debug` and `Display` show `****`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret itself, for the one place that must use it (an HTTP header, an HMAC key).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("****")
    }
}

// ---------------------------------------------------------------------------------------------
// The effective config (what the program uses)
// ---------------------------------------------------------------------------------------------

/// The whole effective configuration, defaults filled in and secrets resolved.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// The file it came from (for messages).
    pub source: PathBuf,
    pub clinic_code: Option<String>,
    /// Calling code (e.g. "358") used for national numbers given without `+`.
    pub default_country: Option<String>,
    pub store: StoreConfig,
    pub http: HttpConfig,
    pub admin: AdminConfig,
    pub logging: LoggingConfig,
    pub modems: Vec<ModemConfig>,
    pub provet: Vec<ProvetConfig>,
    pub outbound: OutboundConfig,
    pub inbound: InboundConfig,
    pub forwarders: Vec<ForwarderConfig>,
    pub smtp: Option<SmtpConfig>,
    pub keywords: KeywordsConfig,
    pub replies: RepliesConfig,
    pub api: ApiConfig,
    pub custom_integration: Option<CustomIntegrationConfig>,
    pub event_webhooks: Vec<EventWebhookConfig>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StoreConfig {
    pub path: PathBuf,
    /// `/healthz` turns unhealthy when the database's filesystem has less free space (MB).
    pub min_free_mb: u64,
    /// Retention: texts and numbers of finished messages older than this are erased (rows and
    /// counts stay); attempt and log rows older than this are deleted.
    pub keep_days: u64,
}

/// `[http]`: the public listener (what Provet Cloud and staff browsers inside Provet reach).
#[derive(Debug, Clone, Serialize)]
pub struct HttpConfig {
    pub public_url: Option<String>,
    #[serde(flatten)]
    pub listener: ListenerConfig,
}

/// `[admin]`: the admin listener (web UI, local API, `/metrics`, `/status`).
#[derive(Debug, Clone, Serialize)]
pub struct AdminConfig {
    #[serde(flatten)]
    pub listener: ListenerConfig,
    /// How long a session lasts from login (absolute, not renewed by use).
    #[serde(rename = "session_lifetime_s", serialize_with = "as_seconds")]
    pub session_lifetime: Duration,
    /// The Unix socket on which `smshub send` hands messages to the running daemon (mode 0660);
    /// by default `smshub.sock` beside the database, `socket = ""` for none.
    pub socket: Option<PathBuf>,
}

/// The database's default path.
const DEFAULT_DB_PATH: &str = "/var/lib/smshub/smshub.db";

/// The default session lifetime: a working day.
pub const DEFAULT_SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// The longest session lifetime accepted: 30 days.
const MAX_SESSION_LIFETIME_S: u64 = 30 * 24 * 3600;

fn as_seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// journald when stderr is the journal (`JOURNAL_STREAM`), readable lines otherwise.
    Auto,
    Journald,
    Stderr,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoggingConfig {
    pub level: String,
    pub format: LogFormat,
}

/// The modem family (`profile = "auto" | "sim800" | ...`): the driver's own type.
pub use crate::modem::profile::ProfileKind as ModemProfile;

#[derive(Debug, Clone, Serialize)]
pub struct ModemConfig {
    pub name: String,
    pub device: PathBuf,
    pub baud: u32,
    pub pin: Option<Secret>,
    pub profile: ModemProfile,
    pub min_send_interval: Duration,
    pub send_timeout: Duration,
    /// The SIM's own number (`number`), when the clinic names it: forwards of what this modem
    /// receives carry it as their `To` / `sms_number`, instead of the forwarder's configured one.
    pub number: Option<PhoneNumber>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProvetConfig {
    pub name: String,
    pub base_url: String,
    pub token_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub webhook_token: Option<Secret>,
    pub poll_interval: Duration,
    /// How often to look for due `send_method: 4` reminders (`reminder_poll_s`); zero = never
    /// (only the reminders-page button sends them).
    pub reminder_poll: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub request_timeout: Duration,
    pub allow_insecure_http: bool,
    /// The reminders button of this instance: its own `[provet.custom_integration]`, else the
    /// top-level `[custom_integration]`, else none (the button is refused).
    pub custom_integration: Option<CustomIntegrationConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownOutcome {
    /// Report the message failed in Provet (staff can resend it): the default, because an
    /// SMS sent twice to a client is worse than one they have to resend by hand.
    MarkFailed,
    Resend,
}

#[derive(Debug, Clone, Serialize)]
pub struct OutboundConfig {
    pub on_unknown_outcome: UnknownOutcome,
    pub max_attempts: u32,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub request_status_report: bool,
    /// Provet work older than this many days (external SMS by `created_date`) is not sent but
    /// marked failed as too old: after a long outage, "your appointment is tomorrow" may be
    /// wrong by now (`max_age_days`, default 2).
    pub max_age_days: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct InboundConfig {
    pub concat_timeout: Duration,
    /// The body forwarded for an MMS notification or another WAP push (`mms_placeholder`).
    pub mms_placeholder: String,
    /// The body forwarded for another port-addressed binary SMS (`binary_placeholder`).
    pub binary_placeholder: String,
}

/// Default `[inbound] mms_placeholder`.
pub const DEFAULT_MMS_PLACEHOLDER: &str = "[MMS received; this gateway cannot fetch MMS content]";
/// Default `[inbound] binary_placeholder`.
pub const DEFAULT_BINARY_PLACEHOLDER: &str = "[binary SMS received; this gateway cannot show it]";

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ForwarderConfig {
    Twilio(TwilioForwarder),
    Pbx(PbxForwarder),
}

impl ForwarderConfig {
    pub fn name(&self) -> &str {
        match self {
            ForwarderConfig::Twilio(t) => &t.name,
            ForwarderConfig::Pbx(p) => &p.name,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TwilioForwarder {
    pub name: String,
    pub url: String,
    pub account_sid: String,
    pub auth_token: Secret,
    pub to_number: PhoneNumber,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub give_up_after: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct PbxForwarder {
    pub name: String,
    pub url: String,
    pub service_id: String,
    pub sms_number: String,
    pub fallback_email: Option<String>,
    pub max_attempts: u32,
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// SMTP submission with STARTTLS (port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Implicit,
    /// Plain text: only for a local test sink.
    None,
}

#[derive(Debug, Clone, Serialize)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub from: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct KeywordsConfig {
    pub help_reply: Option<String>,
    pub stop_reply: Option<String>,
    pub start_reply: Option<String>,
    pub confirm_reply: Option<String>,
    pub cancel_reply: Option<String>,
    pub reschedule_reply: Option<String>,
    pub unknown_sender_reply: Option<String>,
    /// Who counts as unknown for `unknown_sender_reply` (`unknown_sender`).
    pub unknown_sender: UnknownSender,
    pub reply_min_interval: Duration,
}

/// `[keywords] unknown_sender`: who gets the `unknown_sender_reply`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownSender {
    /// A number smshub never texted (the default; needs nothing but the store).
    #[default]
    NeverTexted,
    /// A number smshub never texted and Provet has no client for (`client/?phonenumbers__icontains=`,
    /// cached; when Provet cannot answer in time, as `never_texted`).
    NotInProvet,
}

/// `[api]`: the local send API (`POST /api/v1/messages` on the admin listener).
#[derive(Debug, Clone, Serialize)]
pub struct ApiConfig {
    /// Messages the API accepts per rolling hour, all tokens together; more is 429 with
    /// `Retry-After`. The default (1000) is above what one modem sends in an hour (about 10 a
    /// minute), so it only stops a runaway program.
    pub per_hour: u32,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig { per_hour: 1000 }
    }
}

/// `[replies]`: the one policy for every automatic SMS (keyword replies, the unknown-sender
/// reply, TwiML replies). A reply it refuses is recorded as an outbox row `refused` and never sent.
#[derive(Debug, Clone, Serialize)]
pub struct RepliesConfig {
    /// Automatic SMS to one number in the last hour, at most.
    pub per_number_per_hour: u32,
    /// Automatic SMS to anyone in the last hour, at most.
    pub per_hour: u32,
    /// Parts (PDUs) of one automatic SMS, at most.
    pub max_parts: u32,
    /// E.164 prefixes (`+358`, `+3584012`) a TwiML reply may go to when its `to` is not the
    /// sender. Empty: only the sender.
    pub allowed_destinations: Vec<String>,
}

impl Default for RepliesConfig {
    fn default() -> Self {
        RepliesConfig { per_number_per_hour: 10, per_hour: 200, max_parts: 3, allowed_destinations: Vec::new() }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CustomIntegrationConfig {
    pub salt: Secret,
    pub max_age: Duration,
    pub timestamp_param: String,
    pub verification_param: String,
    /// How long a side-panel URL stays valid (Provet makes it when the page loads, and the
    /// panel may be reloaded long after).
    pub panel_max_age: Duration,
    /// The parameter holding the client (or patient) id in a side-panel URL.
    pub client_param: String,
    /// Origins allowed to frame the side panel (`Content-Security-Policy: frame-ancestors`);
    /// empty: the origin of each `[[provet]] base_url`.
    pub frame_ancestors: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

impl Config {
    /// The SIM number of modem `modem`, when its `[[modem]]` section names one.
    pub fn modem_number(&self, modem: &str) -> Option<&PhoneNumber> {
        self.modems.iter().find(|m| m.name == modem).and_then(|m| m.number.as_ref())
    }

    /// Reads and checks the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: None,
            key: None,
            reason: format!("cannot read the config file: {e}"),
        })?;
        let config = Config::parse(path, &text)?;
        let cx = Context { file: path, text: &text };
        cx.check_inline_secrets_are_private(&config)?;
        Ok(config)
    }

    /// Parses and checks config `text` as if read from `path` (errors name it), without the
    /// file-permission check of [`Config::load`]. `*_file` and `*_credential` secrets are still
    /// read. The fuzz target `config` drives this.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let cx = Context { file: path, text };
        let raw: RawConfig = toml::from_str(text).map_err(|e| cx.toml_error(&e))?;
        Config::from_raw(&cx, raw)
    }

    fn from_raw(cx: &Context<'_>, mut raw: RawConfig) -> Result<Config, ConfigError> {
        let default_country = match raw.default_country {
            Some(cc) => {
                let digits = cc.trim_start_matches('+');
                if digits.is_empty() || digits.len() > 3 || !digits.chars().all(|c| c.is_ascii_digit()) {
                    return Err(cx.error(
                        &[],
                        "default_country",
                        format!("{cc:?} is not a country calling code (1 to 3 digits, e.g. \"358\")"),
                    ));
                }
                Some(digits.to_string())
            }
            None => None,
        };
        let http = HttpConfig {
            listener: ListenerConfig::from_raw(cx, "http", &raw.http, "0.0.0.0:8080")?,
            public_url: raw.http.public_url.clone(),
        };
        if raw.admin.public_url.is_some() {
            return Err(cx.error(
                &["admin"],
                "public_url",
                "belongs in [http]: the admin listener is not public".into(),
            ));
        }
        if raw.http.session_lifetime_s.is_some() {
            return Err(cx.error(
                &["http"],
                "session_lifetime_s",
                "belongs in [admin]: people sign in on the admin listener only".into(),
            ));
        }
        let session_lifetime = match raw.admin.session_lifetime_s {
            None => DEFAULT_SESSION_LIFETIME,
            Some(s) if (1..=MAX_SESSION_LIFETIME_S).contains(&s) => Duration::from_secs(s),
            Some(s) => {
                return Err(cx.error(
                    &["admin"],
                    "session_lifetime_s",
                    format!(
                        "{s} is out of range: give 1 to {MAX_SESSION_LIFETIME_S} (30 days); the default is 43200 (12 h)"
                    ),
                ));
            }
        };
        if raw.http.socket.is_some() {
            return Err(cx.error(&["http"], "socket", "belongs in [admin]: it is the local CLI's way in".into()));
        }
        // Beside the database by default: the state directory exists, belongs to the service and
        // is reachable by group smshub (the admins), and no other unit setting is needed.
        let socket = match &raw.admin.socket {
            Some(p) if p.as_os_str().is_empty() => None,
            Some(p) => Some(p.clone()),
            None => {
                let db = raw.store.path.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_DB_PATH));
                Some(db.parent().unwrap_or(Path::new(".")).join("smshub.sock"))
            }
        };
        let admin = AdminConfig {
            listener: ListenerConfig::from_raw(cx, "admin", &raw.admin, "127.0.0.1:8081")?,
            session_lifetime,
            socket,
        };
        let (a, h) = (admin.listener.listen, http.listener.listen);
        let overlap = a.ip() == h.ip() || a.ip().is_unspecified() || h.ip().is_unspecified();
        if a.port() == h.port() && a.port() != 0 && overlap {
            return Err(cx.error(
                &["admin"],
                "listen",
                format!("{a} overlaps [http] listen {h}: the admin listener needs its own port"),
            ));
        }
        let logging = LoggingConfig {
            level: raw.logging.level.unwrap_or_else(|| "info".into()),
            format: raw.logging.format.unwrap_or(LogFormat::Auto),
        };
        if tracing_subscriber::EnvFilter::try_new(&logging.level).is_err() {
            return Err(cx.error(
                &["logging"],
                "level",
                format!(
                    "{:?} is not a log level (error, warn, info, debug, trace, or a filter like \"smshub=debug\")",
                    logging.level
                ),
            ));
        }

        let mut names = BTreeSet::new();
        let mut modems = Vec::new();
        for (i, m) in raw.modem.into_iter().enumerate() {
            let section = ["modem"];
            check_name(cx, &section, &m.name)?;
            if !names.insert(("modem", m.name.clone())) {
                return Err(cx.error_at(&section, i, "name", format!("modem name {:?} is used twice", m.name)));
            }
            let pin = cx.secret(&section, i, "pin", m.pin, m.pin_file, m.pin_credential)?;
            if let Some(pin) = &pin {
                let p = pin.expose();
                if !(4..=8).contains(&p.len()) || !p.chars().all(|c| c.is_ascii_digit()) {
                    return Err(cx.error_at(&section, i, "pin", "a SIM PIN is 4 to 8 digits".to_string()));
                }
            }
            let number = match &m.number {
                Some(n) => Some(
                    PhoneNumber::parse(n, default_country.as_deref())
                        .map_err(|e| cx.error_at(&section, i, "number", e.to_string()))?,
                ),
                None => None,
            };
            if let Some(n) = &number
                && modems.iter().any(|o: &ModemConfig| o.number.as_ref() == Some(n))
            {
                // Two SIMs cannot share a number: one of the two values is a typo.
                return Err(cx.error_at(
                    &section,
                    i,
                    "number",
                    format!("{} is the number of another modem", n.masked()),
                ));
            }
            modems.push(ModemConfig {
                number,
                name: m.name,
                device: m.device,
                baud: m.baud.unwrap_or(115_200),
                pin,
                profile: m.profile.unwrap_or(ModemProfile::Auto),
                min_send_interval: cx.millis_in(
                    &section,
                    i,
                    "min_send_interval_ms",
                    m.min_send_interval_ms,
                    0,
                    0..=60_000,
                )?,
                send_timeout: cx.seconds_in(&section, i, "send_timeout_s", m.send_timeout_s, 120, 1..=HOUR)?,
            });
        }

        let mut instance_buttons: Vec<Option<RawCustomIntegration>> =
            raw.provet.iter_mut().map(|p| p.custom_integration.take()).collect();
        let mut provet = Vec::new();
        for (i, p) in raw.provet.into_iter().enumerate() {
            let section = ["provet"];
            check_name(cx, &section, &p.name)?;
            if !names.insert(("provet", p.name.clone())) {
                return Err(cx.error_at(&section, i, "name", format!("provet name {:?} is used twice", p.name)));
            }
            let allow_insecure_http = p.allow_insecure_http.unwrap_or(false);
            let base_url = normalise_base_url(&p.base_url);
            check_url(cx, &section, i, "base_url", &base_url, allow_insecure_http)?;
            let token_url = match p.token_url {
                Some(u) => u,
                None => default_token_url(&base_url).ok_or_else(|| {
                    cx.error_at(
                        &section,
                        i,
                        "token_url",
                        "not given, and base_url does not end in /api/0.1/ so it cannot be derived".to_string(),
                    )
                })?,
            };
            check_url(cx, &section, i, "token_url", &token_url, allow_insecure_http)?;
            let client_secret = cx
                .secret(
                    &section,
                    i,
                    "client_secret",
                    p.client_secret,
                    p.client_secret_file,
                    p.client_secret_credential,
                )?
                .ok_or_else(|| {
                    cx.error_at(
                        &section,
                        i,
                        "client_secret",
                        "missing: give client_secret, client_secret_file or client_secret_credential".into(),
                    )
                })?;
            let webhook_token = cx.secret(
                &section,
                i,
                "webhook_token",
                p.webhook_token,
                p.webhook_token_file,
                p.webhook_token_credential,
            )?;
            if let Some(t) = &webhook_token
                && t.expose().len() < 16
            {
                return Err(cx.error_at(&section, i, "webhook_token", "too short: use at least 16 random characters (e.g. `openssl rand -hex 16`), it is the only guard of the webhook URL".into()));
            }
            let retry_initial = cx.seconds_in(&section, i, "retry_initial_s", p.retry_initial_s, 5, 1..=HOUR)?;
            provet.push(ProvetConfig {
                name: p.name,
                base_url,
                token_url,
                client_id: p.client_id,
                client_secret,
                webhook_token,
                poll_interval: cx.seconds_in(&section, i, "poll_interval_s", p.poll_interval_s, 60, 0..=DAY)?,
                reminder_poll: cx.seconds_in(&section, i, "reminder_poll_s", p.reminder_poll_s, 0, 0..=DAY)?,
                retry_initial,
                retry_max: cx.seconds_in(&section, i, "retry_max_s", p.retry_max_s, 600, 1..=DAY)?.max(retry_initial),
                request_timeout: cx.seconds_in(&section, i, "request_timeout_s", p.request_timeout_s, 30, 1..=600)?,
                allow_insecure_http,
                custom_integration: None,
            });
        }

        let outbound = OutboundConfig {
            on_unknown_outcome: raw.outbound.on_unknown_outcome.unwrap_or(UnknownOutcome::MarkFailed),
            max_attempts: raw.outbound.max_attempts.unwrap_or(5).max(1),
            retry_initial: cx.seconds_in(
                &["outbound"],
                0,
                "retry_initial_s",
                raw.outbound.retry_initial_s,
                5,
                0..=HOUR,
            )?,
            retry_max: cx.seconds_in(&["outbound"], 0, "retry_max_s", raw.outbound.retry_max_s, 300, 0..=DAY)?,
            request_status_report: raw.outbound.request_status_report.unwrap_or(true),
            max_age_days: u32::try_from(cx.ranged(
                &["outbound"],
                0,
                "max_age_days",
                raw.outbound.max_age_days,
                2,
                1..=365,
                " days",
            )?)
            .unwrap_or(2),
        };
        let inbound = InboundConfig {
            concat_timeout: cx.seconds_in(
                &["inbound"],
                0,
                "concat_timeout_s",
                raw.inbound.concat_timeout_s,
                600,
                1..=WEEK,
            )?,
            mms_placeholder: placeholder(cx, "mms_placeholder", raw.inbound.mms_placeholder, DEFAULT_MMS_PLACEHOLDER)?,
            binary_placeholder: placeholder(
                cx,
                "binary_placeholder",
                raw.inbound.binary_placeholder,
                DEFAULT_BINARY_PLACEHOLDER,
            )?,
        };

        let mut forwarders = Vec::new();
        for (i, f) in raw.forward.into_iter().enumerate() {
            let section = ["forward"];
            let fwd = match f {
                RawForward::Twilio {
                    name,
                    url,
                    account_sid,
                    auth_token,
                    auth_token_file,
                    auth_token_credential,
                    to_number,
                    retry_initial_s,
                    retry_max_s,
                    give_up_after_s,
                } => {
                    check_url(cx, &section, i, "url", &url, true)?;
                    if !(account_sid.starts_with("AC") && account_sid.len() == 34) {
                        return Err(cx.error_at(&section, i, "account_sid", format!("{account_sid:?} is not a Twilio account SID (\"AC\" followed by 32 hex digits); any such value works, the receiving software only compares it")));
                    }
                    let auth_token = cx
                        .secret(&section, i, "auth_token", auth_token, auth_token_file, auth_token_credential)?
                        .ok_or_else(|| {
                            cx.error_at(
                                &section,
                                i,
                                "auth_token",
                                "missing: the receiving software checks X-Twilio-Signature with it".into(),
                            )
                        })?;
                    let to_number = PhoneNumber::parse(&to_number, default_country.as_deref())
                        .map_err(|e| cx.error_at(&section, i, "to_number", e.to_string()))?;
                    ForwarderConfig::Twilio(TwilioForwarder {
                        name: name.unwrap_or_else(|| format!("twilio{}", i + 1)),
                        url,
                        account_sid,
                        auth_token,
                        to_number,
                        retry_initial: cx.seconds_in(&section, i, "retry_initial_s", retry_initial_s, 30, 1..=DAY)?,
                        retry_max: cx.seconds_in(&section, i, "retry_max_s", retry_max_s, 3600, 1..=WEEK)?,
                        give_up_after: cx.seconds_in(
                            &section,
                            i,
                            "give_up_after_s",
                            give_up_after_s,
                            WEEK,
                            1..=30 * DAY,
                        )?,
                    })
                }
                RawForward::Pbx {
                    name,
                    url,
                    service_id,
                    sms_number,
                    fallback_email,
                    max_attempts,
                    retry_initial_s,
                    retry_max_s,
                } => {
                    check_url(cx, &section, i, "url", &url, true)?;
                    if let Some(mail) = &fallback_email
                        && !looks_like_email(mail)
                    {
                        return Err(cx.error_at(
                            &section,
                            i,
                            "fallback_email",
                            format!("{mail:?} is not an e-mail address"),
                        ));
                    }
                    ForwarderConfig::Pbx(PbxForwarder {
                        name: name.unwrap_or_else(|| format!("pbx{}", i + 1)),
                        url,
                        service_id,
                        sms_number,
                        fallback_email,
                        max_attempts: max_attempts.unwrap_or(10).max(1),
                        retry_initial: cx.seconds_in(&section, i, "retry_initial_s", retry_initial_s, 30, 1..=DAY)?,
                        retry_max: cx.seconds_in(&section, i, "retry_max_s", retry_max_s, 3600, 1..=WEEK)?,
                    })
                }
            };
            if !names.insert(("forward", fwd.name().to_string())) {
                return Err(cx.error_at(&section, i, "name", format!("forwarder name {:?} is used twice", fwd.name())));
            }
            forwarders.push(fwd);
        }

        let smtp = match raw.smtp {
            Some(s) => {
                let section: [&str; 1] = ["smtp"];
                let tls = s.tls.unwrap_or(SmtpTls::Starttls);
                let password =
                    cx.secret(&section, 0, "password", s.password, s.password_file, s.password_credential)?;
                if !looks_like_email(&s.from) {
                    return Err(cx.error(&section, "from", format!("{:?} is not an e-mail address", s.from)));
                }
                if tls == SmtpTls::None && (s.username.is_some() || password.is_some()) {
                    return Err(cx.error(
                        &section,
                        "tls",
                        "\"none\" with a username or password would send them in clear text: use \"starttls\" or \"implicit\", or drop the credentials (a local relay)".into(),
                    ));
                }
                Some(SmtpConfig {
                    host: s.host,
                    port: s.port.unwrap_or(match tls {
                        SmtpTls::Implicit => 465,
                        SmtpTls::Starttls => 587,
                        SmtpTls::None => 25,
                    }),
                    tls,
                    username: s.username,
                    password,
                    from: s.from,
                })
            }
            None => None,
        };
        let needs_smtp = forwarders.iter().any(|f| matches!(f, ForwarderConfig::Pbx(p) if p.fallback_email.is_some()));
        if needs_smtp && smtp.is_none() {
            return Err(cx.error(&[], "smtp", "missing: a [[forward]] of kind \"pbx\" has a fallback_email, so an [smtp] section is needed to send it".into()));
        }

        let k = raw.keywords;
        if k.unknown_sender == Some(UnknownSender::NotInProvet) && provet.is_empty() {
            return Err(cx.error(
                &["keywords"],
                "unknown_sender",
                "\"not_in_provet\" needs a [[provet]] section to look the sender up in".into(),
            ));
        }
        let keywords = KeywordsConfig {
            help_reply: k.help_reply,
            stop_reply: k.stop_reply,
            start_reply: k.start_reply,
            confirm_reply: k.confirm_reply,
            cancel_reply: k.cancel_reply,
            reschedule_reply: k.reschedule_reply,
            unknown_sender_reply: k.unknown_sender_reply,
            unknown_sender: k.unknown_sender.unwrap_or_default(),
            reply_min_interval: cx.seconds_in(
                &["keywords"],
                0,
                "reply_min_interval_s",
                k.reply_min_interval_s,
                3600,
                0..=WEEK,
            )?,
        };

        let replies = {
            let r = raw.replies;
            let d = RepliesConfig::default();
            let section = ["replies"];
            let count = |key: &str, v: Option<u32>, default: u32, max: u64| {
                cx.ranged(&section, 0, key, v.map(u64::from), u64::from(default), 1..=max, "")
                    .map(|n| u32::try_from(n).unwrap_or(default))
            };
            let mut allowed = Vec::new();
            for prefix in r.allowed_destinations.unwrap_or_default() {
                let digits = prefix.strip_prefix('+').unwrap_or("");
                if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(cx.error(
                        &section,
                        "allowed_destinations",
                        format!("{prefix:?} is not an E.164 prefix (\"+\" and 1 to 15 digits, e.g. \"+358\")"),
                    ));
                }
                allowed.push(prefix);
            }
            RepliesConfig {
                per_number_per_hour: count("per_number_per_hour", r.per_number_per_hour, d.per_number_per_hour, 1000)?,
                per_hour: count("per_hour", r.per_hour, d.per_hour, 100_000)?,
                max_parts: count("max_parts", r.max_parts, d.max_parts, 10)?,
                allowed_destinations: allowed,
            }
        };

        let api = ApiConfig {
            per_hour: cx
                .ranged(&["api"], 0, "per_hour", raw.api.per_hour.map(u64::from), 1000, 1..=100_000, "")
                .map(|n| u32::try_from(n).unwrap_or(1000))?,
        };

        let custom_integration = match raw.custom_integration {
            Some(c) => Some(button_config(cx, &["custom_integration"], 0, c)?),
            None => None,
        };
        let mut nth_button = 0;
        for (p, own) in provet.iter_mut().zip(instance_buttons.iter_mut()) {
            p.custom_integration = match own.take() {
                Some(c) => {
                    nth_button += 1;
                    Some(button_config(cx, &["provet", "custom_integration"], nth_button - 1, c)?)
                }
                None => custom_integration.clone(),
            };
        }

        let event_webhooks = event_webhook::event_webhooks(cx, raw.event_webhook, raw.clinic_code.as_deref())?;

        Ok(Config {
            source: cx.file.to_path_buf(),
            clinic_code: raw.clinic_code,
            default_country,
            store: StoreConfig {
                path: raw.store.path.unwrap_or_else(|| PathBuf::from(DEFAULT_DB_PATH)),
                min_free_mb: cx.ranged(
                    &["store"],
                    0,
                    "min_free_mb",
                    raw.store.min_free_mb,
                    50,
                    0..=1_000_000_000,
                    " MB",
                )?,
                keep_days: cx.ranged(&["store"], 0, "keep_days", raw.store.keep_days, 90, 1..=36_500, " days")?,
            },
            http,
            admin,
            logging,
            modems,
            provet,
            outbound,
            inbound,
            forwarders,
            smtp,
            keywords,
            replies,
            api,
            custom_integration,
            event_webhooks,
        })
    }

    /// The effective config as TOML-like JSON with every secret shown as `****`.
    pub fn masked_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// Which event webhook wants which event types (what the store writes events for).
    pub fn event_routes(&self) -> crate::store::EventRoutes {
        crate::store::EventRoutes::new(self.event_webhooks.iter().map(|w| (w.name.clone(), w.types.clone())).collect())
    }

    /// Parses a phone number with this config's default country.
    pub fn parse_number(&self, input: &str) -> Result<PhoneNumber, crate::phone::PhoneError> {
        PhoneNumber::parse(input, self.default_country.as_deref())
    }
}

/// The shortest salt accepted: the salt is the only secret of the button's MD5 check.
pub const MIN_SALT_CHARS: usize = 16;

/// An `[inbound]` placeholder text: 1 to 500 characters, no control characters but newlines.
fn placeholder(cx: &Context, key: &str, value: Option<String>, default: &str) -> Result<String, ConfigError> {
    let Some(v) = value else { return Ok(default.to_string()) };
    let bad = |why: &str| Err(cx.error_at(&["inbound"], 0, key, why.to_string()));
    if v.trim().is_empty() {
        return bad("must not be empty: it is the text the receiver gets instead of the message");
    }
    if v.chars().count() > 500 {
        return bad("at most 500 characters");
    }
    if v.chars().any(|c| c.is_control() && c != '\n') {
        return bad("must not contain control characters");
    }
    Ok(v)
}

/// One `[custom_integration]` section (top-level or `[provet.custom_integration]`).
fn button_config(
    cx: &Context<'_>,
    section: &[&str],
    index: usize,
    c: RawCustomIntegration,
) -> Result<CustomIntegrationConfig, ConfigError> {
    let salt = cx.secret(section, index, "salt", c.salt, c.salt_file, c.salt_credential)?.ok_or_else(|| {
        cx.error_at(section, index, "salt", "missing: the verification salt set in Provet's custom integration".into())
    })?;
    if salt.expose().chars().count() < MIN_SALT_CHARS {
        return Err(cx.error_at(
            section,
            index,
            "salt",
            format!(
                "too short: use at least {MIN_SALT_CHARS} random characters (e.g. `openssl rand -hex 16`) in smshub and in Provet"
            ),
        ));
    }
    let max_age_s = c.max_age_s.unwrap_or(DEFAULT_BUTTON_MAX_AGE.as_secs());
    if !(60..=86_400).contains(&max_age_s) {
        return Err(cx.error_at(section, index, "max_age_s", format!("{max_age_s} is out of range: give 60 to 86400")));
    }
    let panel_max_age_s = cx.ranged(
        section,
        index,
        "panel_max_age_s",
        c.panel_max_age_s,
        DEFAULT_PANEL_MAX_AGE.as_secs(),
        60..=7 * DAY,
        " s",
    )?;
    let client_param = c.client_param.unwrap_or_else(|| "id".into());
    if client_param.is_empty() || client_param.len() > 64 || !client_param.chars().all(|ch| ch.is_ascii_graphic()) {
        return Err(cx.error_at(section, index, "client_param", "give a parameter name such as \"id\"".into()));
    }
    let mut frame_ancestors = Vec::new();
    for origin in c.frame_ancestors.unwrap_or_default() {
        match origin_of(&origin) {
            Some(o) if o == origin.trim_end_matches('/') => frame_ancestors.push(o),
            _ => {
                return Err(cx.error_at(
                    section,
                    index,
                    "frame_ancestors",
                    format!(
                        "{origin:?} is not an origin: give scheme://host[:port], e.g. \"https://eu.provetcloud.com\""
                    ),
                ));
            }
        }
    }
    Ok(CustomIntegrationConfig {
        salt,
        max_age: Duration::from_secs(max_age_s),
        timestamp_param: c.timestamp_param.unwrap_or_else(|| "timestamp".into()),
        verification_param: c.verification_param.unwrap_or_else(|| "verification".into()),
        panel_max_age: Duration::from_secs(panel_max_age_s),
        client_param,
        frame_ancestors,
    })
}

/// How long a side-panel URL stays valid: Provet makes it when its page loads, and staff keep a
/// client's page open through a working day.
pub const DEFAULT_PANEL_MAX_AGE: Duration = Duration::from_secs(12 * 3600);

/// `scheme://host[:port]` of an http(s) URL, lowercased: what a browser calls its origin.
pub fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.trim().split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?.to_ascii_lowercase();
    let ok = !authority.is_empty()
        && authority.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    ok.then(|| format!("{scheme}://{authority}"))
}

/// How old a button request may be: the button is clicked right after Provet builds the
/// request, so minutes are plenty; a captured request is useless after that.
pub const DEFAULT_BUTTON_MAX_AGE: Duration = Duration::from_secs(10 * 60);

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;
const WEEK: u64 = 7 * DAY;

impl Context<'_> {
    /// A duration key in seconds: `default` when absent, an error naming the key and the allowed
    /// range when outside `range` (so `send_timeout_s = 18446744073709551615` is refused here,
    /// not a panic at start).
    fn seconds_in(
        &self,
        section: &[&str],
        index: usize,
        key: &str,
        value: Option<u64>,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Duration, ConfigError> {
        self.ranged(section, index, key, value, default, range, " s").map(Duration::from_secs)
    }

    /// Like [`Context::seconds_in`] for a key in milliseconds.
    fn millis_in(
        &self,
        section: &[&str],
        index: usize,
        key: &str,
        value: Option<u64>,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Duration, ConfigError> {
        self.ranged(section, index, key, value, default, range, " ms").map(Duration::from_millis)
    }

    #[allow(clippy::too_many_arguments)]
    fn ranged(
        &self,
        section: &[&str],
        index: usize,
        key: &str,
        value: Option<u64>,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
        unit: &str,
    ) -> Result<u64, ConfigError> {
        match value {
            None => Ok(default),
            Some(v) if range.contains(&v) => Ok(v),
            Some(v) => Err(self.error_at(
                section,
                index,
                key,
                format!("{v} is out of range: allowed {} to {}{unit}", range.start(), range.end()),
            )),
        }
    }
}

fn check_name(cx: &Context<'_>, section: &[&str], name: &str) -> Result<(), ConfigError> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(cx.error(
            section,
            "name",
            format!("{name:?} must be non-empty letters, digits, - or _ (it appears in URLs and logs)"),
        ));
    }
    Ok(())
}

fn check_url(
    cx: &Context<'_>,
    section: &[&str],
    index: usize,
    key: &str,
    url: &str,
    allow_http: bool,
) -> Result<(), ConfigError> {
    let rest = if let Some(rest) = url.strip_prefix("https://") {
        rest
    } else if let Some(rest) = url.strip_prefix("http://") {
        if !allow_http {
            return Err(cx.error_at(
                section,
                index,
                key,
                format!("{url:?} is plain http: use https (or set allow_insecure_http = true, for tests only)"),
            ));
        }
        rest
    } else {
        return Err(cx.error_at(section, index, key, format!("{url:?} is not an http(s) URL")));
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(cx.error_at(section, index, key, format!("{url:?} has no host name")));
    }
    Ok(())
}

fn looks_like_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((user, domain)) => !user.is_empty() && domain.contains('.') && !s.contains(char::is_whitespace),
        None => false,
    }
}

fn normalise_base_url(url: &str) -> String {
    if url.ends_with('/') { url.to_string() } else { format!("{url}/") }
}

/// `https://host/4321/api/0.1/` → `https://host/4321/oauth2/token/` (PROTOCOLS.md §1).
fn default_token_url(base_url: &str) -> Option<String> {
    base_url.strip_suffix("api/0.1/").map(|prefix| format!("{prefix}oauth2/token/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_url_is_derived_from_the_base_url() {
        assert_eq!(
            default_token_url("https://provetcloud.com/4321/api/0.1/").as_deref(),
            Some("https://provetcloud.com/4321/oauth2/token/")
        );
        assert_eq!(default_token_url("https://x/other/"), None);
    }

    #[test]
    fn the_socket_sits_beside_the_database_unless_given_or_turned_off() {
        let parse = |text: &str| Config::parse(Path::new("t.toml"), text).unwrap().admin.socket;
        assert_eq!(parse(""), Some(PathBuf::from("/var/lib/smshub/smshub.sock")));
        assert_eq!(parse("[store]\npath = \"/srv/sms/db.sqlite\"\n"), Some(PathBuf::from("/srv/sms/smshub.sock")));
        assert_eq!(parse("[admin]\nsocket = \"/run/smshub/s.sock\"\n"), Some(PathBuf::from("/run/smshub/s.sock")));
        assert_eq!(parse("[admin]\nsocket = \"\"\n"), None);
        assert_eq!(Config::parse(Path::new("t.toml"), "").unwrap().api.per_hour, 1000);
    }

    #[test]
    fn a_modem_number_is_parsed_once_and_checked() {
        let modems = |numbers: [&str; 2]| {
            format!(
                "[[modem]]\nname = \"a\"\ndevice = \"/dev/a\"\n{}\n[[modem]]\nname = \"b\"\ndevice = \"/dev/b\"\n{}\n",
                numbers[0], numbers[1]
            )
        };
        let c = Config::parse(Path::new("t.toml"), &modems(["number = \"+358 40 111 2222\"", ""])).unwrap();
        assert_eq!(c.modem_number("a").map(|n| n.as_str()), Some("+358401112222"));
        assert_eq!(c.modem_number("b"), None, "no number: the forwarder's own value is used");
        assert_eq!(c.modem_number("gone"), None);
        for (bad, why) in [
            (["number = \"not a number\"", ""], "modem[0].number"),
            (["number = \"+358401112222\"", "number = \"+358401112222\""], "another modem"),
            (["number = \"+\"", ""], "number"),
            (["number = 358401112222", ""], "number"),
        ] {
            let err = Config::parse(Path::new("t.toml"), &modems(bad)).unwrap_err().to_string();
            assert!(err.contains(why) && err.starts_with("t.toml:"), "{bad:?}: {err}");
            if why == "another modem" {
                assert!(!err.contains("358401112222"), "no full number in the error: {err}");
            }
        }
    }
}
