//! Provet Cloud: the REST client smshub uses to fetch and mark external SMS and reminders, the
//! check of Provet's custom-integration button requests.
//!
//! - [`client`]: [`ProvetClient`] (HTTPS, timeouts, errors sorted by what to do about them;
//!   retry timing is [`crate::retry::backoff`]).
//! - [`auth`]: OAuth 2.0 client credentials with a token cache.
//! - [`error`]: [`ProvetError`], sorted by what the caller should do.
//! - `http`: request building, sending through [`crate::http_client`], status → error.
//! - [`model`]: [`ExternalSms`], parsed with errors that name the missing or wrong field.
//! - [`reminders`]: reminders and appointment reminders in their real shape (docs/provet.md),
//!   templates rendered, numbers picked, refusals with reasons.
//! - [`custom_integration`]: verifies the reminders-page button POST (MD5 verification hash).
//!
//! Protocol facts and their sources: docs/provet.md (and shared/PROTOCOLS.md §1).

pub mod auth;
pub mod client;
pub mod clients;
pub mod custom_integration;
pub mod error;
mod http;
pub mod model;
pub mod reminders;

pub use client::{ClientConfigError, ItemError, ListBounds, MarkFailedForm, ProvetClient};
pub use clients::{ClientCard, ClientNumber};
pub use error::ProvetError;
pub use http::parse_retry_after;
pub use model::ExternalSms;
pub use reminders::{Reminder, ReminderError, ReminderKind, ReminderText};
