//! The daemon's Unix socket (`[admin] socket`, by default `smshub.sock` beside the database):
//! how `smshub send` on the same box hands a message to the running daemon, so its senders
//! wake at once instead of finding the row on their next look at the store.
//!
//! Why a socket and not the admin API: the CLI needs no token, the file mode (0660, group
//! smshub) says who may use it, and it works whatever the admin listener's address and TLS are.
//!
//! The protocol is one JSON line each way: `{"cmd": "send", "to": "+358…", "text": "…"}` →
//! `{"ok": true, "id": N}` or `{"ok": false, "error": "…"}`; `{"cmd": "wake"}` → `{"ok": true}`
//! (the CLI changed the outbox or replayed an event: the senders, the Provet reporters and the
//! event webhooks look at the store now). One request per connection, at most
//! [`MAX_REQUEST`] bytes, [`DEADLINE`] for the whole exchange.
//!
//! When the daemon is down (no socket, or nobody listening) the CLI writes the database itself
//! and the daemon sends the message when it starts. Once a request was written the CLI never
//! falls back: the daemon may have queued it, and a second row would send it twice.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use crate::outbound::Wake;
use crate::phone::PhoneNumber;
use crate::shutdown::ShutdownSignal;
use crate::store::{OutboxId, Store};

/// The largest request line.
pub const MAX_REQUEST: usize = 64 * 1024;

/// The deadline of one exchange, on both sides.
pub const DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
enum Request {
    Send {
        to: String,
        text: String,
    },
    /// Look at the outbox now (the CLI changed it: `outbox retry`).
    Wake {},
}

/// Binds the socket: a stale socket file from a previous run is removed first (never another
/// kind of file, nor the socket of a daemon that still answers), and the socket gets mode 0660.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket; not touching it", path.display()),
            ));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("another smshub is listening on {}; is the service already running?", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}

