//! `GET /settings`: the effective configuration (secrets shown as `****`) and the audit list:
//! who did what in the web UI and the Provet panel.

use std::sync::Arc;

use axum::extract::State;
use hyper::StatusCode;
use maud::html;

use super::{Frame, Nav, SignedIn, errors, page, when};
use crate::web::{AppState, HttpResponse};

const AUDIT_LIMIT: usize = 200;

pub async fn show(State(state): State<Arc<AppState>>, session: SignedIn) -> HttpResponse {
    let rows = match state.store.read(|db| db.list_audit(AUDIT_LIMIT)).await {
        Ok(r) => r,
        Err(e) => return errors::store_failed(e),
    };
    let config = serde_json::to_string_pretty(&state.config.masked_json()).unwrap_or_default();
    let content = html! {
        h2 #audit { "Who did what" }
        @if rows.is_empty() { p.muted { "Nothing recorded yet." } } @else {
            table.stack aria-labelledby="audit" {
                thead { tr { th { "When" } th { "Who" } th { "What" } th { "On" } } }
                tbody {
                    @for r in &rows {
                        tr data-audit-action=(r.action) {
                            td data-label="When" { (when(r.at)) }
                            td data-label="Who" { (r.actor) }
                            td data-label="What" { (r.action) }
                            td data-label="On" { (r.subject.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
        h2 { "Effective configuration" }
        p.muted { "From " code { (state.config.source.display()) } " as the daemon loaded it at start; secrets are shown as ****. Change the file and restart smshub to change it." }
        pre data-config { (config) }
    };
    page(StatusCode::OK, &session, Frame::new("Settings", Nav::Settings), content)
}
