//! `smshub bench`: measurements of the whole daemon against the in-process simulator and fake
//! Provet. Nothing here is a test: numbers are printed, never asserted.
//!
//! Each run starts, in this process, a [`FakeProvet`], a simulated modem ([`super::modem_sim`])
//! and the daemon itself ([`crate::daemon::run`]) on a config written to a temporary directory
//! (under `--dir`, default the system temp dir: put it on the box's real disk, because the
//! webhook is acknowledged only after an fsync'd commit and tmpfs makes fsync free).
//!
//! - `bench outbound`:
//!   (a) *webhook → modem*: one message at a time on an idle modem: the time from just before
//!   the webhook POST is written (client side, unix ms) to the simulator's `at` for that
//!   message, the unix ms at which the simulator had read the whole PDU after `AT+CMGS=<n>` and
//!   the `> ` prompt. So it is "first byte of AT+CMGS" plus one prompt round trip and the PDU
//!   write (well under a millisecond on a pty); both clocks are this process's clock.
//!   (b) *webhook acknowledgement*: POSTs at a fixed rate (open loop: a request is started every
//!   1/rate s whatever the previous ones do) for `--seconds`, each timed from connect to the end
//!   of the answer. The ids do not exist in the fake Provet, so the fetch that follows answers
//!   404 and no SMS is sent: this isolates intake (store commit before the 200).
//! - `bench modem`: (a) AT command lines the simulator received per sent single-part message
//!   *including its status report* (its `stats.total` before and after; the window closes once
//!   every message's report is recorded in the database and the line has then been quiet for 2 s,
//!   so the report's `+CNMA` or `+CMGR`/`+CMGD` is inside; the driver's periodic health polls
//!   during the run count too), with how the reports came (acknowledged `+CDS`, or stored), (b)
//!   messages per minute with the simulator's send latency at `--latency-ms`, compared with the
//!   limit 60 000 / latency (one `+CMGS` at a time).
//! - `bench listeners`: (a) webhook latency (connect to end of answer, one at a time) while
//!   another local address has opened `--idle` connections and holds them; (b) this process's
//!   resident memory (the daemon and the bench client together) before, at its peak and after a
//!   header flood of `--flood` connections from 30 local addresses, each sending up to 400 KB of
//!   headers that never end.
//! - `bench events`: *event written → first byte of its POST*: one inbound SMS at a time; the
//!   event's `created_at` (unix ms, set inside the transaction that stores the message) to the
//!   instant the receiver read the first byte of the `sms.received` POST, both on this process's
//!   clock.
//! - `bench api`: *API send → modem*: one message at a time on an idle modem, the time from
//!   just before `POST /api/v1/messages` is written (client side, unix ms) to the simulator's
//!   `at` for that message (as in `bench outbound` (a)), and the 202 answer's latency (connect
//!   to end of answer).
//! - `bench idle`: the daemon as a child process at rest, with Provet polled every 60 s, two
//!   forwarders and one event webhook: its resident memory 30 s after start-up, then, once the
//!   daemon has given back its start-up memory (`memory`, 90 s in), its CPU time over
//!   `--seconds` (all threads, `/proc/<pid>/task/*/schedstat`), resident memory, AT lines a minute
//!   and bytes written.
//! - `bench storage`: bytes written (`/proc/self/io` write_bytes, this process: the daemon, the
//!   simulator and the queueing) and durable syncs (counted by the store, `store::syncs`) per
//!   sent and per received SMS.
//! - `bench pool`: *hang → hand-over*: two simulated modems share a batch; once the first has
//!   sent a message it stops answering (`hang_after: 0`, so its next `AT+CMGS` gets no prompt).
//!   The figure is the time from that fault (unix ms, just before the control command) to the
//!   second simulator's `at` for each message whose attempt on the first modem failed. It is
//!   the driver's prompt wait plus its one `AT` probe (then the pool's grace, which runs
//!   meanwhile) plus the remainder of the first modem's send in flight when the fault came.
//! - `bench inbound`: *+CMTI → forward POST*: one message at a time, the time from just before
//!   the simulator is told to deliver an SMS (it stores it and emits `+CMTI` at once) to the
//!   first byte of the forward POST read by a local PBX-style receiver (which closes each
//!   connection, so every POST starts a new one and its first read is the request's first byte).

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::fake_provet::{FakeOptions, FakeProvet};
use super::modem_sim::{self as sim, SimControl, SimOptions};
use super::peers::{post_json, post_webhook_to, start_receiver};
use crate::store::{Db, now_ms};

const WEBHOOK_TOKEN: &str = "bench-webhook-token-0123456789";

