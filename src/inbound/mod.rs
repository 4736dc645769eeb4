//! The receive pipeline: modem → inbox (`receive`) → keywords and opt-outs (`keywords`) →
//! forward deliveries.

pub mod keywords;
pub mod receive;
