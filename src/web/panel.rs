//! The Provet side panel (public listener): `GET /provet/<instance>/panel/client?id=<client>`,
//! `GET /provet/<instance>/panel/patient?id=<patient>` (its owner; both also as POST with the
//! parameters as form data, for an integration set to POST), and
//! `POST /provet/<instance>/panel/send`.
//!
//! Provet opens the URL of a custom integration "in side panel" (an iframe on its page) or "in
//! new window", with a verification hash of a timestamp and a salt made when the Provet page
//! loads (seed 001). So:
//! - The request is verified like the reminders button ([`verify_hash`]), but the URL stays
//!   valid for `[custom_integration] panel_max_age_s` (default 12 h: the iframe may be reloaded
//!   long after the page loaded); a timestamp more than 5 minutes ahead is refused. It is not
//!   "accepted once": a reload is normal here. An unknown instance fails like a bad hash.
//! - No cookies: Provet is another site, and browsers block third-party cookies in iframes. The
//!   page's form carries a **panel token** instead: `base64url(payload).base64url(HMAC-SHA256)`
//!   over the instance, the client id, the client's numbers and an expiry ([`TOKEN_TTL`]),
//!   keyed by the instance's salt (nothing stored; a new salt voids old tokens). A send must
//!   name one of the token's numbers, so a page can only ever send to its own client.
//! - A send is [`queue_local_send`] with source `panel` (opt-outs and the `[replies]` limits
//!   apply), recorded in the audit list as `panel:<instance>`; the answer is the panel again
//!   (frameable), and in a new window its script posts `"reload"` to the Provet page that
//!   opened it.
//! - Headers: `Content-Security-Policy: frame-ancestors` with the Provet origins
//!   ([`frame_ancestors`]) on these pages only, no `X-Frame-Options`.
//! - Refusals are pages in words saying what to check in Provet (403 for the hash or the time,
//!   404 for an unknown client or patient).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Request, State};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hyper::StatusCode;
use maud::{DOCTYPE, Markup, html};
use ring::hmac;

use super::auth::form::Form;
use super::conn::ConnInfo;
use super::views::conversations::thread_list;
use super::views::send::{message_box, status_of};
use super::views::{head, html_response};
use super::{AppState, HttpResponse, read_body};
use crate::config::{Config, CustomIntegrationConfig, origin_of};
use crate::outbound::local::{LocalSource, queue_local_send};
use crate::provet::custom_integration::{VerifyError, verify_hash};
use crate::provet::{ClientCard, ProvetError};
use crate::store::now_ms;

/// How long a panel page's form may be used (reload the Provet page after that).
pub const TOKEN_TTL: Duration = Duration::from_secs(2 * 3600);
/// The form field holding the panel token.
pub const TOKEN_FIELD: &str = "panel_token";
/// Messages of each number's conversation shown in the panel.
const THREAD_LIMIT: usize = 20;
/// A send form is small.
const FORM_LIMIT: usize = 16 * 1024;

/// `GET …/panel/client`.
pub async fn client(State(state): State<Arc<AppState>>, Path(instance): Path<String>, req: Request) -> HttpResponse {
    match link_params(req).await {
        Ok((params, conn)) => open(&state, &instance, &params, conn, false).await,
        Err(resp) => resp,
    }
}

/// `GET …/panel/patient`: the panel of the patient's owner.
pub async fn patient(State(state): State<Arc<AppState>>, Path(instance): Path<String>, req: Request) -> HttpResponse {
    match link_params(req).await {
        Ok((params, conn)) => open(&state, &instance, &params, conn, true).await,
        Err(resp) => resp,
    }
}

/// The link's parameters: the query string, and for a POST (an integration set to send POST)
/// the form body after it.
async fn link_params(req: Request) -> Result<(Vec<u8>, Option<ConnInfo>), HttpResponse> {
    let conn = req.extensions().get::<ConnInfo>().copied();
    let mut params = req.uri().query().unwrap_or("").as_bytes().to_vec();
    if req.method() == hyper::Method::POST {
        let body = read_body(req, FORM_LIMIT).await?;
        if !body.is_empty() {
            params.push(b'&');
            params.extend_from_slice(&body);
        }
    }
    Ok((params, conn))
}

