//! The receive pipeline: modem → inbox → (keywords, opt-outs) → forward deliveries.

pub mod receive;
