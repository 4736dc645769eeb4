//! `[http]` (the public listener) and `[admin]` (the admin listener): address, TLS files and the
//! connection discipline that keeps a box on the internet standing.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::source::Context;

/// One listener's section as written. `[http]` and `[admin]` share it; `public_url` is refused
/// in `[admin]`, `session_lifetime_s` in `[http]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListener {
    pub(super) listen: Option<String>,
    pub(super) public_url: Option<String>,
    pub(super) max_body_bytes: Option<usize>,
    pub(super) tls_cert_file: Option<PathBuf>,
    pub(super) tls_key_file: Option<PathBuf>,
    pub(super) max_connections: Option<usize>,
    pub(super) max_connections_per_address: Option<usize>,
    pub(super) max_header_bytes: Option<usize>,
    pub(super) max_headers: Option<usize>,
    pub(super) request_timeout_s: Option<u64>,
    pub(super) idle_timeout_s: Option<u64>,
    pub(super) trusted_proxies: Option<Vec<String>>,
    /// `[admin]` only: how long a sign-in lasts.
    pub(super) session_lifetime_s: Option<u64>,
    /// `[admin]` only: the Unix socket `smshub send` talks to ("" = none).
    pub(super) socket: Option<PathBuf>,
}

/// The certificate chain and key of a TLS listener (PEM files, read at start and on SIGHUP).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// How many connections a listener takes and how long it gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ConnLimits {
    /// Open connections in all; one more is accepted and closed at once.
    pub max_connections: usize,
    /// Open connections from one client address.
    pub max_per_address: usize,
    /// The request line and headers together (hyper's read buffer).
    pub max_header_bytes: usize,
    pub max_headers: usize,
    /// From a request's first byte until its body is read.
    pub request_timeout: Duration,
    /// A kept-alive connection with no request in flight is closed after this.
    pub idle_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_connections: 256,
            max_per_address: 32,
            max_header_bytes: 16 * 1024,
            max_headers: 64,
            request_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// One listener, effective.
#[derive(Debug, Clone, Serialize)]
pub struct ListenerConfig {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    pub tls: Option<TlsFiles>,
    pub limits: ConnLimits,
    /// Peers whose `X-Forwarded-For` names the real client (a reverse proxy on the box or the
    /// LAN). Their own connections are not counted per address: the proxy multiplexes clients.
    pub trusted_proxies: Vec<IpAddr>,
}

/// hyper refuses a read buffer under 8 KiB (it panics), so the floor is a config error.
const MIN_HEADER_BYTES: usize = 8192;

impl ListenerConfig {
    /// Checks one section; `section` is `"http"` or `"admin"`, `default_listen` its default.
    pub(super) fn from_raw(
        cx: &Context<'_>,
        section: &'static str,
        raw: &RawListener,
        default_listen: &str,
    ) -> Result<ListenerConfig, ConfigError> {
        let s = [section];
        let listen_text = raw.listen.clone().unwrap_or_else(|| default_listen.to_string());
        let listen = listen_text.parse::<SocketAddr>().map_err(|_| {
            cx.error(&s, "listen", format!("{listen_text:?} is not an address:port such as \"{default_listen}\""))
        })?;
        let tls = match (&raw.tls_cert_file, &raw.tls_key_file) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                // Read and matched here, so a bad pair is a config error (exit 2) and not a
                // failure at the first handshake.
                crate::tls::load_certified_key(cert, key).map_err(|e| cx.error(&s, "tls_cert_file", e))?;
                Some(TlsFiles { cert: cert.clone(), key: key.clone() })
            }
            (Some(_), None) => {
                return Err(cx.error(&s, "tls_key_file", "missing: tls_cert_file needs its private key".into()));
            }
            (None, Some(_)) => {
                return Err(cx.error(&s, "tls_cert_file", "missing: tls_key_file needs its certificate".into()));
            }
        };
        let d = ConnLimits::default();
        let count = |key: &str, value: Option<usize>, default: usize, range: std::ops::RangeInclusive<u64>| {
            cx.ranged(&s, 0, key, as_u64(value), default as u64, range, "").map(|n| n as usize)
        };
        let seconds = |key: &str, value: Option<u64>, default: Duration| {
            cx.ranged(&s, 0, key, value, default.as_secs(), 1..=3600, " s").map(Duration::from_secs)
        };
        let limits = ConnLimits {
            max_connections: count("max_connections", raw.max_connections, d.max_connections, 1..=65_536)?,
            max_per_address: count(
                "max_connections_per_address",
                raw.max_connections_per_address,
                d.max_per_address,
                1..=65_536,
            )?,
            max_header_bytes: count(
                "max_header_bytes",
                raw.max_header_bytes,
                d.max_header_bytes,
                MIN_HEADER_BYTES as u64..=1024 * 1024,
            )?,
            max_headers: count("max_headers", raw.max_headers, d.max_headers, 8..=1024)?,
            request_timeout: seconds("request_timeout_s", raw.request_timeout_s, d.request_timeout)?,
            idle_timeout: seconds("idle_timeout_s", raw.idle_timeout_s, d.idle_timeout)?,
        };
        let max_body_bytes = count("max_body_bytes", raw.max_body_bytes, 64 * 1024, 1024..=16 * 1024 * 1024)?;
        let mut trusted_proxies = Vec::new();
        for p in raw.trusted_proxies.iter().flatten() {
            let ip = p.trim().parse::<IpAddr>().map_err(|_| {
                cx.error(&s, "trusted_proxies", format!("{p:?} is not an IP address such as \"127.0.0.1\""))
            })?;
            trusted_proxies.push(ip);
        }
        Ok(ListenerConfig { listen, max_body_bytes, tls, limits, trusted_proxies })
    }
}

fn as_u64(v: Option<usize>) -> Option<u64> {
    v.map(|n| u64::try_from(n).unwrap_or(u64::MAX))
}
