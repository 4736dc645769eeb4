//! smshub: the clinic's SMS gateway. A Raspberry Pi–class box with a GSM modem that sends the
//! SMS Provet Cloud hands to it and forwards the SMS it receives to the clinic's software.
//!
//! The map (ARCHITECTURE.md has the data flow and the invariants):
//!
//! - [`config`]: the TOML file → typed [`config::Config`]; errors name file, line and key.
//! - [`store`]: SQLite, the truth for every message; the only module that writes SQL.
//! - [`phone`]: phone numbers parsed once at the edge, and masked for logs.
//! - [`pdu`]: the SMS PDU codec (GSM-7, UCS-2, concatenation, addresses, timestamps). Pure.
//! - [`modem`]: AT framing, the modem driver and its quirk profiles, the tty opener, and the
//!   modem simulator.
//! - [`outbound`]: outbox → modem → `sent`/`failed`, one sender per modem.
//! - [`inbound`]: modem → inbox (joining parts), keywords and opt-outs, forward deliveries.
//! - [`provet`]: the Provet Cloud REST client, the custom-integration check, a fake Provet.
//! - [`forward`]: one delivery attempt of a received SMS as a Twilio or PBX webhook, TwiML
//!   replies, the SMTP fallback.
//! - [`web`]: the HTTP server (`/healthz`, `/status`, Provet webhooks).
//! - [`daemon`]: `smshub run`: wires the store, the HTTP server and the pipelines together,
//!   talks to systemd, and shuts down cleanly; [`shutdown`] is how a stop is asked for.
//! - [`logging`]: tracing to journald (with fields) or to stderr.
//! - [`doctor`]: read-only checks with remedies.
//! - [`demo`]: the whole job in one process with no hardware.
//! - [`cli`]: the subcommands.

pub mod bench;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod doctor;
pub mod forward;
pub mod inbound;
pub mod logging;
pub mod modem;
pub mod outbound;
pub mod pdu;
pub mod phone;
pub mod provet;
pub mod retry;
pub mod shutdown;
pub mod store;
pub mod web;