async fn open(
    state: &AppState,
    instance: &str,
    query: &[u8],
    conn: Option<ConnInfo>,
    by_patient: bool,
) -> HttpResponse {
    let csp = panel_csp(&state.config);
    let params = match Form::parse(query) {
        Ok(f) => f,
        Err(_) => {
            return refusal(
                &csp,
                StatusCode::BAD_REQUEST,
                "Unreadable link",
                "The link's parameters are not UTF-8 text. Check the integration's URL in Provet.",
            );
        }
    };
    let ci = integration(&state.config, instance);
    if let Err(e) = verify_hash(params.pairs(), &ci, ci.panel_max_age, now_ms() / 1000) {
        if let Some(conn) = conn {
            state.outsiders.note("side panel request refused", conn.surface, conn.client);
        }
        let (heading, words) = verify_words(&e, &ci);
        return refusal(&csp, StatusCode::FORBIDDEN, heading, &words);
    }
    let Some(id) = params.get(&ci.client_param).and_then(|v| v.trim().parse::<i64>().ok()).filter(|id| *id > 0) else {
        let what = if by_patient { "patient" } else { "client" };
        return refusal(
            &csp,
            StatusCode::BAD_REQUEST,
            "No id in the link",
            &format!(
                "The link has no {what} id in the parameter `{}`. In Provet, the integration's URL must pass the {what} id as `{}` ([custom_integration] client_param).",
                ci.client_param, ci.client_param
            ),
        );
    };
    let Some(provet) = state.provet_clients.get(instance) else {
        return refusal(
            &csp,
            StatusCode::NOT_FOUND,
            "Unknown Provet instance",
            "Check the integration's URL in Provet: its instance name must be a [[provet]] name in smshub's config.",
        );
    };
    let client_id = if by_patient {
        match provet.patient_owner(id).await {
            Ok(c) => c,
            Err(e) => return provet_refusal(&csp, "patient", id, &e),
        }
    } else {
        id
    };
    let card = match provet.client_card(client_id).await {
        Ok(c) => c,
        Err(e) => return provet_refusal(&csp, "client", client_id, &e),
    };
    render(state, instance, &ci, &card, &csp, StatusCode::OK, None).await
}

/// `POST …/panel/send`: `panel_token`, `number` (one of the token's), `text`.
pub async fn send(State(state): State<Arc<AppState>>, Path(instance): Path<String>, req: Request) -> HttpResponse {
    let csp = panel_csp(&state.config);
    let body = match read_body(req, FORM_LIMIT).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let Ok(form) = Form::parse(&body) else {
        return refusal(&csp, StatusCode::BAD_REQUEST, "Unreadable form", "Send the form from the panel page.");
    };
    let ci = integration(&state.config, &instance);
    let token = match PanelToken::verify(form.get(TOKEN_FIELD).unwrap_or(""), &instance, &ci, now_ms() / 1000) {
        Ok(t) => t,
        Err(why) => return refusal(&csp, StatusCode::FORBIDDEN, "The panel has expired", why),
    };
    let raw = form.get("number").unwrap_or("");
    let Some(number) = token.numbers.iter().find(|n| n.as_str() == raw) else {
        return refusal(
            &csp,
            StatusCode::FORBIDDEN,
            "Not this client's number",
            "The panel can only send to the numbers of the client it was opened for. Reload the client's page in Provet.",
        );
    };
    let to = match state.config.parse_number(number) {
        Ok(n) => n,
        Err(e) => {
            return refusal(
                &csp,
                StatusCode::BAD_REQUEST,
                "Not a mobile number",
                &format!("{number} cannot get an SMS: {e}. Correct it in Provet."),
            );
        }
    };
    let text = form.get("text").unwrap_or("");
    let Some(provet) = state.provet_clients.get(&instance) else {
        return refusal(
            &csp,
            StatusCode::NOT_FOUND,
            "Unknown Provet instance",
            "Check the integration's URL in Provet.",
        );
    };
    let queued =
        queue_local_send(&state.store, &state.wake, &state.config.replies, LocalSource::Panel, &to, text).await;
    let (status, outcome) = match &queued {
        Ok(id) => {
            let (actor, subject) = (format!("panel:{instance}"), format!("message {id} to {}", to.as_str()));
            if let Err(e) = state.store.call(move |db| db.record_audit(&actor, "send", Some(&subject))).await {
                tracing::error!(error = %e, "could not record a panel send in the audit list");
            }
            (StatusCode::OK, Outcome::Queued)
        }
        Err(e) => (status_of(e), Outcome::Refused(e.to_string(), text.chars().take(1600).collect())),
    };
    // The page again, with the client as Provet has it now (the token's numbers if Provet is away).
    let card = match provet.client_card(token.client).await {
        Ok(c) => c,
        Err(_) => ClientCard {
            id: token.client,
            name: format!("client {}", token.client),
            no_sms: false,
            numbers: token
                .numbers
                .iter()
                .map(|n| crate::provet::ClientNumber {
                    phone_number: n.clone(),
                    description: String::new(),
                    preferred: false,
                })
                .collect(),
        },
    };
    render(&state, &instance, &ci, &card, &csp, status, Some(outcome)).await
}

