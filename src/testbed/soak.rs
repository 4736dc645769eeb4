//! `smshub bench soak --minutes N`: the daemon (a child process, so it can be SIGKILLed) against
//! the simulator and the fake Provet (in this process, so they outlive every kill), with random
//! faults while Provet work and inbound SMS flow. Nothing here is a test: it prints counts and
//! the invariants it checked, and exits non-zero when one is broken.
//!
//! Faults, drawn at random each step: modem garbage bytes, transient `+CMS ERROR`s, a hang (then
//! answering again), unplug and replug; Provet 5xx, 429 with `Retry-After`, stalls and latency;
//! SIGKILL of the daemon at a random moment (then a restart).
//!
//! At the end the faults are cleared, the daemon is given time to finish, and these are checked:
//! every Provet message marked exactly once; no message text reached the modem twice (an
//! acknowledged part is never sent again); nothing marked successful that the modem never got
//! (no false success); every received SMS stored and forwarded.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::fake_provet::{Failure, FakeOptions, FakeProvet, Mark};
use super::modem_sim::{self as sim, SimOptions};
use super::peers::DaemonProcess;
use crate::store::now_ms;

const WEBHOOK_TOKEN: &str = "soak-webhook-token-0123456789";

#[derive(Default, Debug)]
struct Counts {
    kills: u64,
    crashes: u64,
    outbound: u64,
    inbound: u64,
    modem_faults: u64,
    provet_faults: u64,
}