/// `smshub bench …`.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum BenchCommand {
    /// Webhook → AT+CMGS latency on an idle modem, and webhook acknowledgement latency under load.
    Outbound {
        /// Messages sent one at a time for the webhook → modem latency.
        #[arg(long, default_value_t = 1000)]
        messages: usize,
        /// Webhook requests per second for the acknowledgement latency.
        #[arg(long, default_value_t = 200)]
        rate: u32,
        /// How long to keep that rate, seconds.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Where the temporary database goes (use the real disk: fsync matters).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// POST /api/v1/messages → AT+CMGS latency on an idle modem, and the API's answer latency.
    Api {
        /// Messages sent one at a time.
        #[arg(long, default_value_t = 1000)]
        messages: usize,
        /// Where the temporary database goes (use the real disk: fsync matters).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// +CMTI on the simulator → first byte of the forward POST, one message at a time.
    Inbound {
        /// Messages measured.
        #[arg(long, default_value_t = 500)]
        messages: usize,
        /// Where the temporary database goes.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// The daemon at rest (a child process) with Provet polled every 60 s, two forwarders and
    /// one event webhook: CPU, memory, AT lines and disk writes over a quiet period.
    Idle {
        /// How long to measure, after a warm-up of 105 s (start-up, then the daemon's first give-back of
        /// start-up memory at 90 s).
        #[arg(long, default_value_t = 120)]
        seconds: u64,
        /// Where the temporary database goes.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Storage wear: bytes written and durable syncs per sent and per received SMS.
    Storage {
        /// Single-part messages queued as `smshub send` does, then sent through the simulator.
        #[arg(long, default_value_t = 100)]
        send: usize,
        /// Single-part messages received from the simulator and forwarded (one PBX-style forwarder).
        #[arg(long, default_value_t = 100)]
        receive: usize,
        /// Where the temporary database goes: the disk being measured (not tmpfs).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// A state change (an SMS stored in the inbox) → first byte of its event webhook POST.
    Events {
        /// Events measured, one at a time.
        #[arg(long, default_value_t = 300)]
        messages: usize,
        /// Where the temporary database goes (use the real disk: fsync matters).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// The public listener under abuse: webhook latency while another address holds 1000 idle
    /// connections, and this process's memory during a header flood from many addresses.
    Listeners {
        /// Idle connections opened from 127.0.0.2 (the daemon keeps at most its per-address cap).
        #[arg(long, default_value_t = 1000)]
        idle: usize,
        /// Webhook requests timed while they are held.
        #[arg(long, default_value_t = 200)]
        requests: usize,
        /// Connections of the header flood (spread over 30 local addresses).
        #[arg(long, default_value_t = 900)]
        flood: usize,
        /// Where the temporary database goes.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// The daemon (a child process) under random modem and Provet faults and SIGKILLs while work
    /// flows; checks the invariants at the end and prints the counts.
    Soak {
        /// How long to run before settling and checking.
        #[arg(long, default_value_t = 10)]
        minutes: u64,
        /// Seed of the random faults (printed; give it again to repeat a run's choices).
        #[arg(long)]
        seed: Option<u64>,
        /// Where the temporary database goes.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Two modems share a batch; one hangs mid-batch: time until its message is sent by the other.
    Pool {
        /// Messages queued in the batch.
        #[arg(long, default_value_t = 10)]
        messages: usize,
        /// Simulated network send latency of both modems, milliseconds.
        #[arg(long, default_value_t = 300)]
        latency_ms: u64,
        /// Where the temporary database goes.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// AT command lines per message, its status report included, and messages per minute against
    /// the send-latency limit.
    Modem {
        /// Messages queued for each measurement.
        #[arg(long, default_value_t = 20)]
        messages: usize,
        /// Simulated network send latency, milliseconds (0 is measured too).
        #[arg(long, default_value_t = 2000)]
        latency_ms: u64,
        /// Where the temporary database goes.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Imitate a phase 2 modem (AT+CSMS=1 refused): status reports stay stored on the modem
        /// and are read and deleted (the fallback, and the routing before direct reports).
        #[arg(long)]
        no_csms1: bool,
    },
}

/// A daemon, a simulator and a fake Provet running in this process.
struct Rig {
    tmp: PathBuf,
    db_path: PathBuf,
    addr: String,
    /// The admin listener (`/status`).
    admin: String,
    fake: FakeProvet,
    sim: SimControl,
    /// Stops the daemon (and with it the simulator it holds) when sent or dropped.
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn rig(dir: Option<&Path>, latency_ms: u64) -> anyhow::Result<Rig> {
    rig_with(dir, latency_ms, "").await
}

/// Like [`rig`], with `extra` appended to the daemon's config (e.g. a `[[forward]]`).
async fn rig_with(dir: Option<&Path>, latency_ms: u64, extra: &str) -> anyhow::Result<Rig> {
    rig_sim(dir, SimOptions { send_latency_ms: latency_ms, ..SimOptions::default() }, extra).await
}

/// Like [`rig_with`], with the simulator's options given whole.
async fn rig_sim(dir: Option<&Path>, sim_options: SimOptions, extra: &str) -> anyhow::Result<Rig> {
    let base = dir.map(Path::to_path_buf).unwrap_or_else(std::env::temp_dir);
    let tmp = base.join(format!("smshub-bench-{}-{}", std::process::id(), now_ms()));
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let fake = FakeProvet::start(FakeOptions::default()).await.context("starting the fake Provet")?;
    let sim = sim::start(sim_options).await.context("starting the simulator")?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let admin_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let db_path = tmp.join("bench.db");
    let text = format!(
        "clinic_code = \"bench\"\n[store]\npath = \"{}\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n[admin]\nlisten = \"127.0.0.1:{admin_port}\"\n[logging]\nlevel = \"warn\"\nformat = \"stderr\"\n\
         [[provet]]\nname = \"bench\"\nbase_url = \"{}\"\ntoken_url = \"{}\"\nclient_id = \"{}\"\nclient_secret = \"{}\"\n\
         webhook_token = \"{WEBHOOK_TOKEN}\"\npoll_interval_s = 0\nretry_initial_s = 1\nretry_max_s = 2\nallow_insecure_http = true\n\
         [[modem]]\nname = \"sim\"\ndevice = \"{}\"\n{extra}",
        db_path.display(),
        fake.base_url(),
        fake.token_url(),
        fake.options().client_id,
        fake.options().client_secret,
        sim.pty_path().display(),
    );
    let cfg_path = tmp.join("bench.toml");
    std::fs::write(&cfg_path, text)?;
    std::fs::set_permissions(&cfg_path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let config = crate::config::Config::load(&cfg_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let control = sim.control();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // The simulator lives as long as the daemon that uses it.
    tokio::spawn(async move {
        let stop = async move {
            let _ = stopped.await;
            "bench finished"
        };
        if let Err(e) = crate::daemon::run_until(config, stop).await {
            eprintln!("bench: daemon stopped: {e:#}");
        }
        sim.stop().await;
    });
    let addr = format!("127.0.0.1:{port}");
    let start = Instant::now();
    while tokio::net::TcpStream::connect(&addr).await.is_err() {
        anyhow::ensure!(start.elapsed() < Duration::from_secs(30), "the daemon did not start listening");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let admin = format!("127.0.0.1:{admin_port}");
    let rig = Rig { tmp, db_path, addr, admin, fake, sim: control, _stop: stop };
    rig.wait_modem_ready().await?;
    Ok(rig)
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

impl Rig {
    /// A new API token for the admin listener (`/status`), stored as `smshub token create` does.
    fn api_token(&self) -> anyhow::Result<String> {
        let token = crate::web::auth::secrets::new_token().map_err(|e| anyhow::anyhow!("{e}"))?;
        let db = Db::open(&self.db_path)?;
        db.add_token(&format!("bench-{}", now_ms()), &crate::web::auth::secrets::digest(&token))?;
        Ok(token)
    }

    async fn stats(&self) -> anyhow::Result<serde_json::Value> {
        Ok(self.sim.request(serde_json::json!({"cmd": "stats"})).await?)
    }

    async fn wait_modem_ready(&self) -> anyhow::Result<()> {
        wait_sim_ready(&self.sim).await
    }

    /// For each (text, unix ms started), the milliseconds until the simulator had its PDU.
    async fn modem_latencies(&self, starts: &[(String, i64)]) -> anyhow::Result<Vec<f64>> {
        let sent = self.sim.sent().await?;
        Ok(starts
            .iter()
            .filter_map(|(text, t0)| {
                let at = sent.iter().find(|p| p["text"].as_str() == Some(text.as_str()))?["at"].as_i64()?;
                Some((at - t0) as f64)
            })
            .collect())
    }

    /// Waits until `n` sent parts have a status report recorded.
    async fn wait_reported(&self, n: usize, limit: Duration) -> anyhow::Result<()> {
        let reader = Db::open_existing_read_only(&self.db_path)?;
        let start = Instant::now();
        loop {
            let done = reader.parts_with_status_report()?;
            if done >= n as i64 {
                return Ok(());
            }
            anyhow::ensure!(
                start.elapsed() < limit,
                "only {done} of {n} status reports were recorded within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the simulator received no command line for `quiet` (at most 30 s); its stats then.
    async fn wait_quiet(&self, quiet: Duration) -> anyhow::Result<serde_json::Value> {
        let start = Instant::now();
        let mut last = self.stats().await?;
        let mut since = Instant::now();
        while since.elapsed() < quiet && start.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = self.stats().await?;
            if now["total"] != last["total"] {
                since = Instant::now();
                last = now;
            }
        }
        Ok(last)
    }

    async fn sent_count(&self) -> anyhow::Result<u64> {
        Ok(self.stats().await?["sent"].as_u64().unwrap_or(0))
    }

    async fn wait_sent(&self, n: u64, limit: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        while self.sent_count().await? < n {
            anyhow::ensure!(start.elapsed() < limit, "the simulator got fewer than {n} messages within {limit:?}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    }
}

/// Waits until the driver has set up the simulator's new-message indications (`AT+CNMI`, the
/// last init step), then a moment for the daemon's own view to follow.
async fn wait_sim_ready(sim: &SimControl) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let s = sim.request(serde_json::json!({"cmd": "stats"})).await?;
        if s["commands"].as_object().is_some_and(|c| c.keys().any(|k| k.starts_with("AT+CNMI"))) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            return Ok(());
        }
        anyhow::ensure!(start.elapsed() < Duration::from_secs(30), "the modem did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// POSTs a webhook and returns the status code.
async fn post_webhook(addr: &str, id: i64) -> anyhow::Result<u16> {
    post_webhook_to(addr, "bench", WEBHOOK_TOKEN, id).await
}

/// A PBX-style `[[forward]]` to `url` with short retries (the bench's receiver answers 200).
fn pbx_forward(url: &str) -> String {
    format!(
        "[[forward]]\nkind = \"pbx\"\nurl = \"{url}\"\nservice_id = \"1\"\nsms_number = \"+61412345678\"\nretry_initial_s = 1\nretry_max_s = 2\n"
    )
}

/// (p50, p99, max) of `samples` (sorted here).
fn percentiles(samples: &mut [f64]) -> (f64, f64, f64) {
    samples.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| {
        let i = ((samples.len() as f64 * q).ceil() as usize).saturating_sub(1).min(samples.len().saturating_sub(1));
        samples.get(i).copied().unwrap_or(f64::NAN)
    };
    (at(0.50), at(0.99), samples.last().copied().unwrap_or(f64::NAN))
}

/// Runs one bench subcommand; prints its figures on stdout.
pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Outbound { messages, rate, seconds, dir } => {
            outbound(messages, rate, seconds, dir.as_deref()).await
        }
        BenchCommand::Modem { messages, latency_ms, dir, no_csms1 } => {
            modem(messages, latency_ms, dir.as_deref(), no_csms1).await
        }
        BenchCommand::Pool { messages, latency_ms, dir } => pool(messages, latency_ms, dir.as_deref()).await,
        BenchCommand::Inbound { messages, dir } => inbound(messages, dir.as_deref()).await,
        BenchCommand::Events { messages, dir } => events(messages, dir.as_deref()).await,
        BenchCommand::Storage { send, receive, dir } => storage(send, receive, dir.as_deref()).await,
        BenchCommand::Idle { seconds, dir } => idle(seconds, dir.as_deref()).await,
        BenchCommand::Api { messages, dir } => api(messages, dir.as_deref()).await,
        BenchCommand::Listeners { idle, requests, flood, dir } => {
            listeners(idle, requests, flood, dir.as_deref()).await
        }
        BenchCommand::Soak { minutes, seed, dir } => super::soak::soak(minutes, dir.as_deref(), seed).await,
    }
}

/// Raises this process's open-file limit to its hard limit: the bench holds both ends of
/// every connection.
fn raise_fd_limit() -> u64 {
    let mut lim = nix::libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if nix::libc::getrlimit(nix::libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            nix::libc::setrlimit(nix::libc::RLIMIT_NOFILE, &lim);
            nix::libc::getrlimit(nix::libc::RLIMIT_NOFILE, &mut lim);
        }
    }
    lim.rlim_cur
}

/// This process's resident memory, from /proc (kB).
fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmRSS:").and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

async fn connect_from(from: std::net::IpAddr, addr: &str) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(std::net::SocketAddr::new(from, 0))?;
    socket.connect(addr.parse().map_err(std::io::Error::other)?).await
}

async fn listeners(idle: usize, requests: usize, flood: usize, dir: Option<&Path>) -> anyhow::Result<()> {
    let fds = raise_fd_limit();
    let rig = rig(dir, 0).await?;
    let token = rig.api_token()?;
    println!("bench listeners: default limits (256 connections, 32 per address), open-file limit {fds}");
    // (a) another address holds `idle` connections open.
    let other: std::net::IpAddr = "127.0.0.2".parse()?;
    let mut held = Vec::with_capacity(idle);
    for _ in 0..idle {
        match connect_from(other, &rig.addr).await {
            Ok(s) => held.push(s),
            Err(e) => {
                println!("  stopped opening idle connections at {}: {e}", held.len());
                break;
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut lat = Vec::with_capacity(requests);
    let mut failed = 0;
    for i in 0..requests {
        let t0 = Instant::now();
        match post_webhook(&rig.addr, 1_000_000 + i as i64).await {
            Ok(200) => lat.push(t0.elapsed().as_secs_f64() * 1000.0),
            _ => failed += 1,
        }
    }
    let status = admin_status(&rig.admin, &token).await.unwrap_or_default();
    let (p50, p99, max) = percentiles(&mut lat);
    println!(
        "webhook while {} idle connections were opened from another address ({} refused by the per-address cap): \
         {} requests, p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms, {failed} failed",
        held.len(),
        status["listeners"]["public"]["refused_address_cap"],
        lat.len()
    );
    drop(held);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // (b) a header flood: each connection sends up to 400 KB of headers that never end.
    let before = rss_kb();
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(before));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kb(), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let mut senders = tokio::task::JoinSet::new();
    for i in 0..flood {
        let addr = rig.addr.clone();
        let from = std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 1, (10 + i % 30) as u8));
        senders.spawn(async move {
            let Ok(mut s) = connect_from(from, &addr).await else { return 0usize };
            let line = format!("X-Flood: {}\r\n", "a".repeat(1000));
            let mut sent = 0usize;
            if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.is_err() {
                return sent;
            }
            while sent < 400 * 1024 {
                match tokio::time::timeout(Duration::from_secs(2), s.write_all(line.as_bytes())).await {
                    Ok(Ok(())) => sent += line.len(),
                    _ => break,
                }
            }
            sent
        });
    }
    let mut total = 0usize;
    while let Some(r) = senders.join_next().await {
        total += r.unwrap_or(0);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    sampler.abort();
    let after = rss_kb();
    let status = admin_status(&rig.admin, &token).await.unwrap_or_default();
    println!(
        "header flood: {flood} connections from 30 addresses, {:.1} MB of headers written into the sockets (kernel buffers \
         included; the daemon reads at most max_header_bytes of each); \
         RSS of this process (daemon + bench client) {:.1} MB before, {:.1} MB peak, {:.1} MB after; \
         refused: {} by the total cap, {} by the per-address cap",
        total as f64 / 1e6,
        before as f64 / 1024.0,
        peak.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1024.0,
        after as f64 / 1024.0,
        status["listeners"]["public"]["refused_total_cap"],
        status["listeners"]["public"]["refused_address_cap"],
    );
    Ok(())
}

async fn admin_status(addr: &str, token: &str) -> anyhow::Result<serde_json::Value> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(
        format!("GET /status HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await?;
    let text = String::from_utf8_lossy(&resp);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok(serde_json::from_str(body)?)
}

/// `POST /api/v1/messages` with `text`; returns the status code.
async fn api_send(addr: &str, token: &str, text: &str) -> anyhow::Result<u16> {
    let body = serde_json::json!({"to": "+358401234567", "text": text}).to_string();
    post_json(addr, "/api/v1/messages", &format!("Authorization: Bearer {token}\r\n"), &body).await
}

async fn api(messages: usize, dir: Option<&Path>) -> anyhow::Result<()> {
    let rig = rig_with(dir, 0, "[api]\nper_hour = 100000\n").await?;
    let token = rig.api_token()?;
    println!("bench api: database {}", rig.db_path.display());
    let mut starts = Vec::with_capacity(messages);
    let mut answers = Vec::with_capacity(messages);
    let mut progress = Progress::new("API -> modem", messages);
    for i in 0..messages {
        let text = format!("bench api message {i}");
        let before = rig.sent_count().await?;
        let t0 = now_ms();
        let t = Instant::now();
        let status = api_send(&rig.admin, &token, &text).await?;
        answers.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(status == 202, "the API answered {status}");
        rig.wait_sent(before + 1, Duration::from_secs(30)).await?;
        starts.push((text, t0));
        tokio::time::sleep(Duration::from_millis(20)).await;
        progress.set(i + 1);
    }
    progress.finish();
    let mut lat = rig.modem_latencies(&starts).await?;
    let n = lat.len();
    let (p50, p99, max) = percentiles(&mut lat);
    println!("API send -> PDU at the modem (idle, {n} messages): p50 {p50:.0} ms, p99 {p99:.0} ms, max {max:.0} ms");
    let (p50, p99, max) = percentiles(&mut answers);
    println!("API 202 answer (connect to end of answer): p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms");
    Ok(())
}

async fn inbound(messages: usize, dir: Option<&Path>) -> anyhow::Result<()> {
    let (url, arrivals) = start_receiver().await?;
    let extra = pbx_forward(&url);
    let rig = rig_with(dir, 0, &extra).await?;
    let arrived = |body: &str| {
        arrivals.lock().ok().and_then(|l| l.iter().find(|a| a.field("body").as_deref() == Some(body)).map(|a| a.at))
    };
    let mut lat = Vec::with_capacity(messages);
    let mut progress = Progress::new("inbound", messages);
    for i in 0..=messages {
        // Message 0 warms up (first connection, first forwarder pass) and is not counted.
        let body = format!("bench {i}");
        let t0 = Instant::now();
        rig.sim.inject("+358409876543", &body).await?;
        let start = Instant::now();
        let at = loop {
            if let Some(t) = arrived(&body) {
                break t;
            }
            anyhow::ensure!(start.elapsed() < Duration::from_secs(30), "message {i} was not forwarded within 30 s");
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        if i > 0 {
            lat.push(at.duration_since(t0).as_secs_f64() * 1000.0);
        }
        progress.set(i);
    }
    progress.finish();
    let (p50, p99, max) = percentiles(&mut lat);
    println!(
        "+CMTI -> first byte of the forward POST ({} messages, one at a time): p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms",
        lat.len()
    );
    Ok(())
}

/// CPU time of every thread of process `pid` so far (`/proc/<pid>/task/*/schedstat`, ns).
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()))
        .sum()
}

/// A `kB` line of `/proc/<pid>/status` (e.g. `VmRSS`, `RssAnon`).
fn status_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix(key)
                    .and_then(|v| v.strip_prefix(':'))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

/// `write_bytes` of process `pid`.
fn pid_write_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("write_bytes:").and_then(|v| v.trim().parse().ok())))
        .unwrap_or(0)
}

async fn idle(seconds: u64, dir: Option<&Path>) -> anyhow::Result<()> {
    let base = dir.map(Path::to_path_buf).unwrap_or_else(std::env::temp_dir);
    let tmp = base.join(format!("smshub-idle-{}-{}", std::process::id(), now_ms()));
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let _cleanup = RemoveOnDrop(tmp.clone());
    let fake = FakeProvet::start(FakeOptions::default()).await.context("starting the fake Provet")?;
    let link = tmp.join("modem");
    let sim = sim::start(SimOptions { link: Some(link.clone()), ..SimOptions::default() })
        .await
        .context("starting the simulator")?;
    let control = sim.control();
    let (forward_a, _) = start_receiver().await?;
    let (forward_b, _) = start_receiver().await?;
    let (events_url, _) = start_receiver().await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let text = format!(
        "clinic_code = \"bench\"\n[store]\npath = \"{}\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [logging]\nlevel = \"warn\"\nformat = \"stderr\"\n\
         [[provet]]\nname = \"bench\"\nbase_url = \"{}\"\ntoken_url = \"{}\"\nclient_id = \"{}\"\nclient_secret = \"{}\"\n\
         webhook_token = \"{WEBHOOK_TOKEN}\"\npoll_interval_s = 60\nallow_insecure_http = true\n\
         [[modem]]\nname = \"sim\"\ndevice = \"{}\"\n\
         [[forward]]\nkind = \"pbx\"\nname = \"a\"\nurl = \"{forward_a}\"\nservice_id = \"1\"\nsms_number = \"+61412345678\"\n\
         [[forward]]\nkind = \"pbx\"\nname = \"b\"\nurl = \"{forward_b}\"\nservice_id = \"2\"\nsms_number = \"+61412345678\"\n\
         [[event_webhook]]\nname = \"events\"\nurl = \"{events_url}\"\nsecret = \"bench-event-secret-0123456789\"\n",
        tmp.join("idle.db").display(),
        fake.base_url(),
        fake.token_url(),
        fake.options().client_id,
        fake.options().client_secret,
        link.display(),
    );
    let cfg = tmp.join("idle.toml");
    std::fs::write(&cfg, text)?;
    std::fs::set_permissions(&cfg, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let mut daemon = super::peers::DaemonProcess::new(cfg, tmp.join("daemon.log"), format!("127.0.0.1:{port}"));
    daemon.start()?;
    let pid = daemon.pid().context("the daemon did not start")?;
    // Warm-up: start-up, the first pass of every loop, then the daemon's first give-back of
    // start-up memory (crate::memory) and a few seconds more, so the window below is the daemon at rest.
    let warm_up = crate::memory::FIRST_AFTER + Duration::from_secs(15);
    println!(
        "bench idle: daemon pid {pid} with Provet (poll 60 s), two forwarders, one event webhook; {} s warm-up, then {seconds} s",
        warm_up.as_secs()
    );
    tokio::time::sleep(Duration::from_secs(30)).await;
    println!("after start-up (30 s): RSS {} kB (anonymous {} kB)", status_kb(pid, "VmRSS"), status_kb(pid, "RssAnon"));
    tokio::time::sleep(warm_up.saturating_sub(Duration::from_secs(30))).await;
    anyhow::ensure!(daemon.exited().is_none(), "the daemon stopped; see {}", tmp.join("daemon.log").display());
    let at_lines = |s: &serde_json::Value| s["total"].as_u64().unwrap_or(0);
    let (cpu0, wb0, at0, t0) = (
        cpu_ns(pid),
        pid_write_bytes(pid),
        at_lines(&control.request(serde_json::json!({"cmd": "stats"})).await?),
        Instant::now(),
    );
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (cpu1, wb1, at1) =
        (cpu_ns(pid), pid_write_bytes(pid), at_lines(&control.request(serde_json::json!({"cmd": "stats"})).await?));
    let wall = t0.elapsed().as_secs_f64();
    let cpu_s = cpu1.saturating_sub(cpu0) as f64 / 1e9;
    println!(
        "idle over {wall:.0} s: CPU {:.3} % ({:.1} ms), RSS {} kB (anonymous {} kB), {} AT lines/min, {} bytes written",
        cpu_s / wall * 100.0,
        cpu_s * 1000.0,
        status_kb(pid, "VmRSS"),
        status_kb(pid, "RssAnon"),
        (at1.saturating_sub(at0) as f64 / wall * 60.0).round(),
        wb1.saturating_sub(wb0)
    );
    daemon.kill();
    sim.stop().await;
    Ok(())
}

/// Removes a directory when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Bytes this process caused to be written to storage (`/proc/self/io` write_bytes: page-cache
/// pages dirtied, so 4 KiB granularity, whatever the write sizes).
fn write_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("write_bytes:").and_then(|v| v.trim().parse().ok())))
        .unwrap_or(0)
}

/// (bytes written, durable syncs) so far.
fn wear() -> (u64, u64) {
    (write_bytes(), crate::store::syncs())
}

fn print_wear(label: &str, before: (u64, u64), after: (u64, u64), n: usize, secs: f64) {
    let (bytes, syncs) = (after.0.saturating_sub(before.0), after.1.saturating_sub(before.1));
    let n = n.max(1) as f64;
    println!(
        "{label}: {:.1} KB and {:.2} syncs per message ({bytes} bytes, {syncs} syncs for {n} messages in {secs:.1} s)",
        bytes as f64 / n / 1000.0,
        syncs as f64 / n
    );
}

async fn storage(send: usize, receive: usize, dir: Option<&Path>) -> anyhow::Result<()> {
    let (url, arrivals) = start_receiver().await?;
    let extra = pbx_forward(&url);
    let rig = rig_with(dir, 0, &extra).await?;
    println!(
        "bench storage: database {} (write_bytes from /proc/self/io; this process runs the daemon, the simulator and the queueing)",
        rig.db_path.display()
    );
    let reader = Db::open_existing_read_only(&rig.db_path)?;
    // The daemon at rest, as a reference for the figures below.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_before = wear();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let idle = wear();
    println!(
        "idle: {} bytes and {} syncs in 30 s",
        idle.0.saturating_sub(idle_before.0),
        idle.1.saturating_sub(idle_before.1)
    );

    // Sent: queued as `smshub send` does (through the daemon's socket: the daemon commits and
    // syncs, then answers), sent through the simulator (which answers each status report request
    // with "delivered"), then a checkpoint so the copy of the WAL into the database file is
    // counted too.
    let before = wear();
    let started = Instant::now();
    let socket = rig.db_path.with_file_name("smshub.sock");
    let to = crate::phone::PhoneNumber::parse("+358401234567", None)?;
    for i in 0..send {
        let (socket, to) = (socket.clone(), to.clone());
        let text = format!("storage bench {i}");
        let outcome = tokio::task::spawn_blocking(move || crate::local_socket::send(&socket, &to, &text)).await?;
        anyhow::ensure!(
            matches!(outcome, crate::local_socket::ClientOutcome::Queued(_)),
            "the daemon did not queue message {i}: {outcome:?}"
        );
    }
    // Every message is single-part: one status report each (recorded after its `sent`).
    rig.wait_reported(send, Duration::from_secs(600)).await?;
    let secs = started.elapsed().as_secs_f64();
    Db::open(&rig.db_path)?.checkpoint()?;
    print_wear("sent (queue, send, status report)", before, wear(), send, secs);

    // Received: injected one after another, stored, deleted from the SIM and forwarded.
    let before = wear();
    let started = Instant::now();
    let mut progress = Progress::new("storage: received", receive);
    for i in 0..receive {
        rig.sim.inject("+358409876543", &format!("storage bench in {i}")).await?;
        while arrivals.lock().map(|l| l.len()).unwrap_or(0) <= i {
            anyhow::ensure!(started.elapsed() < Duration::from_secs(600), "message {i} was not forwarded");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        progress.set(i + 1);
    }
    // The delivery's record is committed just after the receiver's answer.
    while reader.deliveries_in_state("delivered")? < receive as i64 {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(600), "deliveries were not recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    progress.finish();
    let secs = started.elapsed().as_secs_f64();
    Db::open(&rig.db_path)?.checkpoint()?;
    print_wear("received (store, delete on the SIM, forward)", before, wear(), receive, secs);
    Ok(())
}

async fn events(messages: usize, dir: Option<&Path>) -> anyhow::Result<()> {
    let (url, arrivals) = start_receiver().await?;
    let extra = format!(
        "[[event_webhook]]\nname = \"bench\"\nurl = \"{url}\"\nsecret = \"bench-event-secret-0123456789\"\ntypes = [\"sms.received\"]\n"
    );
    let rig = rig_with(dir, 0, &extra).await?;
    // Instants of the receiver, turned into unix ms (the events' created_at) through one pair.
    let (ref_instant, ref_ms) = (Instant::now(), now_ms());
    let unix_ms = |at: Instant| -> f64 {
        ref_ms as f64 + at.checked_duration_since(ref_instant).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let arrived = |body: &str| {
        arrivals.lock().ok().and_then(|l| {
            l.iter().find_map(|a| {
                let v: serde_json::Value = serde_json::from_slice(&a.body).ok()?;
                (v["data"]["body"] == body).then(|| (a.header("X-Smshub-Delivery"), a.at))
            })
        })
    };
    let mut samples = Vec::with_capacity(messages);
    let mut progress = Progress::new("events", messages);
    for i in 0..=messages {
        // Message 0 warms up (first connection) and is not counted.
        let body = format!("bench event {i}");
        rig.sim.inject("+358409876543", &body).await?;
        let start = Instant::now();
        let (uid, at) = loop {
            if let Some(found) = arrived(&body) {
                break found;
            }
            anyhow::ensure!(start.elapsed() < Duration::from_secs(30), "event {i} did not arrive within 30 s");
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        if i > 0 {
            samples.push((uid.unwrap_or_default(), unix_ms(at)));
        }
        progress.set(i);
    }
    progress.finish();
    let db = Db::open_existing_read_only(&rig.db_path)?;
    let mut lat = Vec::with_capacity(samples.len());
    for (uid, at) in samples {
        if let Some(id) = db.find_event(&uid)?
            && let Some(e) = db.event_detail(id)?
        {
            lat.push(at - e.summary.created_at as f64);
        }
    }
    let (p50, p99, max) = percentiles(&mut lat);
    println!(
        "event written (in the inbox commit) -> first byte of its webhook POST ({} events, one at a time): \
         p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms",
        lat.len()
    );
    Ok(())
}

async fn outbound(messages: usize, rate: u32, seconds: u64, dir: Option<&Path>) -> anyhow::Result<()> {
    let rig = rig(dir, 0).await?;
    println!("bench outbound: database {}", rig.db_path.display());
    // (a) webhook -> AT+CMGS on an idle modem.
    let mut starts = Vec::with_capacity(messages);
    let mut progress = Progress::new("webhook -> modem", messages);
    for i in 0..messages {
        let id = rig.fake.add_sms("+358401234567", &format!("bench message {i}"));
        let before = rig.sent_count().await?;
        let t0 = now_ms();
        let status = post_webhook(&rig.addr, id).await?;
        anyhow::ensure!(status == 200, "webhook answered {status}");
        rig.wait_sent(before + 1, Duration::from_secs(30)).await?;
        starts.push((format!("bench message {i}"), t0));
        // Let the daemon finish (mark in Provet) so the next message meets an idle pipeline.
        tokio::time::sleep(Duration::from_millis(20)).await;
        progress.set(i + 1);
    }
    progress.finish();
    let mut lat = rig.modem_latencies(&starts).await?;
    let n = lat.len();
    let (p50, p99, max) = percentiles(&mut lat);
    println!("webhook -> PDU at the modem (idle, {n} messages): p50 {p50:.0} ms, p99 {p99:.0} ms, max {max:.0} ms");

    // (b) webhook acknowledgement at a fixed rate.
    let total = (u64::from(rate) * seconds) as usize;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let addr = Arc::new(rig.addr.clone());
    let mut tasks = tokio::task::JoinSet::new();
    let began = Instant::now();
    for i in 0..total {
        ticker.tick().await;
        let addr = addr.clone();
        tasks.spawn(async move {
            let t = Instant::now();
            let status = post_webhook(&addr, 1_000_000 + i as i64).await;
            (status.ok(), t.elapsed().as_secs_f64() * 1000.0)
        });
    }
    let offered = began.elapsed();
    let mut ack = Vec::with_capacity(total);
    let mut errors = 0usize;
    while let Some(res) = tasks.join_next().await {
        match res {
            Ok((Some(200), ms)) => ack.push(ms),
            _ => errors += 1,
        }
    }
    let ok = ack.len();
    let (p50, p99, max) = percentiles(&mut ack);
    println!(
        "webhook ack at {rate}/s for {seconds} s ({total} requests offered in {:.1} s; {ok} answered 200, {errors} failed): p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms",
        offered.as_secs_f64()
    );
    Ok(())
}

async fn modem(messages: usize, latency_ms: u64, dir: Option<&Path>, no_csms1: bool) -> anyhow::Result<()> {
    for latency in [0, latency_ms] {
        let sim_options = SimOptions { send_latency_ms: latency, no_csms1, ..SimOptions::default() };
        let rig = rig_sim(dir, sim_options, "").await?;
        let db = Db::open(&rig.db_path)?;
        let to = crate::phone::PhoneNumber::parse("+358401234567", None)?;
        let before = rig.stats().await?;
        for i in 0..messages {
            db.insert_local("bench", &to, &format!("bench {i}"))?;
        }
        let limit = Duration::from_millis(latency * messages as u64 * 2 + 60_000);
        rig.wait_sent(messages as u64, limit).await?;
        rig.wait_reported(messages, limit).await?;
        let after = rig.wait_quiet(Duration::from_secs(2)).await?;
        let commands = after["total"].as_u64().unwrap_or(0).saturating_sub(before["total"].as_u64().unwrap_or(0));
        let counted = |v: &serde_json::Value, k: &str| v["commands"][k].as_u64().unwrap_or(0);
        let acked = counted(&after, "(report acknowledged)").saturating_sub(counted(&before, "(report acknowledged)"));
        let read = counted(&after, "AT+CMGR=").saturating_sub(counted(&before, "AT+CMGR="));
        let sent = rig.sim.sent().await?;
        let ats: Vec<i64> = sent.iter().filter_map(|p| p["at"].as_i64()).collect();
        let span_ms = ats.iter().max().zip(ats.iter().min()).map(|(a, b)| a - b).unwrap_or(0);
        // n messages have n-1 gaps between the first and the last PDU.
        let per_min = if span_ms > 0 { (ats.len() as f64 - 1.0) * 60_000.0 / span_ms as f64 } else { f64::NAN };
        let commands_per_msg = commands as f64 / messages as f64;
        let reports = format!("reports: {acked} as +CDS acknowledged, {read} read from storage");
        if latency == 0 {
            println!(
                "latency 0 ms: {messages} messages, {commands_per_msg:.2} AT lines per message with its report ({reports}), {per_min:.0} messages/min"
            );
        } else {
            let cap = 60_000.0 / latency as f64;
            println!(
                "latency {latency} ms: {messages} messages, {commands_per_msg:.2} AT lines per message with its report ({reports}), {per_min:.2} messages/min = {:.1} % of the {cap:.1}/min limit",
                per_min / cap * 100.0
            );
        }
    }
    Ok(())
}

async fn pool(messages: usize, latency_ms: u64, dir: Option<&Path>) -> anyhow::Result<()> {
    let second = sim::start(SimOptions { send_latency_ms: latency_ms, ..SimOptions::default() })
        .await
        .context("starting the second simulator")?;
    let other = second.control();
    let extra = format!("\n[[modem]]\nname = \"sim2\"\ndevice = \"{}\"\n", second.pty_path().display());
    let result = async {
        let rig = rig_with(dir, latency_ms, &extra).await?;
        wait_sim_ready(&other).await?;
        let db = Db::open(&rig.db_path)?;
        let mut ids = Vec::new();
        for i in 0..messages.max(2) {
            let to = crate::phone::PhoneNumber::parse(&format!("+35840555{:04}", i % 10_000), None)?;
            ids.push(db.insert_local("bench", &to, &format!("pool bench {i}"))?);
        }
        let start = Instant::now();
        while rig.sim.sent().await?.is_empty() {
            anyhow::ensure!(start.elapsed() < Duration::from_secs(60), "the first modem sent nothing");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let fault_at = now_ms();
        rig.sim.set(serde_json::json!({"hang_after": 0})).await?;
        let limit = Duration::from_secs(120);
        let start = Instant::now();
        let rows = loop {
            let rows: Vec<_> = ids.iter().filter_map(|id| db.get_outbox(*id).ok().flatten()).collect();
            let done = rows.iter().all(|r| {
                matches!(r.summary.state, crate::store::OutboxState::Sent | crate::store::OutboxState::Failed)
            });
            if done {
                break rows;
            }
            anyhow::ensure!(start.elapsed() < limit, "the batch did not finish within {limit:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let on_second = other.sent().await?;
        let moved: Vec<i64> = rows
            .iter()
            .filter(|r| r.summary.state == crate::store::OutboxState::Sent && r.summary.last_error.is_some())
            .filter_map(|r| on_second.iter().find(|p| p["text"].as_str() == r.body.as_deref())?["at"].as_i64())
            .map(|at| at - fault_at)
            .collect();
        let failed = rows.iter().filter(|r| r.summary.state == crate::store::OutboxState::Failed).count();
        println!(
            "pool of 2, latency {latency_ms} ms: {} messages, {} sent by the second modem, {failed} failed (outcome unknown)",
            rows.len(),
            on_second.len()
        );
        match moved.iter().max() {
            Some(ms) => println!(
                "hang → the hung modem's message sent by the other: {:.2} s ({} message(s) moved)",
                *ms as f64 / 1000.0,
                moved.len()
            ),
            None => println!("no message moved (the hang came while the first modem's PDU was in flight)"),
        }
        anyhow::Ok(())
    }
    .await;
    second.stop().await;
    result
}

/// Progress of a long run on stderr: a bar for a person at a terminal, and a plain line at
/// every tenth otherwise, so a log file or a CI log stays readable.
struct Progress {
    label: &'static str,
    total: usize,
    bar: Option<indicatif::ProgressBar>,
    next_tenth: usize,
}

impl Progress {
    fn new(label: &'static str, total: usize) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total as u64);
            if let Ok(style) = indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {elapsed}") {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(label);
            bar
        });
        Progress { label, total, bar, next_tenth: 1 }
    }

    fn set(&mut self, done: usize) {
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
            return;
        }
        while self.total > 0 && self.next_tenth <= 10 && done * 10 >= self.next_tenth * self.total {
            eprintln!("{}: {done} / {} ({} %)", self.label, self.total, self.next_tenth * 10);
            self.next_tenth += 1;
        }
    }

    fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentiles(&mut v), (50.0, 99.0, 100.0));
        let mut one = vec![7.0];
        assert_eq!(percentiles(&mut one), (7.0, 7.0, 7.0));
        let (p50, _, _) = percentiles(&mut []);
        assert!(p50.is_nan());
    }
}