enum Outcome {
    Queued,
    /// The reason, and the text to put back in the box.
    Refused(String, String),
}

/// The instance's custom-integration settings; an unknown instance (or one without a salt)
/// gets a random salt nobody knows, so it fails exactly like a wrong hash.
fn integration(config: &Config, instance: &str) -> CustomIntegrationConfig {
    config
        .provet
        .iter()
        .find(|p| p.name == instance)
        .and_then(|p| p.custom_integration.clone())
        .unwrap_or_else(super::reminders::unknown_instance)
}

/// Who may frame the panel: `[custom_integration] frame_ancestors`, else the origin of every
/// `[[provet]] base_url`.
pub fn frame_ancestors(config: &Config) -> Vec<String> {
    let configured: Vec<String> = config
        .provet
        .iter()
        .filter_map(|p| p.custom_integration.as_ref())
        .chain(config.custom_integration.as_ref())
        .flat_map(|c| c.frame_ancestors.iter().cloned())
        .collect();
    let mut origins = if configured.is_empty() {
        config.provet.iter().filter_map(|p| origin_of(&p.base_url)).collect()
    } else {
        configured
    };
    origins.sort();
    origins.dedup();
    origins
}

fn panel_csp(config: &Config) -> String {
    let origins = frame_ancestors(config);
    let ancestors = if origins.is_empty() { "'none'".to_string() } else { origins.join(" ") };
    format!(
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors {ancestors}"
    )
}

async fn render(
    state: &AppState,
    instance: &str,
    ci: &CustomIntegrationConfig,
    card: &ClientCard,
    csp: &str,
    status: StatusCode,
    outcome: Option<Outcome>,
) -> HttpResponse {
    let keys: Vec<String> = card
        .numbers
        .iter()
        .map(|n| {
            state
                .config
                .parse_number(&n.phone_number)
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|_| n.phone_number.clone())
        })
        .collect();
    let token = PanelToken {
        instance: instance.to_string(),
        client: card.id,
        numbers: keys.clone(),
        expires: now_ms() / 1000 + TOKEN_TTL.as_secs() as i64,
    };
    let token = token.sign(ci);
    let k2 = keys.clone();
    let read = state
        .store
        .read(move |db| {
            k2.iter()
                .map(|k| Ok((db.is_opted_out(k)?, db.conversation(k, THREAD_LIMIT)?)))
                .collect::<Result<Vec<_>, _>>()
        })
        .await;
    let threads = match read {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "the side panel could not read the database");
            return refusal(
                csp,
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                "smshub could not read its database. Try again in a moment.",
            );
        }
    };
    let reload_origins = frame_ancestors(&state.config).join(" ");
    let (notice, kept_text) = match &outcome {
        Some(Outcome::Queued) => (
            Some(
                html! { p.notice role="status" data-sent-reload-origins=(reload_origins) { "Queued: the SMS is on its way." } },
            ),
            String::new(),
        ),
        Some(Outcome::Refused(why, text)) => (Some(html! { p.refused role="alert" { (why) } }), text.clone()),
        None => (None, String::new()),
    };
    let sendable: Vec<(&String, &crate::provet::ClientNumber)> =
        keys.iter().zip(&card.numbers).zip(&threads).filter(|(_, (opted, _))| !opted).map(|(k, _)| k).collect();
    let content = html! {
        (notice.unwrap_or_default())
        @if card.no_sms { p.refused { "This client does not want SMS (“No SMS” in Provet)." } }
        @if card.numbers.is_empty() { p.muted { "This client has no phone number in Provet." } }
        @if !sendable.is_empty() && !card.no_sms {
            section.card {
                form method="post" action={ "/provet/" (instance) "/panel/send" } {
                    input type="hidden" name=(TOKEN_FIELD) value=(token);
                    label for="number" { "To" }
                    select #number name="number" {
                        @for (key, n) in &sendable { option value=(key) { (key) @if !n.description.is_empty() { " (" (n.description) ")" } } }
                    }
                    (message_box(&kept_text))
                    button type="submit" { "Send SMS" }
                }
            }
        }
        @for ((key, n), (opted_out, entries)) in keys.iter().zip(&card.numbers).zip(&threads) {
            section.card data-number=(key) data-optout=(if *opted_out { "yes" } else { "no" }) {
                h2 { (key) @if n.preferred { " " span.state { "preferred" } } @if !n.description.is_empty() { " " span.muted { (n.description) } } }
                @if *opted_out { p.bad { "On the opt-out list (sent STOP): nothing is sent to this number." } }
                (thread_list(entries))
            }
        }
    };
    html_response(status, panel_doc(&card.name, content).into_string(), csp)
}

