//! The PBX-style forwarder: URL Networks' "receive SMS via webhook" form (PROTOCOLS.md §3,
//! seed 004), for clinics whose software was written against that Australian PBX provider.
//!
//! Only HTTP 200 counts as received, as the provider defines it. After the configured number
//! of failed attempts (10 by default) the inbound pipeline e-mails the message to the fallback
//! address with [`super::smtp::send_fallback_email`].

use super::http_client::ForwardClient;
use super::{DeliveryOutcome, InboundSms, hex, sha256};
use crate::config::PbxForwarder;
use crate::phone::mask_number;

/// The `message_id` of `inbox_uid`: a UUID in version-4 form whose bits come from a hash of the
/// uid instead of a random source, so every retry (and a restart between retries) sends the
/// same id and the receiver can recognise a duplicate.
pub fn message_id(inbox_uid: &str) -> String {
    let digest = sha256(format!("smshub pbx message_id\0{inbox_uid}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let h = hex(&b);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// The form fields of seed 004, in its order.
pub fn form_fields(cfg: &PbxForwarder, msg: &InboundSms) -> Vec<(String, String)> {
    [
        ("service_id", cfg.service_id.clone()),
        ("from", msg.from.clone()),
        ("sms_number", msg.to.clone().unwrap_or_else(|| cfg.sms_number.clone())),
        ("body", msg.body.clone()),
        ("message_id", message_id(&msg.uid)),
        ("timestamp", msg.received_at_unix.to_string()),
        ("webhook_url", cfg.url.clone()),
        ("webhook_url_fallback", cfg.fallback_email.clone().unwrap_or_default()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// One delivery attempt of `msg` to `cfg`'s URL. Anything but exactly 200 is a failure to
/// retry; the caller counts attempts against `cfg.max_attempts`.
pub async fn deliver_pbx(client: &ForwardClient, cfg: &PbxForwarder, msg: &InboundSms) -> DeliveryOutcome {
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(form_fields(cfg, msg)).finish();
    let id = message_id(&msg.uid);
    let outcome = match client.post_form(&cfg.url, body, &[]).await {
        Ok(r) if r.status == 200 => DeliveryOutcome::Delivered { status: 200, replies: Vec::new() },
        Ok(r) => DeliveryOutcome::Failed {
            status: Some(r.status),
            error: format!("HTTP {}: only 200 counts as received", r.status),
            retryable: true,
        },
        // A 200 whose body we could not read in full still says "received": the status is what
        // the provider's protocol defines, the body means nothing to it.
        Err(super::PostError::Http(crate::http_client::HttpError::TooLarge { status: 200, .. })) => {
            DeliveryOutcome::Delivered { status: 200, replies: Vec::new() }
        }
        Err(e) => {
            let retryable = !matches!(e, super::PostError::BadUrl { .. });
            DeliveryOutcome::Failed { status: e.status(), error: e.to_string(), retryable }
        }
    };
    match &outcome {
        DeliveryOutcome::Delivered { .. } => tracing::info!(
            forwarder = %cfg.name, message_id = %id, from = %mask_number(&msg.from), "forwarded SMS as PBX webhook"
        ),
        DeliveryOutcome::Failed { status, error, .. } => tracing::warn!(
            forwarder = %cfg.name, message_id = %id, from = %mask_number(&msg.from), ?status,
            "PBX webhook failed: {error}"
        ),
    }
    outcome
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::forward::http_client::test_server::{Answer, serve};

    fn forwarder(url: &str) -> PbxForwarder {
        PbxForwarder {
            name: "pbx1".into(),
            url: url.into(),
            service_id: "12345".into(),
            sms_number: "+61412000000".into(),
            fallback_email: Some("frontdesk@example-clinic.au".into()),
            max_attempts: 10,
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(10),
        }
    }

    fn sms() -> InboundSms {
        InboundSms {
            uid: "in-7".into(),
            from: "+61400111222".into(),
            to: None,
            body: "Test Message: 50% off & more".into(),
            segments: 1,
            received_at_unix: 1_576_391_654,
        }
    }

    #[test]
    fn message_ids_are_stable_uuid_v4_shaped_and_distinct() {
        let a = message_id("in-7");
        assert_eq!(a, message_id("in-7"));
        assert_ne!(a, message_id("in-8"));
        let groups: Vec<&str> = a.split('-').collect();
        assert_eq!(groups.iter().map(|g| g.len()).collect::<Vec<_>>(), vec![8, 4, 4, 4, 12], "{a}");
        assert!(a.chars().all(|c| c == '-' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{a}");
        assert!(groups[2].starts_with('4'), "version nibble: {a}");
        assert!(matches!(groups[3].chars().next(), Some('8' | '9' | 'a' | 'b')), "variant: {a}");
    }

    #[test]
    fn the_form_has_the_fields_of_seed_004() {
        let cfg = forwarder("https://clinic.example/sms/in");
        let got = form_fields(&cfg, &sms());
        let expected: Vec<(String, String)> = [
            ("service_id", "12345"),
            ("from", "+61400111222"),
            ("sms_number", "+61412000000"),
            ("body", "Test Message: 50% off & more"),
            ("message_id", message_id("in-7").as_str()),
            ("timestamp", "1576391654"),
            ("webhook_url", "https://clinic.example/sms/in"),
            ("webhook_url_fallback", "frontdesk@example-clinic.au"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(got, expected);
        let mut no_mail = cfg.clone();
        no_mail.fallback_email = None;
        assert_eq!(form_fields(&no_mail, &sms())[7], ("webhook_url_fallback".to_string(), String::new()));
    }

    #[test]
    fn the_receiving_modems_number_is_the_sms_number_when_configured() {
        let cfg = forwarder("https://clinic.example/sms/in");
        let got = form_fields(&cfg, &InboundSms { to: Some("+61412999888".into()), ..sms() });
        assert_eq!(got[2], ("sms_number".to_string(), "+61412999888".to_string()));
    }

    #[tokio::test]
    async fn only_200_counts_as_delivered() {
        let client = ForwardClient::new(Duration::from_secs(10));
        for (status, delivered) in
            [(200u16, true), (201, false), (204, false), (302, false), (404, false), (503, false)]
        {
            let server = serve("/sms/in", vec![Answer::Http(status, "text/plain", b"x".to_vec())]).await;
            let outcome = deliver_pbx(&client, &forwarder(&server.url), &sms()).await;
            assert_eq!(outcome.is_delivered(), delivered, "HTTP {status}: {outcome:?}");
            if !delivered {
                assert_eq!(
                    outcome,
                    DeliveryOutcome::Failed {
                        status: Some(status),
                        error: format!("HTTP {status}: only 200 counts as received"),
                        retryable: true
                    }
                );
            }
        }
    }

    #[tokio::test]
    async fn the_receiver_gets_the_same_decoded_fields_on_every_attempt() {
        let server = serve(
            "/sms/in",
            vec![Answer::Http(500, "text/plain", vec![]), Answer::Http(200, "text/plain", b"OK".to_vec())],
        )
        .await;
        let cfg = forwarder(&server.url);
        let client = ForwardClient::new(Duration::from_secs(10));
        assert!(!deliver_pbx(&client, &cfg, &sms()).await.is_delivered());
        assert!(deliver_pbx(&client, &cfg, &sms()).await.is_delivered());
        let received = server.received.lock().unwrap().clone();
        assert_eq!(received.len(), 2);
        assert_eq!(received[0].form(), form_fields(&cfg, &sms()));
        assert_eq!(received[1].form(), received[0].form());
        assert_eq!(received[0].header("content-type").as_deref(), Some("application/x-www-form-urlencoded"));
    }

    #[tokio::test]
    async fn a_silent_receiver_is_a_retryable_timeout() {
        let server = serve("/", vec![Answer::Silence]).await;
        let client = ForwardClient::new(Duration::from_millis(300));
        let outcome = deliver_pbx(&client, &forwarder(&server.url), &sms()).await;
        assert!(
            matches!(&outcome, DeliveryOutcome::Failed { status: None, retryable: true, error } if error.contains("0.3s")),
            "{outcome:?}"
        );
    }
}
