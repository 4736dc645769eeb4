//! smshub: the clinic's SMS gateway. A Raspberry Pi–class box with a GSM modem that sends the
//! SMS Provet Cloud hands to it and forwards the SMS it receives to the clinic's software.
//!
//! The map (ARCHITECTURE.md has the data flow and the invariants):
//!
//! - [`config`]: the TOML file → typed [`config::Config`]; errors name file, line and key.
//! - [`store`]: SQLite, the truth for every message; the only module that writes SQL.
//! - [`phone`]: phone numbers parsed once at the edge, and masked for logs.
//! - [`provet`]: the Provet Cloud REST client, the custom-integration check, a fake Provet.
//! - [`logging`]: tracing to journald (with fields) or to stderr.
//! - [`daemon`]: `smshub run`: wires the store, the HTTP server and the pipelines together,
//!   talks to systemd, and shuts down cleanly.
//! - [`shutdown`]: the one place that knows how a stop is asked for and awaited.
//! - [`forward`]: one delivery attempt of a received SMS as a Twilio or PBX webhook, TwiML
//!   replies, the PBX e-mail fallback.
//! - [`inbound`]: received SMS: modem → inbox, keywords and opt-outs, the forwarding task.
//! - [`web`]: the HTTP server (`/healthz`, status, Provet webhooks).
//! - [`cli`]: the subcommands.

pub mod cli;
pub mod config;
pub mod daemon;
pub mod doctor;
pub mod forward;
pub mod inbound;
pub mod logging;
pub mod modem;
pub mod outbound;
pub mod pdu;
pub mod phone;
pub mod provet;
pub mod shutdown;
pub mod store;
pub mod web;