fn panel_doc(title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { (head(title, None)) }
            body { main.panel { h1 { (title) } (content) } }
        }
    }
}

fn refusal(csp: &str, status: StatusCode, heading: &str, words: &str) -> HttpResponse {
    let doc = panel_doc(heading, html! { p.refused role="alert" { (words) } });
    html_response(status, doc.into_string(), csp)
}

fn verify_words(e: &VerifyError, ci: &CustomIntegrationConfig) -> (&'static str, String) {
    match e {
        VerifyError::Stale { .. } => {
            let max = ci.panel_max_age.as_secs();
            let age = if max >= 3600 { format!("{} hours", max / 3600) } else { format!("{} minutes", max / 60) };
            (
                "This panel link has expired",
                format!(
                    "Provet made this link more than {age} ago. Reload the page in Provet to get a fresh one ([custom_integration] panel_max_age_s)."
                ),
            )
        }
        VerifyError::Future { ahead_s } => (
            "The clocks disagree",
            format!("The link is dated {ahead_s} s in the future. Check the clock of the smshub box (NTP)."),
        ),
        VerifyError::BadHash => (
            "The link could not be verified",
            "Check in Provet (Settings › Integrations › Custom integrations) that “Add verification hash” is on, “Include payload in verification hash” is off, and the verification salt equals smshub's [custom_integration] salt; and that the URL names the right instance.".into(),
        ),
        other => ("The link could not be verified", format!("{other}. Check the integration's URL and settings in Provet.")),
    }
}

fn provet_refusal(csp: &str, what: &str, id: i64, e: &ProvetError) -> HttpResponse {
    if matches!(e, ProvetError::NotFound) {
        return refusal(
            csp,
            StatusCode::NOT_FOUND,
            "Not found in Provet",
            &format!(
                "Provet has no {what} {id}. Check that the integration passes the {what} id, and that the {what} was not removed."
            ),
        );
    }
    tracing::warn!(error = %e, what, "the side panel could not read Provet");
    refusal(
        csp,
        StatusCode::BAD_GATEWAY,
        "Provet did not answer",
        &format!(
            "smshub could not read {what} {id} from Provet ({e}). Try again in a moment; if it lasts, run `smshub doctor` on the box."
        ),
    )
}

/// What a panel page's form may do: send to `numbers` of `client` of `instance` until `expires`
/// (unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PanelToken {
    pub instance: String,
    pub client: i64,
    pub numbers: Vec<String>,
    pub expires: i64,
}

/// Tokens are long only by the numbers they carry; anything longer is not one of ours.
const TOKEN_MAX: usize = 4096;

