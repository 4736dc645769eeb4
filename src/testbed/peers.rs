//! Small HTTP peers the bench and the soak share: a webhook caller playing Provet and a
//! PBX-style receiver playing the clinic's software.

use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// POSTs a webhook for Provet instance `instance` and returns the status code.
pub async fn post_webhook_to(addr: &str, instance: &str, token: &str, id: i64) -> anyhow::Result<u16> {
    let body = format!("{{\"external_sms_id\": {id}}}");
    post_json(addr, &format!("/provet/{instance}/webhook/{token}"), "", &body).await
}

/// POSTs the JSON `body` to `path` (with `headers`, each ending in CRLF) on one connection and
/// returns the status code.
pub async fn post_json(addr: &str, path: &str, headers: &str, body: &str) -> anyhow::Result<u16> {
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(req.as_bytes()).await?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await?;
    let text = String::from_utf8_lossy(&resp);
    Ok(text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0))
}

/// A PBX-style receiver: records (body field, instant of the request's first byte), answers
/// 200 and closes the connection.
pub async fn start_receiver() -> anyhow::Result<(String, Arc<std::sync::Mutex<Vec<(String, Instant)>>>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let arrivals = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = arrivals.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let mut first = None;
                loop {
                    let Ok(n) = stream.read(&mut chunk).await else { return };
                    if n == 0 {
                        return;
                    }
                    first.get_or_insert_with(Instant::now);
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf);
                    let Some((head, body)) = text.split_once("\r\n\r\n") else { continue };
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if body.len() < len {
                        continue;
                    }
                    let field = form_urlencoded::parse(body.as_bytes())
                        .find(|(k, _)| k == "body")
                        .map(|(_, v)| v.into_owned())
                        .unwrap_or_default();
                    if let (Ok(mut l), Some(t)) = (log.lock(), first) {
                        l.push((field, t));
                    }
                    let _ =
                        stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK").await;
                    return;
                }
            });
        }
    });
    Ok((format!("http://{addr}/in"), arrivals))
}
