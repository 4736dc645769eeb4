//! Provet Cloud: the REST client smshub uses to fetch and mark external SMS and reminders, the
//! check of Provet's custom-integration button requests, and a fake Provet for tests and the
//! demo.
//!
//! - [`client`]: [`ProvetClient`] (HTTPS, timeouts, errors sorted by what to do about them;
//!   retry timing is [`crate::retry::backoff`]).
//! - [`auth`]: OAuth 2.0 client credentials with a token cache.
//! - [`model`]: [`ExternalSms`], parsed with errors that name the missing or wrong field.
//! - [`reminders`]: reminders and appointment reminders, whose shape Provet does not document;
//!   every assumption is in that one file.
//! - [`custom_integration`]: verifies the reminders-page button POST (MD5 verification hash).
//! - [`fake`]: [`fake::FakeProvet`], a real HTTP server on 127.0.0.1 with failure switches.
//!
//! Protocol facts and their sources: shared/PROTOCOLS.md §1.

pub mod auth;
pub mod client;
pub mod custom_integration;
pub mod fake;
pub mod model;
pub mod reminders;

#[cfg(test)]
mod client_tests;

pub use client::{ClientConfigError, ItemError, MarkFailedForm, ProvetClient, ProvetError, parse_retry_after};
pub use model::ExternalSms;
pub use reminders::{AppointmentReminder, Reminder, ReminderKind, ReminderText};
