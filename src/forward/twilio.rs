//! The Twilio-style forwarder: each received SMS is POSTed to the clinic's software exactly as
//! Twilio would POST an incoming SMS (PROTOCOLS.md §2), signed with the configured auth token,
//! so software written for Twilio, signature check included, works unchanged.
//!
//! Any 2xx answer means delivered; its TwiML may ask for replies, which the caller queues as
//! outbound SMS. Non-2xx, timeouts and TwiML that cannot be read are failures to retry.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;

use super::http_client::ForwardClient;
use super::{DeliveryOutcome, InboundSms, hex, sha256, twiml};
use crate::config::TwilioForwarder;
use crate::phone::mask_number;

/// The request one delivery attempt sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwilioRequest {
    pub url: String,
    /// The form fields, in the order a real Twilio capture lists them.
    pub params: Vec<(String, String)>,
    /// The `X-Twilio-Signature` header value.
    pub signature: String,
}

impl TwilioRequest {
    /// The `application/x-www-form-urlencoded` body.
    pub fn form_body(&self) -> String {
        form_urlencoded::Serializer::new(String::new()).extend_pairs(self.params.iter()).finish()
    }
}

/// A Twilio-shaped message id: `SM` and 32 lowercase hex digits, derived from the inbox uid so
/// every retry carries the same id (receivers use MessageSid to spot duplicates).
pub fn message_sid(inbox_uid: &str) -> String {
    let digest = sha256(format!("smshub twilio MessageSid\0{inbox_uid}").as_bytes());
    format!("SM{}", hex(&digest[..16]))
}

/// ISO 3166 country of an E.164 number, for the `FromCountry`/`ToCountry` fields. Only the
/// countries smshub's clinics are in; others get "" (Twilio also sends the field empty when it
/// does not know).
pub fn country_of(number: &str) -> &'static str {
    const TABLE: &[(&str, &str)] = &[
        ("358", "FI"),
        ("372", "EE"),
        ("353", "IE"),
        ("46", "SE"),
        ("47", "NO"),
        ("45", "DK"),
        ("49", "DE"),
        ("44", "GB"),
        ("61", "AU"),
        ("64", "NZ"),
        // +1 is shared by the US, Canada and the Caribbean; telling them apart needs the area
        // code table. "US" is what most +1 numbers are.
        ("1", "US"),
    ];
    let Some(digits) = number.strip_prefix('+') else { return "" };
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return "";
    }
    TABLE.iter().find(|(code, _)| digits.starts_with(code)).map(|(_, iso)| *iso).unwrap_or("")
}

/// Builds the request for `msg`: the 19 fields of a real inbound-SMS capture, signed.
pub fn build_request(cfg: &TwilioForwarder, msg: &InboundSms) -> TwilioRequest {
    let sid = message_sid(&msg.uid);
    let to = msg.to.as_deref().unwrap_or(cfg.to_number.as_str());
    let fields: [(&str, &str); 19] = [
        ("ToCountry", country_of(to)),
        ("ToState", ""),
        ("SmsMessageSid", &sid),
        ("NumMedia", "0"),
        ("ToCity", ""),
        ("FromZip", ""),
        ("SmsSid", &sid),
        ("FromState", ""),
        ("SmsStatus", "received"),
        ("FromCity", ""),
        ("Body", &msg.body),
        ("FromCountry", country_of(&msg.from)),
        ("To", to),
        ("ToZip", ""),
        ("NumSegments", &msg.segments.max(1).to_string()),
        ("MessageSid", &sid),
        ("AccountSid", &cfg.account_sid),
        ("From", &msg.from),
        ("ApiVersion", "2010-04-01"),
    ];
    let params: Vec<(String, String)> = fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let signature = signature(&cfg.url, &params, cfg.auth_token.expose());
    TwilioRequest { url: cfg.url.clone(), params, signature }
}

/// `X-Twilio-Signature` as Twilio computes it (PROTOCOLS.md §2): the URL, then for each
/// parameter name in sorted order, each of its distinct values in sorted order as
/// `name + value`; HMAC-SHA1 keyed with the auth token; base64.
pub fn signature(url: &str, params: &[(String, String)], auth_token: &str) -> String {
    let mut grouped: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (name, value) in params {
        grouped.entry(name.as_str()).or_default().insert(value.as_str());
    }
    let mut data = String::from(url);
    for (name, values) in grouped {
        for value in values {
            data.push_str(name);
            data.push_str(value);
        }
    }
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, auth_token.as_bytes());
    let tag = ring::hmac::sign(&key, data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
}

