//! The config file as written: serde structs with `deny_unknown_fields`, turned into the
//! effective [`super::Config`] by `Config::from_raw`.

use std::path::PathBuf;

use serde::Deserialize;

use super::event_webhook::RawEventWebhook;
use super::listener::RawListener;
use super::{LogFormat, ModemProfile, SmtpTls, UnknownOutcome};

// ---------------------------------------------------------------------------------------------
// The file as written (serde layer)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) clinic_code: Option<String>,
    pub(super) default_country: Option<String>,
    #[serde(default)]
    pub(super) store: RawStore,
    #[serde(default)]
    pub(super) http: RawListener,
    #[serde(default)]
    pub(super) admin: RawListener,
    #[serde(default)]
    pub(super) logging: RawLogging,
    #[serde(default)]
    pub(super) modem: Vec<RawModem>,
    #[serde(default)]
    pub(super) provet: Vec<RawProvet>,
    #[serde(default)]
    pub(super) outbound: RawOutbound,
    #[serde(default)]
    pub(super) inbound: RawInbound,
    #[serde(default)]
    pub(super) forward: Vec<RawForward>,
    pub(super) smtp: Option<RawSmtp>,
    #[serde(default)]
    pub(super) keywords: RawKeywords,
    #[serde(default)]
    pub(super) replies: RawReplies,
    #[serde(default)]
    pub(super) api: RawApi,
    pub(super) custom_integration: Option<RawCustomIntegration>,
    #[serde(default)]
    pub(super) event_webhook: Vec<RawEventWebhook>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    pub(super) path: Option<PathBuf>,
    pub(super) min_free_mb: Option<u64>,
    pub(super) keep_days: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLogging {
    pub(super) level: Option<String>,
    pub(super) format: Option<LogFormat>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModem {
    pub(super) name: String,
    pub(super) device: PathBuf,
    pub(super) baud: Option<u32>,
    pub(super) pin: Option<String>,
    pub(super) pin_file: Option<PathBuf>,
    pub(super) pin_credential: Option<String>,
    pub(super) profile: Option<ModemProfile>,
    pub(super) min_send_interval_ms: Option<u64>,
    pub(super) send_timeout_s: Option<u64>,
    pub(super) number: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProvet {
    pub(super) name: String,
    pub(super) base_url: String,
    pub(super) token_url: Option<String>,
    pub(super) client_id: String,
    pub(super) client_secret: Option<String>,
    pub(super) client_secret_file: Option<PathBuf>,
    pub(super) client_secret_credential: Option<String>,
    pub(super) webhook_token: Option<String>,
    pub(super) webhook_token_file: Option<PathBuf>,
    pub(super) webhook_token_credential: Option<String>,
    pub(super) poll_interval_s: Option<u64>,
    pub(super) reminder_poll_s: Option<u64>,
    pub(super) retry_initial_s: Option<u64>,
    pub(super) retry_max_s: Option<u64>,
    pub(super) request_timeout_s: Option<u64>,
    pub(super) allow_insecure_http: Option<bool>,
    /// `[provet.custom_integration]`: this instance's button settings (else the top-level ones).
    pub(super) custom_integration: Option<RawCustomIntegration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOutbound {
    pub(super) on_unknown_outcome: Option<UnknownOutcome>,
    pub(super) max_attempts: Option<u32>,
    pub(super) retry_initial_s: Option<u64>,
    pub(super) retry_max_s: Option<u64>,
    pub(super) request_status_report: Option<bool>,
    pub(super) max_age_days: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInbound {
    pub(super) concat_timeout_s: Option<u64>,
    pub(super) mms_placeholder: Option<String>,
    pub(super) binary_placeholder: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub(super) enum RawForward {
    Twilio {
        name: Option<String>,
        url: String,
        account_sid: String,
        auth_token: Option<String>,
        auth_token_file: Option<PathBuf>,
        auth_token_credential: Option<String>,
        to_number: String,
        retry_initial_s: Option<u64>,
        retry_max_s: Option<u64>,
        give_up_after_s: Option<u64>,
    },
    Pbx {
        name: Option<String>,
        url: String,
        service_id: String,
        sms_number: String,
        fallback_email: Option<String>,
        max_attempts: Option<u32>,
        retry_initial_s: Option<u64>,
        retry_max_s: Option<u64>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSmtp {
    pub(super) host: String,
    pub(super) port: Option<u16>,
    pub(super) tls: Option<SmtpTls>,
    pub(super) username: Option<String>,
    pub(super) password: Option<String>,
    pub(super) password_file: Option<PathBuf>,
    pub(super) password_credential: Option<String>,
    pub(super) from: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKeywords {
    pub(super) help_reply: Option<String>,
    pub(super) stop_reply: Option<String>,
    pub(super) start_reply: Option<String>,
    pub(super) confirm_reply: Option<String>,
    pub(super) cancel_reply: Option<String>,
    pub(super) reschedule_reply: Option<String>,
    pub(super) unknown_sender_reply: Option<String>,
    pub(super) unknown_sender: Option<super::UnknownSender>,
    pub(super) reply_min_interval_s: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReplies {
    pub(super) per_number_per_hour: Option<u32>,
    pub(super) per_hour: Option<u32>,
    pub(super) max_parts: Option<u32>,
    pub(super) allowed_destinations: Option<Vec<String>>,
}

/// `[api]`: the local send API.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApi {
    pub(super) per_hour: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCustomIntegration {
    pub(super) salt: Option<String>,
    pub(super) salt_file: Option<PathBuf>,
    pub(super) salt_credential: Option<String>,
    pub(super) max_age_s: Option<u64>,
    pub(super) timestamp_param: Option<String>,
    pub(super) verification_param: Option<String>,
    pub(super) panel_max_age_s: Option<u64>,
    pub(super) client_param: Option<String>,
    pub(super) frame_ancestors: Option<Vec<String>>,
}
