//! `GET /doctor`: the read-only checks of `smshub doctor` with ✓/✗ and remedies, run when
//! asked (`?run=1`: they reach out to Provet and DNS, so not on every view). The modems are
//! judged by the running drivers' status: the daemon holds their ports.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use hyper::StatusCode;
use maud::html;

use super::{Frame, Nav, SignedIn, page, query};
use crate::config::Config;
use crate::doctor::{self, Check};
use crate::web::{AppState, HttpResponse};

/// All checks together get this long (each outside call has its own, shorter deadline).
const DOCTOR_DEADLINE: Duration = Duration::from_secs(60);

pub async fn show(State(state): State<Arc<AppState>>, session: SignedIn, req: Request) -> HttpResponse {
    let q = match query(&req) {
        Ok(q) => q,
        Err(resp) => return *resp,
    };
    let checks = if q.get("run") == Some("1") { Some(run(&state).await) } else { None };
    let content = html! {
        form method="get" action="/doctor" {
            input type="hidden" name="run" value="1";
            button type="submit" { @if checks.is_some() { "Run the checks again" } @else { "Run the checks" } }
        }
        @if let Some(checks) = &checks {
            @let failed = checks.iter().filter(|c| !c.ok).count();
            p data-failed=(failed) { @if failed == 0 { span.ok { "✓ Every check passed." } } @else { span.bad { "✗ " (failed) " check(s) failed." } } }
            ul.checks {
                @for c in checks {
                    li data-check=(c.name) data-ok=(c.ok) {
                        @if c.ok { span.ok aria-label="passed" { "✓ " } } @else { span.bad aria-label="failed" { "✗ " } }
                        strong { (c.name) } ": " (c.detail)
                        @if let Some(r) = &c.remedy { br; span.muted { "What to do: " (r) } }
                    }
                }
            }
        } @else {
            p.muted { "The checks read the configuration file, the database, free space, the modems' state, the Provet tokens and the forwarders' addresses. Nothing is changed and no SMS is sent." }
        }
    };
    page(StatusCode::OK, &session, Frame::new("Doctor", Nav::Doctor), content)
}

async fn run(state: &AppState) -> Vec<Check> {
    let live: Vec<_> = state
        .modems
        .get()
        .map(|m| m.iter().map(|(n, rx)| (n.clone(), rx.borrow().clone())).collect())
        .unwrap_or_default();
    let mut checks = vec![match Config::load(&state.config.source) {
        Ok(_) => Check::passed("config", format!("{} is valid", state.config.source.display())),
        Err(e) => Check::failed(
            "config",
            e.to_string(),
            "the running daemon still uses the config it started with; fix the file before the next restart",
        ),
    }];
    // The checks read files and run SQLite's integrity check synchronously: on a blocking
    // thread, so the listeners and pipelines are not held up meanwhile.
    let config = state.config.clone();
    let runtime = tokio::runtime::Handle::current();
    let run = tokio::task::spawn_blocking(move || runtime.block_on(doctor::run_loaded(&config, Some(&live))));
    match tokio::time::timeout(DOCTOR_DEADLINE, run).await {
        Ok(Ok(more)) => checks.extend(more),
        Ok(Err(e)) => {
            checks.push(Check::failed("doctor", format!("the checks stopped: {e}"), "run `smshub doctor` on the box"))
        }
        Err(_) => checks.push(Check::failed(
            "doctor",
            format!("the checks did not finish within {} s", DOCTOR_DEADLINE.as_secs()),
            "run `smshub doctor` on the box to see which check hangs",
        )),
    }
    checks
}
