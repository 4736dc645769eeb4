//! Test instruments, not product: what `smshub sim`, `smshub demo`, `smshub bench` and the
//! tests use to exercise smshub with no hardware and no Provet account. No product module
//! imports anything from here; everything here may import the product.
//!
//! - [`modem_sim`]: a GSM modem on a pseudo-terminal, with a JSON control channel and faults.
//! - [`fake_provet`]: a small Provet Cloud on 127.0.0.1 with failure switches and a call log.
//! - [`clinic_app`]: a stand-in for the clinic's software that answers Twilio webhooks with TwiML.
//! - [`demo`]: `smshub demo`, the whole job in one process.
//! - [`pdus`]: hand-built PDUs (an MMS notification) commented octet by octet.
//! - [`peers`]: a webhook caller and a PBX-style receiver the bench and the soak share.
//! - [`bench`]: `smshub bench`, figures from the daemon against the instruments; [`soak`]:
//!   `smshub bench soak`, the daemon under random faults and SIGKILLs, with invariant checks.

pub mod bench;
pub mod clinic_app;
pub mod demo;
pub mod fake_provet;
pub mod modem_sim;
pub mod pdus;
pub mod peers;
pub mod soak;

#[cfg(test)]
mod provet_client_tests;