impl PanelToken {
    fn key(ci: &CustomIntegrationConfig) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, ci.salt.expose().as_bytes())
    }

    fn payload(&self) -> String {
        format!("smshub-panel-v1\n{}\n{}\n{}\n{}", self.instance, self.client, self.expires, self.numbers.join(","))
    }

    pub fn sign(&self, ci: &CustomIntegrationConfig) -> String {
        let payload = self.payload();
        let tag = hmac::sign(&Self::key(ci), payload.as_bytes());
        format!("{}.{}", URL_SAFE_NO_PAD.encode(payload), URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// The token if it is ours, for `instance`, and not expired at `now` (unix seconds); else
    /// why not, in words.
    pub fn verify(
        token: &str,
        instance: &str,
        ci: &CustomIntegrationConfig,
        now: i64,
    ) -> Result<PanelToken, &'static str> {
        const RELOAD: &str = "This panel's form is no longer valid (it expired, or smshub's settings changed). Reload the client's page in Provet and send again.";
        if token.len() > TOKEN_MAX {
            return Err(RELOAD);
        }
        let (payload, tag) = token.split_once('.').ok_or(RELOAD)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| RELOAD)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| RELOAD)?;
        hmac::verify(&Self::key(ci), &payload, &tag).map_err(|_| RELOAD)?;
        let payload = String::from_utf8(payload).map_err(|_| RELOAD)?;
        let mut lines = payload.split('\n');
        let (Some("smshub-panel-v1"), Some(inst), Some(client), Some(expires), Some(numbers), None) =
            (lines.next(), lines.next(), lines.next(), lines.next(), lines.next(), lines.next())
        else {
            return Err(RELOAD);
        };
        let (Ok(client), Ok(expires)) = (client.parse::<i64>(), expires.parse::<i64>()) else { return Err(RELOAD) };
        if inst != instance || expires < now {
            return Err(RELOAD);
        }
        let numbers = numbers.split(',').filter(|n| !n.is_empty()).map(str::to_string).collect();
        Ok(PanelToken { instance: inst.to_string(), client, numbers, expires })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn ci(salt: &str) -> CustomIntegrationConfig {
        let mut c = super::super::reminders::unknown_instance();
        c.salt = Secret::new(salt);
        c
    }

    #[test]
    fn only_provet_may_frame_the_panel_unless_the_config_says_who() {
        let base = "[[provet]]\nname = \"a\"\nbase_url = \"https://EU.provetcloud.com/4321/api/0.1/\"\nclient_id = \"x\"\nclient_secret = \"y\"\n\
                    [[provet]]\nname = \"b\"\nbase_url = \"https://us.provetcloud.com:8443/1/api/0.1/\"\nclient_id = \"x\"\nclient_secret = \"y\"\n";
        let cfg = |extra: &str| Config::parse(std::path::Path::new("t.toml"), &format!("{base}{extra}")).unwrap();
        assert_eq!(frame_ancestors(&cfg("")), ["https://eu.provetcloud.com", "https://us.provetcloud.com:8443"]);
        let own =
            cfg("[custom_integration]\nsalt = \"0123456789abcdef\"\nframe_ancestors = [\"https://provet.example\"]\n");
        assert_eq!(frame_ancestors(&own), ["https://provet.example"]);
        assert!(panel_csp(&own).ends_with("frame-ancestors https://provet.example"));
        let none = Config::parse(std::path::Path::new("t.toml"), "").unwrap();
        assert!(panel_csp(&none).ends_with("frame-ancestors 'none'"));
    }

    #[test]
    fn a_panel_token_is_bound_to_its_instance_client_numbers_and_time() {
        let good = ci("0123456789abcdef0123");
        let t =
            PanelToken { instance: "helsinki".into(), client: 7, numbers: vec!["+358401234567".into()], expires: 1000 };
        let signed = t.sign(&good);
        assert_eq!(PanelToken::verify(&signed, "helsinki", &good, 999), Ok(t.clone()));
        assert!(PanelToken::verify(&signed, "helsinki", &good, 1001).is_err(), "expired");
        assert!(PanelToken::verify(&signed, "espoo", &good, 999).is_err(), "another instance");
        assert!(PanelToken::verify(&signed, "helsinki", &ci("another salt 0123456"), 999).is_err(), "another salt");
        // A changed payload with the old tag.
        let (_, tag) = signed.split_once('.').unwrap();
        let forged = PanelToken { numbers: vec!["+358409999999".into()], ..t };
        let forged_payload = forged.sign(&ci("x")).split_once('.').unwrap().0.to_string();
        assert!(PanelToken::verify(&format!("{forged_payload}.{tag}"), "helsinki", &good, 999).is_err());
        for junk in ["", ".", "a.b", "%%%.%%%", &"A".repeat(10_000), "c21zaHVi.AAAA"] {
            assert!(PanelToken::verify(junk, "helsinki", &good, 0).is_err(), "{junk:.20}");
        }
    }
}
