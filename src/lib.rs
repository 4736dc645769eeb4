//! smshub: the clinic's SMS gateway. A Raspberry Pi–class box with a GSM modem that sends the
//! SMS Provet Cloud hands to it and forwards the SMS it receives to the clinic's software.
//!
//! The map (ARCHITECTURE.md has the data flow and the invariants):
//!
//! - [`config`]: the TOML file → typed [`config::Config`]; errors name file, line and key.
//! - [`store`]: SQLite, the truth for every message; the only module that writes SQL.
//! - [`phone`]: phone numbers parsed once at the edge, and masked for logs.
//! - [`pdu`]: the SMS PDU codec (GSM-7, UCS-2, concatenation, addresses, timestamps). Pure.
//! - [`modem`]: AT framing, the modem driver and its quirk profiles, the tty opener.
//! - [`outbound`]: outbox → modem → `sent`/`failed`, one sender per modem.
//! - [`inbound`]: modem → inbox (joining parts), keywords and opt-outs, forward deliveries.
//! - [`provet`]: the Provet Cloud REST client and the custom-integration check.
//! - [`forward`]: one delivery attempt of a received SMS as a Twilio or PBX webhook, TwiML
//!   replies, the SMTP fallback.
//! - [`web`]: two HTTP listeners (public: Provet webhook, reminders button, `/healthz`; admin:
//!   sign-in, `/status`, the local API `/api/v1`, `/metrics`), each an axum router in our own hardened accept loop.
//! - [`metrics`]: the Prometheus registry of `/metrics` and the typed handle the pipelines call.
//! - [`local_socket`]: the daemon's Unix socket, how `smshub send` hands it a message.
//! - [`health`]: the health table behind `/healthz`, `STATUS=` and the watchdog.
//! - [`daemon`]: `smshub run`: wires the store, the HTTP server and the pipelines together,
//!   talks to systemd, and shuts down cleanly; [`shutdown`] is how a stop is asked for.
//! - [`http_client`]: the one outbound HTTP client (deadline, bounded body) on the one
//!   [`tls`] client config.
//! - [`tls`]: the one rustls client config, and listeners' certificates reloaded on SIGHUP.
//! - [`retry`]: the one backoff every pipeline uses.
//! - [`deadline`]: "now + wait" that cannot overflow; every deadline and outside duration goes through it.
//! - [`logging`]: tracing to journald (with fields) or to stderr.
//! - [`events`]: event webhooks (seed 003's envelope, signed), delivered with retries, every attempt logged.
//! - [`doctor`]: read-only checks with remedies.
//! - [`testbed`]: instruments, not product: the modem simulator, a fake Provet, a demo clinic
//!   app, `smshub demo` and `smshub bench`. No product module imports it.
//! - [`cli`]: the subcommands.

pub mod cli;
pub mod config;
pub mod daemon;
pub mod deadline;
pub mod doctor;
pub mod events;
pub mod forward;
pub mod health;
pub mod http_client;
pub mod inbound;
pub mod local_socket;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod modem;
pub mod outbound;
pub mod pdu;
pub mod phone;
pub mod provet;
pub mod retry;
pub mod shutdown;
pub mod store;
pub mod testbed;
pub mod tls;
pub mod web;