/// Serves the socket until shutdown, then removes it.
pub async fn serve(
    listener: UnixListener,
    path: PathBuf,
    store: Store,
    wake: Wake,
    default_country: Option<String>,
    mut shutdown: ShutdownSignal,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait() => break,
        };
        match accepted {
            Ok((stream, _)) => {
                let (store, wake, country) = (store.clone(), wake.clone(), default_country.clone());
                tokio::spawn(async move {
                    if tokio::time::timeout(DEADLINE, exchange(stream, &store, &wake, country.as_deref()))
                        .await
                        .is_err()
                    {
                        tracing::debug!("local socket: a client was too slow; closed");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "local socket: accept failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let _ = std::fs::remove_file(&path);
}

async fn exchange(stream: UnixStream, store: &Store, wake: &Wake, default_country: Option<&str>) {
    let (read, mut write) = stream.into_split();
    let mut line = Vec::new();
    let mut reader = tokio::io::BufReader::new(read).take(MAX_REQUEST as u64 + 1);
    let answer = match reader.read_until(b'\n', &mut line).await {
        Ok(_) if line.len() > MAX_REQUEST => serde_json::json!({"ok": false, "error": "request too large"}),
        Ok(_) => handle(&line, store, wake, default_country).await,
        Err(e) => serde_json::json!({"ok": false, "error": format!("cannot read the request: {e}")}),
    };
    let _ = write.write_all(format!("{answer}\n").as_bytes()).await;
    let _ = write.shutdown().await;
}

async fn handle(line: &[u8], store: &Store, wake: &Wake, default_country: Option<&str>) -> serde_json::Value {
    let fail = |e: String| serde_json::json!({"ok": false, "error": e});
    let (to, text) = match serde_json::from_slice(line) {
        Ok(Request::Send { to, text }) => (to, text),
        Ok(Request::Wake {}) => {
            Wake::all(&wake.send);
            Wake::all(&wake.report);
            wake.events.notify_one();
            return serde_json::json!({"ok": true});
        }
        Err(e) => return fail(format!("not a request: {e}")),
    };
    let number = match PhoneNumber::parse(&to, default_country) {
        Ok(n) => n,
        Err(e) => return fail(format!("to: {e}")),
    };
    if text.is_empty() {
        return fail("the message is empty".into());
    }
    let n2 = number.clone();
    let queued = store
        .call(move |db| {
            let id = db.insert_local("cli", &n2, &text)?;
            db.record_audit("cli", "send", Some(&id.to_string()))?;
            // The CLI is told "queued" next: the message must be on disk.
            db.sync()?;
            Ok(id)
        })
        .await;
    match queued {
        Ok(id) => {
            tracing::info!(outbox_id = id, to = %number.masked(), "message queued by smshub send");
            wake.send.notify_one();
            serde_json::json!({"ok": true, "id": id})
        }
        Err(e) => fail(format!("the database refused it: {e}")),
    }
}

/// What became of [`send`].
#[derive(Debug)]
pub enum ClientOutcome {
    /// The daemon queued it (and woke its senders).
    Queued(OutboxId),
    /// No daemon listens: nothing was sent to it; the caller may write the database itself.
    NoDaemon(String),
    /// The daemon answered with a refusal, or the exchange broke after the request was written
    /// (then it may have been queued: never retried).
    Failed(String),
}

/// Hands a message to the daemon listening on `path` (blocking; [`DEADLINE`] in all).
pub fn send(path: &Path, to: &PhoneNumber, text: &str) -> ClientOutcome {
    let mut stream = match std::os::unix::net::UnixStream::connect(path) {
        Ok(s) => s,
        Err(e) => return ClientOutcome::NoDaemon(format!("{}: {e}", path.display())),
    };
    let _ = stream.set_read_timeout(Some(DEADLINE));
    let _ = stream.set_write_timeout(Some(DEADLINE));
    let request = serde_json::json!({"cmd": "send", "to": to.as_str(), "text": text});
    if let Err(e) = stream.write_all(format!("{request}\n").as_bytes()) {
        return ClientOutcome::Failed(format!("writing to {}: {e}", path.display()));
    }
    let mut line = String::new();
    let read = BufReader::new((&stream).take(MAX_REQUEST as u64)).read_line(&mut line);
    if let Err(e) = read {
        return ClientOutcome::Failed(format!("no answer from the daemon on {}: {e}", path.display()));
    }
    let answer: serde_json::Value = match serde_json::from_str(&line) {
        Ok(v) => v,
        Err(_) => return ClientOutcome::Failed(format!("the daemon on {} gave no usable answer", path.display())),
    };
    match (answer["ok"].as_bool(), answer["id"].as_i64()) {
        (Some(true), Some(id)) => ClientOutcome::Queued(id),
        _ => ClientOutcome::Failed(answer["error"].as_str().unwrap_or("the daemon refused it").to_string()),
    }
}

/// Asks the daemon on `path` to look at the outbox now; false when no daemon answered (it
/// finds the change within [`crate::outbound::SAFETY_SWEEP`] anyway).
pub fn wake(path: &Path) -> bool {
    let Ok(mut stream) = std::os::unix::net::UnixStream::connect(path) else { return false };
    let _ = stream.set_read_timeout(Some(DEADLINE));
    let _ = stream.set_write_timeout(Some(DEADLINE));
    if stream.write_all(b"{\"cmd\": \"wake\"}\n").is_err() {
        return false;
    }
    let mut line = String::new();
    let _ = BufReader::new((&stream).take(1024)).read_line(&mut line);
    serde_json::from_str::<serde_json::Value>(&line).is_ok_and(|v| v["ok"] == true)
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::wake as wake_client;

    #[tokio::test]
    async fn a_message_sent_over_the_socket_is_queued_with_an_audit_row_and_wakes_the_senders() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let path = dir.path().join("smshub.sock");
        let listener = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        let taken = bind(&path).expect_err("a live socket is not taken over");
        assert!(taken.to_string().contains("another smshub"), "{taken}");
        let wake = Wake::default();
        let (shutdown, signal) = crate::shutdown::Shutdown::new();
        let server = tokio::spawn(serve(listener, path.clone(), store.clone(), wake.clone(), None, signal));
        let to = PhoneNumber::parse("+358401234567", None).unwrap();
        let p2 = path.clone();
        let outcome = tokio::task::spawn_blocking(move || send(&p2, &to, "hello")).await.unwrap();
        let ClientOutcome::Queued(id) = outcome else { panic!("{outcome:?}") };
        // The permit left by notify_one: a sender about to wait returns at once.
        tokio::time::timeout(Duration::from_secs(1), wake.send.notified()).await.expect("woken");
        let d = store.call(move |db| db.get_outbox(id)).await.unwrap().unwrap();
        assert_eq!((d.summary.source.as_str(), d.body.as_deref()), ("cli", Some("hello")));
        assert_eq!(store.call(|db| db.list_audit(5)).await.unwrap()[0].action, "send");

        // `wake` (the CLI changed the outbox or replayed an event) reaches the event webhooks too.
        let p2 = path.clone();
        assert!(tokio::task::spawn_blocking(move || wake_client(&p2)).await.unwrap());
        tokio::time::timeout(Duration::from_secs(1), wake.events.notified()).await.expect("events woken");
        assert!(!wake_client(&dir.path().join("nobody.sock")), "no daemon: false, quietly");

        // Garbage and oversized requests get an answer, not a crash.
        for req in
            ["{\"cmd\":\"drop\"}\n".to_string(), "nonsense\n".into(), format!("{}\n", "x".repeat(MAX_REQUEST + 10))]
        {
            let p2 = path.clone();
            let answer = tokio::task::spawn_blocking(move || {
                let mut s = std::os::unix::net::UnixStream::connect(&p2).unwrap();
                s.set_read_timeout(Some(DEADLINE)).unwrap();
                let _ = s.write_all(req.as_bytes());
                let mut line = String::new();
                let _ = BufReader::new(s).read_line(&mut line);
                line
            })
            .await
            .unwrap();
            let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
            assert_eq!(v["ok"], false, "{v}");
        }

        shutdown.trigger();
        server.await.unwrap();
        assert!(!path.exists(), "removed at stop");
        let to = PhoneNumber::parse("+358401234567", None).unwrap();
        assert!(matches!(send(&path, &to, "x"), ClientOutcome::NoDaemon(_)));
    }

    #[test]
    fn a_file_that_is_not_a_socket_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("smshub.sock");
        std::fs::write(&path, "keep me").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let err = rt.block_on(async { bind(&path).err().unwrap() });
        assert!(err.to_string().contains("not a socket"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
    }
}
