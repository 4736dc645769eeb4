//! The two listeners over real sockets, as an outsider would try them: connection caps per
//! address and in all, header and whole-request limits, idle connections, garbage, and TLS on
//! both listeners with a certificate swapped by SIGHUP while a connection stays open.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "0123456789abcdef0123";

/// A config with the given extra keys in `[http]` and `[admin]`.
fn config(dir: &TestDir, http_extra: &str, admin_extra: &str) -> std::path::PathBuf {
    let text = format!(
        "[store]\npath = \"{}\"\n\n[http]\nlisten = \"127.0.0.1:0\"\n{http_extra}\n\n[admin]\nlisten = \"127.0.0.1:0\"\n{admin_extra}\n\n\
         [logging]\nlevel = \"debug\"\nformat = \"stderr\"\n\n\
         [[provet]]\nname = \"hki\"\nbase_url = \"http://127.0.0.1:9/1/api/0.1/\"\nallow_insecure_http = true\n\
         client_id = \"id\"\nclient_secret = \"s\"\nwebhook_token = \"{TOKEN}\"\npoll_interval_s = 0\nretry_initial_s = 600\n",
        dir.path().join("smshub.db").display()
    );
    dir.write("smshub.toml", &text, 0o600)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// A TCP connection to `addr` from the local address `from` (127.0.0.x are all this machine).
async fn connect_from(from: &str, addr: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(addr.parse::<SocketAddr>().unwrap()).await.unwrap()
}

/// Whether the server closed `s` (EOF or reset) within `within`.
async fn closed_within(s: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let until = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(until, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// One `GET path` on an open connection, keeping it alive; the status code.
async fn get_keep_alive(s: &mut tokio::net::TcpStream, path: &str) -> u16 {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await.unwrap().unwrap();
    String::from_utf8_lossy(&buf[..n]).split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// A token made by `smshub token create`.
fn token(dir: &TestDir) -> String {
    let cfg = dir.path().join("smshub.toml");
    let out = dir.smshub(&cfg, &["token", "create", "tests"]);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).lines().last().unwrap_or_default().to_string()
}

/// `/status` from the admin listener.
fn status_json(token: &str, d: &Daemon) -> serde_json::Value {
    let mut s = TcpStream::connect(&d.admin).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET /status HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n",
        d.admin
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    serde_json::from_str(resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("")).unwrap()
}

#[test]
fn a_flood_from_one_address_does_not_stop_another_address() {
    let dir = TestDir::new();
    // Long deadlines: this test is about the caps, and on a loaded machine the silent flood
    // connections must not be timed out (and so freed) before the caps are checked.
    let cfg = config(
        &dir,
        "max_connections = 8\nmax_connections_per_address = 4\nrequest_timeout_s = 600\nidle_timeout_s = 600\n",
        "",
    );
    let d = Daemon::start(&cfg);
    let token = token(&dir);
    runtime().block_on(async {
        let mut flood = Vec::new();
        for _ in 0..4 {
            flood.push(connect_from("127.0.0.1", &d.addr).await);
        }
        // The fifth from the same address is accepted and closed at once.
        let mut fifth = connect_from("127.0.0.1", &d.addr).await;
        assert!(closed_within(&mut fifth, Duration::from_secs(5)).await, "over the per-address cap");
        // Another address still gets its webhook through.
        let mut other = connect_from("127.0.0.2", &d.addr).await;
        other
            .write_all(
                format!(
                    "POST /provet/hki/webhook/{TOKEN} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                     Content-Length: 23\r\nConnection: close\r\n\r\n{{\"external_sms_id\": 42}}"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        let mut answer = String::new();
        other.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        // The daemon counts the answered connection until its task ends, which can come after our
        // read of its end (seen under qemu): wait until only the four held from 127.0.0.1 are open.
        let settled = wait_for(Duration::from_secs(30), || {
            (status_json(&token, &d)["listeners"]["public"]["open"] == 4).then_some(())
        });
        assert!(settled.is_some(), "{}", status_json(&token, &d));
        // Fill the listener from a third address; then even a new address is refused.
        for _ in 0..4 {
            flood.push(connect_from("127.0.0.3", &d.addr).await);
        }
        // Wait until the daemon holds exactly the eight (the kernel completes a connect before the
        // daemon takes it, and the answered connection from 127.0.0.2 must be gone).
        let full = wait_for(Duration::from_secs(30), || {
            let v = status_json(&token, &d);
            (v["listeners"]["public"]["accepted"].as_u64() >= Some(10) && v["listeners"]["public"]["open"] == 8)
                .then_some(())
        });
        assert!(full.is_some(), "{}\n{}", status_json(&token, &d), d.log());
        let mut late = connect_from("127.0.0.4", &d.addr).await;
        assert!(
            closed_within(&mut late, Duration::from_secs(10)).await,
            "over the total cap: {}",
            status_json(&token, &d)
        );
        drop(flood);
    });
    let v = status_json(&token, &d);
    let public = &v["listeners"]["public"];
    assert!(public["refused_address_cap"].as_u64() >= Some(1), "{v}");
    assert!(public["refused_total_cap"].as_u64() >= Some(1), "{v}");
    // Refusals are summarised, not logged one line each.
    let log = d.log();
    assert!(log.matches("too many connections from one address").count() <= 2, "{log}");
    assert!(!log.contains("127.0.0.4"), "addresses are masked in logs: {log}");
}

#[test]
fn oversized_headers_slow_senders_idle_connections_and_garbage_are_cut_off() {
    let dir = TestDir::new();
    let cfg = config(&dir, "request_timeout_s = 2\nidle_timeout_s = 2\nmax_header_bytes = 8192\n", "");
    let d = Daemon::start(&cfg);
    runtime().block_on(async {
        // 20 KiB of headers: 431 and the connection closes.
        let mut s = connect_from("127.0.0.1", &d.addr).await;
        let mut req = String::from("GET /healthz HTTP/1.1\r\nHost: x\r\n");
        for i in 0..200 {
            req.push_str(&format!("X-Padding-{i}: {}\r\n", "a".repeat(100)));
        }
        req.push_str("\r\n");
        let _ = s.write_all(req.as_bytes()).await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 431"), "{answer}");

        // Headers sent one byte at a time, slower than the request deadline allows.
        let mut slow = connect_from("127.0.0.1", &d.addr).await;
        let started = Instant::now();
        let mut cut = false;
        for b in b"GET /healthz HTTP/1.1\r\nHost: slow\r\nX-A: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n" {
            if slow.write_all(&[*b]).await.is_err() {
                cut = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(cut || closed_within(&mut slow, Duration::from_secs(10)).await, "slow headers are cut off");
        assert!(started.elapsed() < Duration::from_secs(20), "the sender would have taken 20 s");

        // A body sent at a trickle to the webhook: 408 (or closed), well before it would end.
        let mut trickle = connect_from("127.0.0.1", &d.addr).await;
        trickle
            .write_all(
                format!(
                    "POST /provet/hki/webhook/{TOKEN} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        let started = Instant::now();
        let mut answer = Vec::new();
        for _ in 0..60 {
            if trickle.write_all(b" ").await.is_err() {
                break;
            }
            let mut buf = [0u8; 512];
            match tokio::time::timeout(Duration::from_millis(500), trickle.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => {
                    answer.extend_from_slice(&buf[..n]);
                    break;
                }
                Err(_) => {}
            }
        }
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(started.elapsed() < Duration::from_secs(25), "a 100-byte body at 2 bytes/s would take 50 s");

        // An idle kept-alive connection is closed after idle_timeout_s.
        let mut idle = connect_from("127.0.0.1", &d.addr).await;
        assert_eq!(get_keep_alive(&mut idle, "/healthz").await, 200);
        assert!(closed_within(&mut idle, Duration::from_secs(15)).await, "idle keep-alive is closed");

        // Garbage instead of HTTP: closed, and the daemon goes on.
        let mut junk = connect_from("127.0.0.1", &d.addr).await;
        let _ = junk.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n").await;
        assert!(closed_within(&mut junk, Duration::from_secs(10)).await);
    });
    assert_eq!(http(&d.addr, "GET", "/healthz", None, b"").0, 200, "still serving: {}", d.log());
    let v = status_json(&token(&dir), &d);
    assert!(v["listeners"]["public"]["timed_out"].as_u64() >= Some(1), "{v}");
}

#[test]
fn running_out_of_file_descriptors_is_survived_and_logged_in_summary() {
    use std::os::unix::process::CommandExt as _;
    let dir = TestDir::new();
    // Caps above the descriptor limit, so accept() itself runs out (EMFILE).
    let cfg = config(&dir, "max_connections = 5000\nmax_connections_per_address = 5000\n", "");
    let mut cmd = Daemon::command(&cfg);
    // SAFETY: setrlimit is async-signal-safe; it only lowers this child's own limit.
    unsafe {
        cmd.pre_exec(|| {
            let lim = nix::libc::rlimit { rlim_cur: 64, rlim_max: 64 };
            if nix::libc::setrlimit(nix::libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let d = Daemon::start_command(cmd);
    runtime().block_on(async {
        let mut held = Vec::new();
        for _ in 0..150 {
            if let Ok(s) = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(&d.addr)).await {
                held.extend(s.ok());
            }
        }
        // The backlog keeps connections the daemon cannot accept; give it time to try.
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(held);
    });
    let recovered = wait_for(Duration::from_secs(20), || {
        let s = TcpStream::connect(&d.addr).ok()?;
        drop(s);
        (http(&d.addr, "GET", "/healthz", None, b"").0 == 200).then_some(())
    });
    assert!(recovered.is_some(), "the daemon serves again once descriptors are free: {}", d.log());
    let v = status_json(&token(&dir), &d);
    assert!(v["listeners"]["public"]["accept_errors"].as_u64() >= Some(1), "EMFILE was hit: {v}");
    let lines = d.log().lines().filter(|l| l.contains("WARN") && l.contains("accept")).count();
    assert!((1..=3).contains(&lines), "accept errors are summarised, not logged each: {lines}\n{}", d.log());
}

/// A self-signed certificate for 127.0.0.1 and localhost: (certificate PEM, key PEM, DER).
fn certificate(name: &str) -> (String, String, Vec<u8>) {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem(), cert.der().to_vec())
}

fn tls_client(trusted: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for der in trusted {
        roots.add(rustls::pki_types::CertificateDer::from(der.to_vec())).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn tls_connect(connector: &tokio_rustls::TlsConnector, addr: &str) -> Tls {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

async fn tls_get(s: &mut Tls, path: &str) -> String {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 8192];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await.unwrap().unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn served_certificate(s: &Tls) -> Vec<u8> {
    s.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[test]
fn both_listeners_speak_tls_and_sighup_swaps_the_certificate_without_dropping_connections() {
    let dir = TestDir::new();
    let (cert_a, key_a, der_a) = certificate("smshub test A");
    let (cert_b, key_b, der_b) = certificate("smshub test B");
    let cert_path = dir.write("cert.pem", &cert_a, 0o600);
    let key_path = dir.write("key.pem", &key_a, 0o600);
    let tls = format!("tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n", cert_path.display(), key_path.display());
    let cfg = config(&dir, &tls, &tls);
    let d = Daemon::start(&cfg);
    assert!(d.log().contains("smshub: listening on https://"), "{}", d.log());
    let rt = runtime();
    let connector = tls_client(&[&der_a, &der_b]);
    let mut kept = rt.block_on(async {
        let mut public = tls_connect(&connector, &d.addr).await;
        assert_eq!(served_certificate(&public), der_a);
        assert!(tls_get(&mut public, "/healthz").await.starts_with("HTTP/1.1 200"));
        let mut admin = tls_connect(&connector, &d.admin).await;
        assert_eq!(served_certificate(&admin), der_a);
        assert!(tls_get(&mut admin, "/healthz").await.starts_with("HTTP/1.1 404"), "healthz is public only");
        public
    });
    // Plain HTTP to a TLS listener is not served.
    let mut plain = TcpStream::connect(&d.addr).unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut got = Vec::new();
    let _ = plain.read_to_end(&mut got);
    assert!(!String::from_utf8_lossy(&got).contains("200 OK"));

    // A broken pair on reload keeps the old certificate.
    std::fs::write(&cert_path, &cert_b).unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    let ok = wait_for(Duration::from_secs(10), || d.log().contains("TLS certificate not reloaded").then_some(()));
    assert!(ok.is_some(), "a mismatched pair is refused: {}", d.log());
    rt.block_on(async {
        let s = tls_connect(&connector, &d.addr).await;
        assert_eq!(served_certificate(&s), der_a, "the old certificate stays");
    });

    // The renewed pair: new connections get it, the open one goes on.
    std::fs::write(&key_path, &key_b).unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    let ok =
        wait_for(Duration::from_secs(10), || (d.log().matches("TLS certificate reloaded").count() >= 2).then_some(()));
    assert!(ok.is_some(), "{}", d.log());
    rt.block_on(async {
        let fresh = tls_connect(&connector, &d.addr).await;
        assert_eq!(served_certificate(&fresh), der_b);
        let admin = tls_connect(&connector, &d.admin).await;
        assert_eq!(served_certificate(&admin), der_b);
        assert!(tls_get(&mut kept, "/healthz").await.starts_with("HTTP/1.1 200"), "the open connection survived");
    });
}

#[test]
fn a_mismatched_certificate_and_key_is_a_config_error() {
    let dir = TestDir::new();
    let (cert_a, _, _) = certificate("a");
    let (_, key_b, _) = certificate("b");
    let cert = dir.write("cert.pem", &cert_a, 0o600);
    let key = dir.write("key.pem", &key_b, 0o600);
    let not_pem = dir.write("junk.pem", "hello\n", 0o600);
    let cases = [
        (cert.clone(), key.clone(), "does not belong to the certificate"),
        (not_pem.clone(), key.clone(), "holds no certificate"),
        (cert.clone(), not_pem.clone(), "cannot read a PEM private key"),
    ];
    for (c, k, expected) in cases {
        let tls = format!("tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n", c.display(), k.display());
        let cfg = config(&dir, "", &tls);
        let out = dir.smshub(&cfg, &["config", "check"]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains("admin.tls_cert_file"), "{}", stderr(&out));
        assert!(stderr(&out).contains(expected), "{expected}: {}", stderr(&out));
    }
}
