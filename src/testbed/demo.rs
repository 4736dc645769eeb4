//! `smshub demo`: the whole job with no hardware, so a newcomer sees messages flow.
//!
//! Everything runs in this one process, on 127.0.0.1 and a pseudo-terminal: the modem
//! simulator (the same one the tests use), a fake Provet Cloud (token endpoint, external SMS
//! API, call log), a small "clinic app" that receives Twilio-style webhooks and answers with
//! TwiML, and the real daemon with a generated config. The demo then tells the story:
//!
//! 1. Provet queues an SMS and calls the webhook → smshub fetches it, the modem sends it,
//!    smshub marks it successful in Provet.
//! 2. Provet queues a long Unicode SMS without a webhook → the poller finds it; it goes out in
//!    parts.
//! 3. A client texts back → smshub stores it, forwards it (signed) to the clinic app, whose TwiML
//!    reply goes out as an SMS.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::clinic_app::{self, ClinicApp};
use super::fake_provet::{FakeOptions, FakeProvet, Mark};
use super::modem_sim::{self as sim, SimOptions};
use crate::config::Config;
use crate::phone::mask_number;

/// Options of `smshub demo`.
#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Keep the demo's folder (config, database) afterwards, and print its path.
    #[arg(long)]
    pub keep: bool,
    /// Simulated time the modem takes per SMS part, in ms.
    #[arg(long, default_value_t = 400)]
    pub send_latency_ms: u64,
}

const WEBHOOK_TOKEN: &str = "demo-webhook-token-0123456789";
const TWILIO_TOKEN: &str = "demo-twilio-auth-token";
const CLIENT: &str = "+358401234567";
const CLIENT2: &str = "+358409876543";

