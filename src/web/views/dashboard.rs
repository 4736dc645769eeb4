//! `GET /`: the dashboard. Each modem (state, signal in dBm with bars and words, SIM storage,
//! last error), the queue counts, the last 24 hours, each pipeline's backlog, health, free disk,
//! version and uptime. Reloads itself every [`REFRESH_S`] seconds (a meta refresh: no script).
//!
//! Counts and modem states carry `data-*` attributes (`data-count="sent"`, `data-modem="main"
//! data-state="registered" data-signal-dbm="-73"`) so tests and scripts need not read words.

use std::sync::Arc;

use axum::extract::State;
use hyper::StatusCode;
use maud::{Markup, html};

use super::{Frame, Nav, SignedIn, ago, errors, page, state_badge};
use crate::modem::driver::{ModemState, ModemStatus};
use crate::store::now_ms;
use crate::web::{AppState, HttpResponse};

/// How often the dashboard reloads itself.
pub const REFRESH_S: u32 = 10;

const DAY_MS: i64 = 86_400_000;

/// The states the queue counts show, in pipeline order.
const QUEUE_STATES: [&str; 7] = ["received", "fetched", "sending", "sent", "failed", "refused", "reported"];

pub async fn show(State(state): State<Arc<AppState>>, session: SignedIn) -> HttpResponse {
    let now = now_ms();
    let read = state.store.read(move |db| Ok((db.counts_since(now - DAY_MS)?, db.backlogs()?))).await;
    let (day, backlogs) = match read {
        Ok(r) => r,
        Err(e) => return errors::store_failed(e),
    };
    let counts = state.counts.get(&state.store).await;
    let queue = &counts.outbox;
    let modems: Vec<(String, ModemStatus)> = state
        .modems
        .get()
        .map(|m| m.iter().map(|(name, rx)| (name.clone(), rx.borrow().clone())).collect())
        .unwrap_or_default();
    let health = state.health.report();
    let free_mb = crate::store::free_bytes(&state.config.store.path).ok().map(|b| b / (1024 * 1024));
    let uptime = state.started.elapsed().as_secs();
    let content = html! {
        div.grid {
            @for (name, st) in &modems { (modem_card(name, st, counts.modems.get(name))) }
            @if modems.is_empty() {
                section.card { h2 { "Modems" } p.muted { "No modem is running (none configured, or smshub is starting)." } }
            }
            section.card aria-labelledby="last-day" {
                h2 #last-day { "Last 24 hours" }
                ul.counts {
                    li data-count="sent" data-value=(day.sent) { strong { (day.sent) } "sent" }
                    li data-count="received" data-value=(day.received) { strong { (day.received) } "received" }
                    li data-count="failed" data-value=(day.failed) { strong { (day.failed) } "failed or refused" }
                }
            }
            section.card aria-labelledby="queue" {
                h2 #queue { "Outbox by state" }
                ul.counts {
                    @for s in QUEUE_STATES {
                        @let n = queue.get(s).copied().unwrap_or(0);
                        li data-count={ "outbox-" (s) } data-value=(n) { strong { (n) } a href={ "/outbox?state=" (s) } { (s) } }
                    }
                }
            }
            section.card aria-labelledby="health" {
                h2 #health { "Health" }
                @if health.healthy {
                    p.ok data-health="healthy" { "✓ Every part is working." }
                } @else {
                    p.bad data-health="unhealthy" { "✗ Something needs attention:" }
                    ul { @for p in health.problems.iter().chain(&health.stuck) { li { (p) } } }
                }
                dl.facts {
                    dt { "Free disk" } dd data-free-mb=[free_mb] { @match free_mb { Some(mb) => { (mb) " MB" }, None => "unknown" } }
                    dt { "Version" } dd { (env!("CARGO_PKG_VERSION")) }
                    dt { "Up for" } dd { (uptime_words(uptime)) }
                }
            }
            section.card aria-labelledby="pipelines" {
                h2 #pipelines { "Provet, forwarders, event webhooks" }
                (pipelines(&state, &backlogs))
            }
        }
    };
    let frame = Frame { title: "Dashboard", nav: Nav::Dashboard, refresh_s: Some(REFRESH_S) };
    page(StatusCode::OK, &session, frame, content)
}

