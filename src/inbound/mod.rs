//! The receive pipeline: modem → inbox (`receive`) → keywords and opt-outs (`keywords`,
//! `keyword_actions`) → forward deliveries with retries and the e-mail fallback (`deliver`).

pub mod deliver;
pub mod keyword_actions;
pub mod keywords;
pub mod receive;