/// Runs the demo; returns an error if a step did not happen within its time limit.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("smshub-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let result = story(&dir, &args).await;
    if args.keep {
        println!("\nThe demo's config and database are kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

async fn story(dir: &std::path::Path, args: &DemoArgs) -> anyhow::Result<()> {
    let link = dir.join("modem");
    let sim = sim::start(SimOptions {
        link: Some(link.clone()),
        send_latency_ms: args.send_latency_ms,
        ..SimOptions::default()
    })
    .await
    .context("starting the modem simulator")?;
    let provet = FakeProvet::start(FakeOptions::default()).await.context("starting the fake Provet")?;
    let app = Arc::new(ClinicApp::default());
    let app_addr = clinic_app::start(app.clone(), TWILIO_TOKEN).await?;
    let port = free_port()?;
    let admin_port = free_port()?;

    let config_path = dir.join("smshub.toml");
    let opts = provet.options().clone();
    let text = format!(
        r#"clinic_code = "demo-clinic"

[store]
path = "{db}"

[http]
listen = "127.0.0.1:{port}"

[admin]
listen = "127.0.0.1:{admin_port}"

[logging]
level = "warn"
format = "stderr"

[[modem]]
name = "sim"
device = "{link}"

[[provet]]
name = "demo"
base_url = "{base}"
token_url = "{token}"
client_id = "{client_id}"
client_secret = "{client_secret}"
webhook_token = "{WEBHOOK_TOKEN}"
poll_interval_s = 2
reminder_poll_s = 2
retry_initial_s = 1
retry_max_s = 5
allow_insecure_http = true

[[forward]]
kind = "twilio"
name = "clinic-app"
url = "http://{app_addr}/sms"
account_sid = "AC0123456789abcdef0123456789abcdef"
auth_token = "{TWILIO_TOKEN}"
to_number = "+358451112223"
retry_initial_s = 1
retry_max_s = 5
"#,
        db = dir.join("smshub.db").display(),
        link = link.display(),
        base = provet.base_url(),
        token = provet.token_url(),
        client_id = opts.client_id,
        client_secret = opts.client_secret,
    );
    write_private(&config_path, &text)?;
    let config = Config::load(&config_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    crate::logging::init(config.logging.format, &config.logging.level);

    println!(
        "smshub demo: simulator on {}, fake Provet at {}, clinic app at http://{app_addr}/sms",
        sim.pty_path().display(),
        provet.base_url()
    );
    println!("config: {}", config_path.display());
    println!("public listener (Provet webhook, reminders button, /healthz): http://127.0.0.1:{port}");
    // A person and a program for the admin listener, so the UI, the API and /metrics can be tried.
    let (password, token) = demo_accounts(&config.store.path)?;
    println!("web UI (admin listener): http://127.0.0.1:{admin_port}/  — sign in as demo / {password}");
    println!(
        "API and metrics (same listener): curl -H 'Authorization: Bearer {token}' http://127.0.0.1:{admin_port}/metrics\n  \
         (POST /api/v1/messages; the API is described at http://127.0.0.1:{admin_port}/api/v1/openapi.json)\n"
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(crate::daemon::run_until(config, async move {
        let _ = stop_rx.await;
        "demo finished"
    }));
    wait_port(port).await?;
    let control = sim.control();
    let mut shown = 0usize;

    println!("1. Provet queues an SMS for {} and calls smshub's webhook", mask_number(CLIENT));
    let first = provet.add_sms(CLIENT, "Hi! Rex's vaccination is due next week. Reply CONFIRM to book a time.");
    let status = post(
        port,
        &format!("/provet/demo/webhook/{WEBHOOK_TOKEN}"),
        "application/json",
        &format!(r#"{{"external_sms_id": {first}}}"#),
    )
    .await?;
    println!("   webhook answered HTTP {status}");
    wait_mark(&provet, first, &control, &mut shown).await?;

    println!("\n2. Provet queues a long Unicode SMS without a webhook; the poller finds it");
    let second = provet
        .add_sms(CLIENT2, &"Hyvää päivää! Mirrin laboratoriotulokset ovat valmiit 🐈 Soitattehan meille. ".repeat(2));
    wait_mark(&provet, second, &control, &mut shown).await?;

    println!("\n3. The client answers by SMS; smshub forwards it to the clinic app as a signed Twilio webhook");
    control.inject(CLIENT, "CONFIRM").await.context("injecting the reply")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(fields) = app.received.lock().ok().and_then(|r| r.first().cloned()) {
            let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
            println!(
                "   clinic app got POST /sms: From={} Body={:?} MessageSid={} (signature valid)",
                mask_number(&get("From")),
                get("Body"),
                get("MessageSid")
            );
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the clinic app got no webhook within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    println!("   the clinic app answered with TwiML <Message>; smshub queues it as an SMS to the client");
    while parts_of(&control).await <= shown {
        anyhow::ensure!(Instant::now() < deadline, "the TwiML reply was not sent within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    print_new_sends(&control, &mut shown).await;

    println!("\n4. A patient reminder falls due in Provet (send method External, text from a template, no number on");
    println!("   the reminder itself); smshub's reminder poll finds it, fills the template and picks the client's");
    println!("   preferred number");
    let clinic = provet.add_department("Demo Vet");
    let owner = provet.add_client("Anna", "Virtanen", false, &[("+358401110000", false), (CLIENT2, true)]);
    let pet = provet.add_patient("Mirri");
    let template =
        provet.add_template("Hi [[client_name]], [[patient_name]] is due for a check-up. Welcome! [[clinic_name]]");
    provet.add_reminder_with(serde_json::json!({"reminder_template": template, "text_manually": false,
        "client": owner, "patient": pet, "department": clinic, "phone_number": ""}));
    let deadline = Instant::now() + Duration::from_secs(30);
    while parts_of(&control).await <= shown {
        anyhow::ensure!(Instant::now() < deadline, "the due reminder was not sent within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    print_new_sends(&control, &mut shown).await;

    println!("\nDone: every message went through the simulated modem, and Provet was marked once per message:");
    for (id, mark) in provet.marks() {
        println!("   external_sms {id}: {mark:?}");
    }
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        // On a terminal the daemon stays up to be looked at; scripts and tests get their exit.
        println!(
            "\nsmshub keeps running: the web UI is at http://127.0.0.1:{admin_port}/ (demo / {password}). Press Ctrl-C to stop."
        );
        let _ = tokio::signal::ctrl_c().await;
    }
    let _ = stop_tx.send(());
    daemon.await.context("daemon task")??;
    sim.stop().await;
    provet.stop().await;
    Ok(())
}

/// Adds the user `demo` with a random password and a token named `demo` to the demo's database;
/// returns (password, token).
fn demo_accounts(db_path: &std::path::Path) -> anyhow::Result<(String, String)> {
    use crate::web::auth::{password, secrets};
    let pw = secrets::short_secret().map_err(|e| anyhow::anyhow!("{e}"))?;
    let token = secrets::new_token().map_err(|e| anyhow::anyhow!("{e}"))?;
    let db = crate::store::Db::open(db_path)?;
    db.add_user("demo", &password::hash(&pw).map_err(|e| anyhow::anyhow!("{e}"))?)?;
    db.add_token("demo", &secrets::digest(&token))?;
    Ok((pw, token))
}

async fn parts_of(control: &sim::SimControl) -> usize {
    control.sent().await.map(|s| s.len()).unwrap_or(0)
}

/// Prints what the simulator was asked to send since the last call.
async fn print_new_sends(control: &sim::SimControl, shown: &mut usize) {
    let Ok(sent) = control.sent().await else { return };
    for s in sent.iter().skip(*shown) {
        let to = s["to"].as_str().unwrap_or("?");
        let part = match (s["concat"]["seq"].as_u64(), s["concat"]["total"].as_u64()) {
            (Some(k), Some(n)) => format!("part {k}/{n}"),
            _ => "1 part".to_string(),
        };
        println!(
            "   modem: AT+CMGS to {} ({part}, {}): {:?}",
            mask_number(to),
            s["encoding"].as_str().unwrap_or("?"),
            s["text"].as_str().unwrap_or("")
        );
    }
    *shown = sent.len();
}

async fn wait_mark(provet: &FakeProvet, id: i64, control: &sim::SimControl, shown: &mut usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        print_new_sends(control, shown).await;
        if let Some((_, mark)) = provet.marks().into_iter().find(|(i, _)| *i == id) {
            match mark {
                Mark::Successful => println!("   Provet: external_sms {id} marked successful"),
                other => println!("   Provet: external_sms {id} marked {other:?}"),
            }
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "external_sms {id} was not marked within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    std::io::Write::write_all(&mut f, text.as_bytes())?;
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

async fn wait_port(port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        anyhow::ensure!(Instant::now() < deadline, "smshub did not start listening within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// A minimal HTTP/1.1 POST to smshub; returns the status code.
async fn post(port: u16, path: &str, content_type: &str, body: &str) -> anyhow::Result<u16> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).await?;
    resp.split(' ').nth(1).and_then(|c| c.parse().ok()).context("no HTTP status in the answer")
}