fn modem_card(name: &str, st: &ModemStatus, day: Option<&crate::store::ModemFigures>) -> Markup {
    let slug = state_slug(st);
    html! {
        section.card data-modem=(name) data-state=(slug) data-signal-dbm=[st.signal_dbm] {
            h2 { "Modem " (name) }
            p { (state_badge(slug)) " " (st.state.to_string()) }
            dl.facts {
                dt { "Signal" }
                dd {
                    @match st.signal_dbm {
                        Some(dbm) => { span.bars aria-hidden="true" { (bars(dbm)) } " " (dbm) " dBm, " (signal_words(dbm)) },
                        None => "unknown",
                    }
                }
                dt { "Network" }
                dd { @match st.registration { Some(r) if r.registered() => "registered", Some(_) => "not registered", None => "unknown" } }
                @if let Some(id) = &st.identity {
                    dt { "Device" }
                    dd { (id.manufacturer.as_deref().unwrap_or("")) " " (id.model.as_deref().unwrap_or("")) }
                }
                dt { "SIM storage" }
                dd { @match st.storage { Some(s) => { (s.used) " of " (s.total) " used" }, None => "unknown" } }
                @if let Some(e) = &st.last_error { dt { "Last error" } dd.bad { (e) } }
                @if let Some(d) = day {
                    dt { "Last 24 hours" }
                    dd data-modem-sent=(d.sent) data-modem-received=(d.received) data-modem-failed=(d.failed) {
                        (d.sent) " sent, " (d.received) " received, " (d.failed) " failed"
                    }
                }
            }
        }
    }
}

/// A short machine word for the modem's state (the `data-state` attribute).
pub fn state_slug(st: &ModemStatus) -> &'static str {
    match &st.state {
        ModemState::Ready if st.registration.is_none_or(|r| r.registered()) => "registered",
        ModemState::Ready => "ready",
        ModemState::Opening => "opening",
        ModemState::Initializing => "initializing",
        ModemState::WaitingForRegistration => "waiting_for_network",
        ModemState::Recovering => "recovering",
        ModemState::Unplugged => "unplugged",
        ModemState::SimLocked(_) => "sim_locked",
        ModemState::Failed(_) => "failed",
    }
}

/// Bars out of four, as phones draw them (−113 dBm is nothing, −51 the best).
pub fn bars(dbm: i32) -> String {
    let n = match dbm {
        i32::MIN..=-110 => 0,
        -109..=-100 => 1,
        -99..=-90 => 2,
        -89..=-80 => 3,
        _ => 4,
    };
    format!("{}{}", "▮".repeat(n), "▯".repeat(4 - n))
}

/// The signal in words a receptionist understands.
pub fn signal_words(dbm: i32) -> &'static str {
    match dbm {
        i32::MIN..=-110 => "no usable signal",
        -109..=-100 => "weak",
        -99..=-90 => "fair",
        -89..=-80 => "good",
        _ => "excellent",
    }
}

fn pipelines(state: &AppState, backlogs: &[crate::store::Backlog]) -> Markup {
    let provet = state.config.provet.iter().map(|p| ("provet", p.name.clone()));
    let forwarders = state.config.forwarders.iter().map(|f| ("forwarder", f.name().to_string()));
    let hooks = state.config.event_webhooks.iter().map(|w| ("webhook", w.name.clone()));
    let all: Vec<(&str, String)> = provet.chain(forwarders).chain(hooks).collect();
    html! {
        @if all.is_empty() { p.muted { "None configured." } }
        ul.checks {
            @for (kind, name) in &all {
                @let b = backlogs.iter().find(|b| b.kind == *kind && &b.name == name);
                @let failing = b.map_or(0, |b| b.failing);
                li data-pipeline=(kind) data-name=(name) data-failing=(failing) {
                    @if failing == 0 { span.ok { "✓ " } } @else { span.bad { "✗ " } }
                    strong { (kind) " " (name) } ": "
                    @match b {
                        None => "nothing waiting",
                        Some(b) => {
                            (b.pending) " waiting"
                            @if b.failing > 0 { ", " (b.failing) " failing" }
                            @if let Some(e) = &b.last_error { br; span.muted { "last error: " (e) } }
                        }
                    }
                }
            }
        }
    }
}

fn uptime_words(s: u64) -> String {
    let now = now_ms();
    let started = now.saturating_sub(i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX));
    ago(started, now).replace(" ago", "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_reads_as_bars_and_words() {
        assert_eq!((bars(-73), signal_words(-73)), ("▮▮▮▮".to_string(), "excellent"));
        assert_eq!((bars(-95), signal_words(-95)), ("▮▮▯▯".to_string(), "fair"));
        assert_eq!((bars(-113), signal_words(-113)), ("▯▯▯▯".to_string(), "no usable signal"));
        assert_eq!(bars(i32::MIN).chars().count(), 4);
    }
}
