//! The receive pipeline: modem → inbox (`receive`) → keywords and opt-outs (`keywords`,
//! `keyword_actions`; every automatic reply passes `reply_policy`) → forward deliveries with retries and the e-mail fallback (`deliver`).

pub mod deliver;
pub mod keyword_actions;
pub mod keywords;
pub mod receive;
pub mod reply_policy;
