//! `[[event_webhook]]`: where smshub posts what happened (seed 003's envelope), signed.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::source::Context;
use super::{ConfigError, DAY, Secret, check_name, check_url};
use crate::store::EventType;

/// One section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEventWebhook {
    name: String,
    url: String,
    version: Option<String>,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    secret_credential: Option<String>,
    types: Option<Vec<String>>,
    retry_initial_s: Option<u64>,
    retry_max_s: Option<u64>,
    give_up_after_s: Option<u64>,
}

/// The envelope form a receiver was written against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum EnvelopeVersion {
    /// `"version": "1.0"`, `account_code`, numbers inside `data` written as strings.
    #[serde(rename = "1.0")]
    V1,
    /// `"version": "2.0"`, `clinic_code`, numbers as numbers.
    #[serde(rename = "2.0")]
    V2,
}

impl EnvelopeVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            EnvelopeVersion::V1 => "1.0",
            EnvelopeVersion::V2 => "2.0",
        }
    }
}

/// One event webhook, checked.
#[derive(Debug, Clone, Serialize)]
pub struct EventWebhookConfig {
    pub name: String,
    pub url: String,
    pub version: EnvelopeVersion,
    /// The HMAC-SHA256 key of `X-Smshub-Signature`.
    pub secret: Secret,
    /// The types it receives (every type when the key is absent).
    pub types: Vec<EventType>,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// An event not delivered this long after it happened is given up (`gave_up`).
    pub give_up_after: Duration,
}

/// Checks every `[[event_webhook]]`; `clinic_code` is what the envelopes carry.
pub(super) fn event_webhooks(
    cx: &Context<'_>,
    raw: Vec<RawEventWebhook>,
    clinic_code: Option<&str>,
) -> Result<Vec<EventWebhookConfig>, ConfigError> {
    let section = ["event_webhook"];
    let mut names = BTreeSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, w) in raw.into_iter().enumerate() {
        if i == 0 && clinic_code.is_none_or(str::is_empty) {
            return Err(cx.error(
                &[],
                "clinic_code",
                "missing: every event carries it, so a receiver serving several clinics knows which one spoke (e.g. clinic_code = \"vet-helsinki-1\")".into(),
            ));
        }
        check_name(cx, &section, &w.name)?;
        if !names.insert(w.name.clone()) {
            return Err(cx.error_at(&section, i, "name", format!("event webhook name {:?} is used twice", w.name)));
        }
        check_url(cx, &section, i, "url", &w.url, true)?;
        let version = match w.version.as_deref() {
            None | Some("2.0") => EnvelopeVersion::V2,
            Some("1.0") => EnvelopeVersion::V1,
            Some(other) => {
                return Err(cx.error_at(
                    &section,
                    i,
                    "version",
                    format!("{other:?}: use \"2.0\" (or \"1.0\" for receivers written against the older envelope)"),
                ));
            }
        };
        let secret =
            cx.secret(&section, i, "secret", w.secret, w.secret_file, w.secret_credential)?.ok_or_else(|| {
                cx.error_at(
                    &section,
                    i,
                    "secret",
                    "missing: the receiver checks X-Smshub-Signature (HMAC-SHA256) with it".into(),
                )
            })?;
        if secret.expose().len() < 16 {
            return Err(cx.error_at(
                &section,
                i,
                "secret",
                "shorter than 16 characters: use a long random value (e.g. `openssl rand -hex 32`)".into(),
            ));
        }
        let types = match w.types {
            None => EventType::ALL.to_vec(),
            Some(list) => {
                let mut types = Vec::new();
                for t in &list {
                    let ty = EventType::parse(t).ok_or_else(|| {
                        let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
                        cx.error_at(
                            &section,
                            i,
                            "types",
                            format!("{t:?} is not an event type; known: {}", known.join(", ")),
                        )
                    })?;
                    if !types.contains(&ty) {
                        types.push(ty);
                    }
                }
                if types.is_empty() {
                    return Err(cx.error_at(
                        &section,
                        i,
                        "types",
                        "empty: leave the key out to receive every type".into(),
                    ));
                }
                types
            }
        };
        let retry_initial = cx.seconds_in(&section, i, "retry_initial_s", w.retry_initial_s, 10, 1..=DAY)?;
        let retry_max = cx.seconds_in(&section, i, "retry_max_s", w.retry_max_s, 3600, 1..=DAY)?;
        if retry_max < retry_initial {
            return Err(cx.error_at(&section, i, "retry_max_s", "smaller than retry_initial_s".into()));
        }
        out.push(EventWebhookConfig {
            name: w.name,
            url: w.url,
            version,
            secret,
            types,
            retry_initial,
            retry_max,
            give_up_after: cx.seconds_in(&section, i, "give_up_after_s", w.give_up_after_s, 3 * DAY, 60..=30 * DAY)?,
        });
    }
    Ok(out)
}