/// Runs the soak for `minutes`; `dir` holds the database (use the real disk).
pub async fn soak(minutes: u64, dir: Option<&Path>, seed: Option<u64>) -> anyhow::Result<()> {
    let seed = seed.unwrap_or_else(|| fastrand::u64(..));
    let mut rng = fastrand::Rng::with_seed(seed);
    let base = dir.map(Path::to_path_buf).unwrap_or_else(std::env::temp_dir);
    let tmp = base.join(format!("smshub-soak-{}-{}", std::process::id(), now_ms()));
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let fake = FakeProvet::start(FakeOptions::default()).await.context("starting the fake Provet")?;
    let link = tmp.join("modem");
    let sim = sim::start(SimOptions { link: Some(link.clone()), seed: Some(seed), ..SimOptions::default() })
        .await
        .context("starting the simulator")?;
    let control = sim.control();
    let (receiver_url, arrivals) = super::peers::start_receiver().await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let db_path = tmp.join("soak.db");
    let text = format!(
        "[store]\npath = \"{}\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[logging]\nlevel = \"warn\"\nformat = \"stderr\"\n\
         [[provet]]\nname = \"soak\"\nbase_url = \"{}\"\ntoken_url = \"{}\"\nclient_id = \"{}\"\nclient_secret = \"{}\"\n\
         webhook_token = \"{WEBHOOK_TOKEN}\"\npoll_interval_s = 3\nretry_initial_s = 1\nretry_max_s = 3\nrequest_timeout_s = 3\n\
         allow_insecure_http = true\n\
         [[modem]]\nname = \"sim\"\ndevice = \"{}\"\nsend_timeout_s = 10\n\
         [outbound]\nmax_attempts = 1000\nretry_initial_s = 1\nretry_max_s = 3\n\
         [[forward]]\nkind = \"pbx\"\nurl = \"{receiver_url}\"\nservice_id = \"1\"\nsms_number = \"+61412345678\"\n\
         max_attempts = 1000\nretry_initial_s = 1\nretry_max_s = 2\n",
        db_path.display(),
        fake.base_url(),
        fake.token_url(),
        fake.options().client_id,
        fake.options().client_secret,
        link.display(),
    );
    let cfg = tmp.join("soak.toml");
    std::fs::write(&cfg, text)?;
    std::fs::set_permissions(&cfg, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let mut daemon = DaemonProcess::new(cfg, tmp.join("daemon.log"), format!("127.0.0.1:{port}"));
    daemon.start()?;

    println!("soak: {minutes} min, seed {seed}, files in {}", tmp.display());
    let mut counts = Counts::default();
    let mut outbound: BTreeMap<i64, String> = BTreeMap::new();
    let mut inbound: BTreeSet<String> = BTreeSet::new();
    let end = Instant::now() + Duration::from_secs(minutes.saturating_mul(60));
    let mut next_kill = Instant::now() + Duration::from_millis(rng.u64(1500..6000));
    let mut clear_hang_at: Option<Instant> = None;
    let mut replug_at: Option<Instant> = None;
    let mut last_report = Instant::now();
    while Instant::now() < end {
        // Work: Provet messages (some announced by webhook, the rest found by the poll) and
        // inbound SMS, each with a unique text.
        for _ in 0..rng.usize(0..=2) {
            counts.outbound += 1;
            let text = format!("soak out {}", counts.outbound);
            let to = format!("+3584000{:05}", rng.u32(0..100_000));
            let id = fake.add_sms(&to, &text);
            outbound.insert(id, text);
            if rng.bool() {
                let _ = super::peers::post_webhook_to(&daemon.addr, "soak", WEBHOOK_TOKEN, id).await;
            }
        }
        if rng.u8(0..3) == 0 {
            counts.inbound += 1;
            let text = format!("soak in {}", counts.inbound);
            let from = format!("+3585000{:05}", rng.u32(0..100_000));
            if control.inject(&from, &text).await.is_ok() {
                inbound.insert(text);
            } else {
                counts.inbound -= 1;
            }
        }
        // Faults.
        match rng.u8(0..20) {
            0 => {
                counts.modem_faults += 1;
                let _ = control.set(serde_json::json!({"garbage_rate": 0.05})).await;
            }
            1 => {
                counts.modem_faults += 1;
                let _ = control.set(serde_json::json!({"cms_error": 42, "cms_error_rate": 0.2})).await;
            }
            2 if clear_hang_at.is_none() => {
                counts.modem_faults += 1;
                let _ = control.set(serde_json::json!({"hang_after": rng.u64(0..5)})).await;
                clear_hang_at = Some(Instant::now() + Duration::from_secs(rng.u64(2..8)));
            }
            3 if replug_at.is_none() => {
                counts.modem_faults += 1;
                let _ = control.unplug().await;
                replug_at = Some(Instant::now() + Duration::from_secs(rng.u64(1..4)));
            }
            4 => {
                counts.modem_faults += 1;
                let _ = control.set(serde_json::json!({"garbage_rate": 0.0, "cms_error_rate": 0.0})).await;
            }
            5 => {
                counts.provet_faults += 1;
                fake.fail_next(rng.usize(1..4), Failure::Status(*rng.choice(&[500u16, 502, 503]).unwrap_or(&503)));
            }
            6 => {
                counts.provet_faults += 1;
                fake.fail_next(1, Failure::RateLimited { retry_after: Some(rng.u8(1..3).to_string()) });
            }
            7 => {
                counts.provet_faults += 1;
                fake.fail_next(1, Failure::Stall);
            }
            8 => {
                counts.provet_faults += 1;
                fake.set_latency(Duration::from_millis(rng.u64(0..800)));
            }
            _ => {}
        }
        if clear_hang_at.is_some_and(|t| Instant::now() >= t) {
            let _ = control.set(serde_json::json!({"hang_after": null})).await;
            clear_hang_at = None;
        }
        if replug_at.is_some_and(|t| Instant::now() >= t) {
            let _ = control.replug().await;
            replug_at = None;
        }
        if let Some(status) = daemon.exited() {
            counts.crashes += 1;
            eprintln!("soak: the daemon exited by itself ({status}); restarting");
            daemon.start()?;
        }
        if Instant::now() >= next_kill {
            counts.kills += 1;
            daemon.kill();
            tokio::time::sleep(Duration::from_millis(rng.u64(0..300))).await;
            daemon.start()?;
            next_kill = Instant::now() + Duration::from_millis(rng.u64(1500..6000));
        }
        if last_report.elapsed() >= Duration::from_secs(30) {
            last_report = Instant::now();
            println!(
                "soak: {} kills, {} outbound, {} inbound so far ({} min left)",
                counts.kills,
                counts.outbound,
                counts.inbound,
                end.saturating_duration_since(Instant::now()).as_secs() / 60
            );
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(100..600))).await;
    }

    // Clear every fault and let the daemon finish its work.
    let _ = control.set(serde_json::json!({"garbage_rate": 0.0, "cms_error_rate": 0.0, "hang_after": null})).await;
    if replug_at.is_some() {
        let _ = control.replug().await;
    }
    fake.set_latency(Duration::ZERO);
    if daemon.exited().is_some() || daemon.child.is_none() {
        daemon.start()?;
    }
    let settle = Instant::now();
    let forwarded = |bodies: &BTreeSet<String>| -> usize {
        let got: BTreeSet<String> =
            arrivals.lock().map(|l| l.iter().filter_map(|a| a.field("body")).collect()).unwrap_or_default();
        bodies.iter().filter(|b| got.contains(*b)).count()
    };
    while settle.elapsed() < Duration::from_secs(240) {
        let marked: BTreeSet<i64> = fake.marks().iter().map(|(id, _)| *id).collect();
        if outbound.keys().all(|id| marked.contains(id)) && forwarded(&inbound) == inbound.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    daemon.kill();

    // The invariants.
    let marks = fake.marks();
    let mut marks_per_id: BTreeMap<i64, Vec<&Mark>> = BTreeMap::new();
    for (id, m) in &marks {
        marks_per_id.entry(*id).or_default().push(m);
    }
    let sent = control.sent().await.unwrap_or_default();
    let mut sent_texts: BTreeMap<String, usize> = BTreeMap::new();
    for p in &sent {
        *sent_texts.entry(p["text"].as_str().unwrap_or("").to_string()).or_default() += 1;
    }
    let unmarked = outbound.keys().filter(|id| !marks_per_id.contains_key(id)).count();
    let marked_twice = marks_per_id.values().filter(|m| m.len() > 1).count();
    let successful = marks_per_id.values().filter(|m| m.iter().any(|k| matches!(k, Mark::Successful))).count();
    let failed = marks_per_id.values().filter(|m| m.iter().any(|k| matches!(k, Mark::Failed { .. }))).count();
    let false_success = outbound
        .iter()
        .filter(|(id, text)| {
            marks_per_id.get(id).is_some_and(|m| m.iter().any(|k| matches!(k, Mark::Successful)))
                && !sent_texts.contains_key(*text)
        })
        .count();
    let sent_twice = sent_texts.values().filter(|n| **n > 1).count();
    let forwarded_count = forwarded(&inbound);
    let stored = crate::store::Db::open_existing_read_only(&db_path)
        .and_then(|db| db.count_inbox_bodies_like("soak in %"))
        .unwrap_or(0);
    let deliveries = arrivals.lock().map(|l| l.len()).unwrap_or(0);

    println!("soak finished after {} s of settling", settle.elapsed().as_secs());
    println!("  {counts:?}");
    println!(
        "  outbound: {} Provet messages, {successful} marked successful, {failed} marked failed, {unmarked} unmarked, {marked_twice} marked twice",
        outbound.len()
    );
    println!(
        "  modem: {} parts sent, {sent_twice} texts sent more than once, {false_success} false successes",
        sent.len()
    );
    println!(
        "  inbound: {} injected, {stored} stored, {forwarded_count} forwarded ({deliveries} forward POSTs in all)",
        inbound.len()
    );
    let broken = unmarked + marked_twice + false_success + sent_twice + (inbound.len() - forwarded_count);
    if broken == 0 {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    sim.stop().await;
    anyhow::ensure!(broken == 0, "{broken} invariant violations (files kept in {})", tmp.display());
    println!("  every invariant held");
    Ok(())
}
