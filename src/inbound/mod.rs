//! Inbound SMS: from the modem to the inbox to the forwarders. For now only the keyword rules.

pub mod keywords;
