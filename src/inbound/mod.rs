//! The receive pipeline: modem → inbox (`receive`) → keywords and opt-outs (`keywords`,
//! `keyword_actions`; every automatic reply passes `reply_policy`; `provet_lookup` asks Provet whether a sender is a client) → forward deliveries with retries and the e-mail fallback (`deliver`).

pub mod deliver;
pub mod keyword_actions;
pub mod keywords;
pub mod provet_lookup;
pub mod receive;
pub mod reply_policy;