/// `url` with `bodySHA256=<hex>` added to its query, as Twilio signs JSON bodies: the signature
/// is then [`signature`] over this URL with no parameters.
pub fn url_with_body_sha256(url: &str, body: &[u8]) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}bodySHA256={}", hex(&sha256(body)))
}

/// One delivery attempt of `msg` to `cfg`'s URL.
pub async fn deliver_twilio(client: &ForwardClient, cfg: &TwilioForwarder, msg: &InboundSms) -> DeliveryOutcome {
    let request = build_request(cfg, msg);
    let sid = message_sid(&msg.uid);
    let reply = client
        .post_form(&request.url, request.form_body(), &[("X-Twilio-Signature", request.signature.as_str())])
        .await;
    let outcome = match reply {
        Err(e) => {
            let retryable = !matches!(e, super::PostError::BadUrl { .. });
            DeliveryOutcome::Failed { status: e.status(), error: e.to_string(), retryable }
        }
        Ok(r) if !(200..300).contains(&r.status) => DeliveryOutcome::Failed {
            status: Some(r.status),
            error: format!("HTTP {}: the receiver did not accept the message (2xx expected)", r.status),
            retryable: true,
        },
        Ok(r) => match twiml::parse(&r.body, r.content_type.as_deref()) {
            Ok(t) => {
                if let Some(summary) = twiml::summarise_notes(&t.notes) {
                    // One line per answer, however many notes it produced.
                    tracing::info!(forwarder = %cfg.name, message_sid = %sid, notes = t.notes.len(), "TwiML: {summary}");
                }
                DeliveryOutcome::Delivered { status: r.status, replies: t.replies }
            }
            Err(e) => DeliveryOutcome::Failed {
                status: Some(r.status),
                error: format!("HTTP {} but the TwiML answer was refused: {e}", r.status),
                retryable: true,
            },
        },
    };
    match &outcome {
        DeliveryOutcome::Delivered { status, replies } => tracing::info!(
            forwarder = %cfg.name, message_sid = %sid, from = %mask_number(&msg.from), status,
            replies = replies.len(), "forwarded SMS as Twilio webhook"
        ),
        DeliveryOutcome::Failed { status, error, .. } => tracing::warn!(
            forwarder = %cfg.name, message_sid = %sid, from = %mask_number(&msg.from), ?status,
            "Twilio webhook failed: {error}"
        ),
    }
    outcome
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Secret;
    use crate::forward::http_client::test_server::{Answer, serve};
    use crate::forward::twiml::TwimlReply;
    use crate::phone::PhoneNumber;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn reference_params() -> Vec<(String, String)> {
        pairs(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
            ("Caller", "+14158675309"),
        ])
    }

    #[test]
    fn signature_matches_the_twilio_python_reference_vectors() {
        let cases: &[(&str, &str)] = &[
            ("https://mycompany.com/myapp.php?foo=1&bar=2", "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
            ("https://mycompany.com:443/myapp.php?foo=1&bar=2", "kvajT1Ptam85bY51eRf/AJRuM3w="),
            ("http://mycompany.com:80/myapp.php?foo=1&bar=2", "0ZXoZLH/DfblKGATFgpif+LLRf4="),
            ("http://mycompany.com:1234/myapp.php?foo=1&bar=2", "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="),
        ];
        for (url, expected) in cases {
            assert_eq!(signature(url, &reference_params(), "12345"), *expected, "{url}");
        }
    }

    #[test]
    fn repeated_parameters_are_sorted_and_deduplicated_as_twilio_does() {
        let params = pairs(&[
            ("Sid", "CA123"),
            ("SidAccount", "AC123"),
            ("Digits", "5678"),
            ("Digits", "1234"),
            ("Digits", "1234"),
        ]);
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(signature(url, &params, "12345"), "IK+Dwps556ElfBT0I3Rgjkr1wJU=");
        let mut shuffled = params.clone();
        shuffled.reverse();
        assert_eq!(signature(url, &shuffled, "12345"), "IK+Dwps556ElfBT0I3Rgjkr1wJU=");
    }

    #[test]
    fn a_json_body_is_signed_through_its_sha256_in_the_url() {
        let body = br#"{"property": "value", "boolean": true}"#;
        let url = url_with_body_sha256("https://mycompany.com/myapp.php?foo=1&bar=2", body);
        assert_eq!(
            url,
            "https://mycompany.com/myapp.php?foo=1&bar=2&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
        );
        assert_eq!(signature(&url, &[], "12345"), "a9nBmqA0ju/hNViExpshrM61xv4=");
        assert!(url_with_body_sha256("https://x/y", b"").starts_with("https://x/y?bodySHA256=e3b0c442"));
    }

    #[test]
    fn the_signature_depends_on_token_url_and_every_value() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let base = signature(url, &reference_params(), "12345");
        assert_ne!(signature(url, &reference_params(), "12346"), base);
        assert_ne!(signature("https://mycompany.com/myapp.php?foo=1&bar=3", &reference_params(), "12345"), base);
        let mut changed = reference_params();
        changed[1].1 = "1235".into();
        assert_ne!(signature(url, &changed, "12345"), base);
    }

    #[test]
    fn message_sids_are_stable_distinct_and_twilio_shaped() {
        let a = message_sid("inbox-1");
        assert_eq!(a, message_sid("inbox-1"));
        assert_ne!(a, message_sid("inbox-2"));
        assert_eq!(a.len(), 34);
        assert!(a.starts_with("SM"));
        assert!(a[2..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{a}");
    }

    #[test]
    fn countries_come_from_the_calling_code() {
        let cases: &[(&str, &str)] = &[
            ("+358401234567", "FI"),
            ("+46701234567", "SE"),
            ("+4791234567", "NO"),
            ("+4520123456", "DK"),
            ("+37251234567", "EE"),
            ("+4915112345678", "DE"),
            ("+447700900123", "GB"),
            ("+353851234567", "IE"),
            ("+61412345678", "AU"),
            ("+64211234567", "NZ"),
            ("+14155550100", "US"),
            ("+33612345678", ""),
            ("ExampleVet", ""),
            ("0401234567", ""),
            ("+", ""),
        ];
        for (number, iso) in cases {
            assert_eq!(country_of(number), *iso, "{number}");
        }
    }

    fn forwarder(url: &str, token: &str) -> TwilioForwarder {
        TwilioForwarder {
            name: "twilio1".into(),
            url: url.into(),
            account_sid: format!("AC{}", "0123456789abcdef".repeat(2)),
            auth_token: Secret::new(token),
            to_number: PhoneNumber::parse("+358401111111", None).unwrap(),
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(10),
            give_up_after: Duration::from_secs(100),
        }
    }

    fn sms(body: &str) -> InboundSms {
        InboundSms {
            uid: "in-42".into(),
            from: "+61412345678".into(),
            to: None,
            body: body.into(),
            segments: 2,
            received_at_unix: 1_576_391_654,
        }
    }

    #[test]
    fn the_request_has_the_nineteen_fields_of_a_real_capture() {
        let cfg = forwarder("https://clinic.example/sms", "tok");
        let req = build_request(&cfg, &sms("Hei 😀"));
        let names: BTreeSet<&str> = req.params.iter().map(|(k, _)| k.as_str()).collect();
        let capture: BTreeSet<&str> = [
            "ToCountry",
            "ToState",
            "SmsMessageSid",
            "NumMedia",
            "ToCity",
            "FromZip",
            "SmsSid",
            "FromState",
            "SmsStatus",
            "FromCity",
            "Body",
            "FromCountry",
            "To",
            "ToZip",
            "NumSegments",
            "MessageSid",
            "AccountSid",
            "From",
            "ApiVersion",
        ]
        .into();
        assert_eq!(req.params.len(), 19);
        assert_eq!(names, capture);
        let get = |k: &str| req.params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str()).unwrap();
        let sid = message_sid("in-42");
        assert_eq!(get("MessageSid"), sid);
        assert_eq!(get("SmsSid"), sid);
        assert_eq!(get("SmsMessageSid"), sid);
        assert_eq!(get("AccountSid"), cfg.account_sid);
        assert_eq!(get("From"), "+61412345678");
        assert_eq!(get("To"), "+358401111111", "no modem number: the forwarder's own");
        let by_modem = build_request(&cfg, &InboundSms { to: Some("+358402222222".into()), ..sms("x") });
        let to = by_modem.params.iter().find(|(n, _)| n == "To").map(|(_, v)| v.as_str());
        assert_eq!(to, Some("+358402222222"), "the receiving modem's number");
        assert_eq!(get("Body"), "Hei 😀");
        assert_eq!(get("NumMedia"), "0");
        assert_eq!(get("NumSegments"), "2");
        assert_eq!(get("SmsStatus"), "received");
        assert_eq!(get("ApiVersion"), "2010-04-01");
        assert_eq!(get("FromCountry"), "AU");
        assert_eq!(get("ToCountry"), "FI");
        assert_eq!(get("FromCity"), "");
        assert_eq!(req.url, cfg.url);
        assert_eq!(req.signature, signature(&cfg.url, &req.params, "tok"));
        let decoded: Vec<(String, String)> = form_urlencoded::parse(req.form_body().as_bytes()).into_owned().collect();
        assert_eq!(decoded, req.params);
    }

    #[tokio::test]
    async fn a_2xx_with_twiml_is_delivered_with_its_replies() {
        let twiml = b"<Response><Message>Thanks!</Message><Message to=\"+358409999999\">FYI</Message></Response>";
        let server = serve("/sms?clinic=1", vec![Answer::Http(200, "text/xml", twiml.to_vec())]).await;
        let cfg = forwarder(&server.url, "secret-token");
        let client = ForwardClient::new(Duration::from_secs(10));
        let outcome = deliver_twilio(&client, &cfg, &sms("Hello & good day")).await;
        assert_eq!(
            outcome,
            DeliveryOutcome::Delivered {
                status: 200,
                replies: vec![
                    TwimlReply { to: None, body: "Thanks!".into() },
                    TwimlReply { to: Some("+358409999999".into()), body: "FYI".into() },
                ]
            }
        );
        let got = server.received.lock().unwrap()[0].clone();
        assert!(got.head.starts_with("POST /sms?clinic=1 HTTP/1.1"), "{}", got.head);
        let form = got.form();
        assert_eq!(got.header("x-twilio-signature").unwrap(), signature(&cfg.url, &form, "secret-token"));
        assert!(form.contains(&("Body".to_string(), "Hello & good day".to_string())));
    }

    #[tokio::test]
    async fn an_empty_204_is_delivered_without_replies() {
        let server = serve("/", vec![Answer::Http(204, "text/html", vec![])]).await;
        let client = ForwardClient::new(Duration::from_secs(10));
        let outcome = deliver_twilio(&client, &forwarder(&server.url, "t"), &sms("x")).await;
        assert_eq!(outcome, DeliveryOutcome::Delivered { status: 204, replies: vec![] });
    }

    #[tokio::test]
    async fn non_2xx_bad_twiml_and_timeouts_are_retryable_failures() {
        let client = ForwardClient::new(Duration::from_millis(500));
        let cases: Vec<(Answer, Option<u16>, &str)> = vec![
            (Answer::Http(500, "text/plain", b"boom".to_vec()), Some(500), "HTTP 500"),
            (Answer::Http(302, "text/plain", vec![]), Some(302), "HTTP 302"),
            (
                Answer::Http(200, "text/xml", b"<!DOCTYPE x><Response/>".to_vec()),
                Some(200),
                "TwiML answer was refused: TwiML refused at byte 0",
            ),
            (Answer::Http(200, "text/html", b"<html>ok</html>".to_vec()), Some(200), "not XML"),
            (Answer::Silence, None, "no complete answer within 0.5s"),
        ];
        for (answer, status, needle) in cases {
            let server = serve("/", vec![answer.clone()]).await;
            let outcome = deliver_twilio(&client, &forwarder(&server.url, "t"), &sms("x")).await;
            let DeliveryOutcome::Failed { status: got, error, retryable } = &outcome else {
                panic!("{answer:?}: {outcome:?}")
            };
            assert_eq!(*got, status, "{answer:?}");
            assert!(error.contains(needle), "{answer:?}: {error}");
            assert!(retryable, "{answer:?}");
        }
    }

    #[tokio::test]
    async fn an_unusable_url_is_not_retryable() {
        let client = ForwardClient::new(Duration::from_secs(1));
        let outcome = deliver_twilio(&client, &forwarder("ftp://x/y", "t"), &sms("x")).await;
        assert!(matches!(outcome, DeliveryOutcome::Failed { retryable: false, status: None, .. }), "{outcome:?}");
    }

    /// An independent check: a Python stdlib receiver that validates the signature the way
    /// twilio-python's RequestValidator does (URL as configured, and with the port removed or
    /// added), and answers 200 + TwiML only when it is valid.
    const PY_VALIDATOR: &str = r#"
import base64, hashlib, hmac, sys, urllib.parse
from http.server import BaseHTTPRequestHandler, HTTPServer
from xml.sax.saxutils import escape

TOKEN = sys.argv[1].encode()

def compute(url, params):
    s = url
    for name in sorted(set(params)):
        for value in sorted(set(params[name])):
            s += name + value
    mac = hmac.new(TOKEN, s.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()

def without_port(url):
    p = urllib.parse.urlparse(url)
    return urllib.parse.urlunparse(p._replace(netloc=p.hostname)) if p.port else url

def with_port(url):
    p = urllib.parse.urlparse(url)
    if p.port:
        return url
    port = 443 if p.scheme == "https" else 80
    return urllib.parse.urlunparse(p._replace(netloc="%s:%d" % (p.hostname, port)))

class H(BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(n).decode("utf-8")
        params = urllib.parse.parse_qs(raw, keep_blank_values=True, strict_parsing=True)
        url = "http://%s%s" % (self.headers["Host"], self.path)
        sig = self.headers.get("X-Twilio-Signature", "")
        ok = any(hmac.compare_digest(compute(u, params), sig) for u in (without_port(url), with_port(url)))
        if ok:
            body = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Message>got: %s from %s</Message></Response>"
                    % (escape(params["Body"][0]), escape(params["From"][0]))).encode("utf-8")
            self.send_response(200)
            self.send_header("Content-Type", "text/xml")
        else:
            body = b"bad signature"
            self.send_response(403)
            self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

srv = HTTPServer(("127.0.0.1", 0), H)
print(srv.server_address[1], flush=True)
srv.handle_request()
"#;

    /// Starts the validator with `token`; `None` when python3 is not installed.
    fn start_python_validator(token: &str) -> Option<(std::process::Child, u16)> {
        use std::io::BufRead;
        let child = std::process::Command::new("python3")
            .arg("-c")
            .arg(PY_VALIDATOR)
            .arg(token)
            .stdout(std::process::Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                eprintln!("SKIPPED: python3 is not available ({e}); the independent signature check did not run");
                return None;
            }
        };
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| panic!("validator printed {line:?}"));
        Some((child, port))
    }

    #[tokio::test]
    async fn an_independent_python_validator_accepts_the_signature() {
        let token = "f00dfeedcafe1234f00dfeedcafe1234";
        for path in ["/twilio/sms", "/twilio/sms?clinic=helsinki&x=%20y"] {
            let Some((mut child, port)) = start_python_validator(token) else { return };
            let cfg = forwarder(&format!("http://127.0.0.1:{port}{path}"), token);
            let client = ForwardClient::new(Duration::from_secs(20));
            let body = "Kiitos! Tuletteko 10:30? ÅÄÖ 😀 & <ok> = 100% +1";
            let outcome = deliver_twilio(&client, &cfg, &sms(body)).await;
            let _ = child.wait();
            assert_eq!(
                outcome,
                DeliveryOutcome::Delivered {
                    status: 200,
                    replies: vec![TwimlReply { to: None, body: format!("got: {body} from +61412345678") }]
                },
                "{path}"
            );
        }
    }

    #[tokio::test]
    async fn the_independent_python_validator_rejects_a_wrong_token() {
        let Some((mut child, port)) = start_python_validator("the-right-token") else { return };
        let cfg = forwarder(&format!("http://127.0.0.1:{port}/sms"), "a-wrong-token");
        let client = ForwardClient::new(Duration::from_secs(20));
        let outcome = deliver_twilio(&client, &cfg, &sms("x")).await;
        let _ = child.wait();
        assert!(matches!(outcome, DeliveryOutcome::Failed { status: Some(403), .. }), "{outcome:?}");
    }
}
