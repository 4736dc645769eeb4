//! The accept loop of one listener: connection caps, TLS, hyper's HTTP/1.1 with header limits,
//! a deadline per request and per idle keep-alive, and a bounded drain on shutdown.
//!
//! Why each knob (they are what a box on the internet falls over without):
//! - **Caps** (`max_connections`, `max_connections_per_address`): every connection costs a file
//!   descriptor and a task; over a cap the connection is accepted and closed at once, so one
//!   address cannot take the descriptors the modem, the database and the forwarders need.
//!   Trusted proxies are not capped per address (every client comes through them).
//! - **Header limits** (`max_header_bytes` as hyper's read buffer, `max_headers`): a request with
//!   more is answered 431 by hyper and the buffer is never larger.
//! - **Request deadline** (`request_timeout_s`): from a request's first byte until its headers
//!   are in (hyper's header-read timeout and our watchdog) and until its body is read
//!   ([`super::read_body`] reads against the same deadline), so a slow sender is cut off.
//! - **Idle deadline** (`idle_timeout_s`): a kept-alive connection with nothing in flight is
//!   closed, so idle connections do not pile up to the cap.
//! - **Accept errors** (EMFILE when descriptors run out) back off up to a second and are
//!   logged at most once a minute with a count.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::{Service as _, service_fn};
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::conn::{ConnInfo, Surface, client_address};
use super::outsiders::OutsiderLog;
use crate::config::{ConnLimits, ListenerConfig};
use crate::shutdown::ShutdownSignal;
use crate::tls::ReloadableCert;

/// How long open connections may take to finish once shutdown starts.
const GRACE: Duration = Duration::from_secs(5);

/// The longest pause after a failed accept.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// One listener, bound, with its settings.
pub struct Listener {
    pub surface: Surface,
    pub tcp: TcpListener,
    pub config: ListenerConfig,
    /// Present when the listener serves TLS; reloaded in place on SIGHUP.
    pub tls: Option<Arc<ReloadableCert>>,
}

/// What a listener counted since start (for `/status` and, later, `/metrics`).
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// Connections open now.
    pub open: AtomicU64,
    pub accepted: AtomicU64,
    pub refused_total_cap: AtomicU64,
    pub refused_address_cap: AtomicU64,
    pub timed_out: AtomicU64,
    pub tls_failed: AtomicU64,
    pub accept_errors: AtomicU64,
}

impl ListenerStats {
    pub fn json(&self) -> serde_json::Value {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "open": get(&self.open),
            "accepted": get(&self.accepted),
            "refused_total_cap": get(&self.refused_total_cap),
            "refused_address_cap": get(&self.refused_address_cap),
            "timed_out": get(&self.timed_out),
            "tls_failed": get(&self.tls_failed),
            "accept_errors": get(&self.accept_errors),
        })
    }
}

/// Serves `router` on `listener` until `shutdown` fires, then drains connections for [`GRACE`].
pub async fn serve(
    listener: Listener,
    router: Router,
    stats: Arc<ListenerStats>,
    outsiders: Arc<OutsiderLog>,
    mut shutdown: ShutdownSignal,
) {
    let Listener { surface, tcp, config, tls } = listener;
    let acceptor = tls.as_ref().map(|cert| tokio_rustls::TlsAcceptor::from(cert.server_config()));
    let slots = Arc::new(Slots::new(config.limits));
    let ctx = Arc::new(ConnCtx { surface, config, router, stats: stats.clone(), acceptor });
    let graceful = GracefulShutdown::new();
    let mut backoff = Duration::ZERO;
    loop {
        let accepted = tokio::select! {
            accepted = tcp.accept() => accepted,
            _ = shutdown.wait() => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => {
                backoff = Duration::ZERO;
                pair
            }
            Err(e) => {
                // Running out of file descriptors must not spin the CPU or flood the journal.
                stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                outsiders.note_error("accepting an HTTP connection failed", surface, &e.to_string());
                backoff = (backoff * 2).clamp(Duration::from_millis(50), MAX_ACCEPT_BACKOFF);
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        let counted_address = (!ctx.config.trusted_proxies.contains(&peer.ip())).then_some(peer.ip());
        let slot = match slots.take(counted_address) {
            Ok(slot) => slot,
            Err(refusal) => {
                let (counter, kind) = match refusal {
                    Refusal::Total => (&stats.refused_total_cap, "connection refused: the listener is full"),
                    Refusal::Address => {
                        (&stats.refused_address_cap, "connection refused: too many connections from one address")
                    }
                };
                counter.fetch_add(1, Ordering::Relaxed);
                outsiders.note(kind, surface, peer.ip());
                drop(stream);
                continue;
            }
        };
        let ctx = ctx.clone();
        let watcher = graceful.watcher();
        stats.open.fetch_add(1, Ordering::Relaxed);
        let stats = stats.clone();
        tokio::spawn(async move {
            ctx.connection(stream, peer, watcher).await;
            drop(slot);
            stats.open.fetch_sub(1, Ordering::Relaxed);
        });
    }
    drop(tcp);
    if tokio::time::timeout(GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!(
            listener = surface.as_str(),
            "open HTTP connections did not finish within {GRACE:?}; closing them"
        );
    }
}

/// Why a connection was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Total,
    Address,
}

/// Open connections, in all and per client address.
struct Slots {
    limits: ConnLimits,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

impl Slots {
    fn new(limits: ConnLimits) -> Slots {
        Slots { limits, open: Mutex::new((0, HashMap::new())) }
    }

    /// Takes a slot for a connection from `address` (`None`: not counted per address).
    fn take(self: &Arc<Self>, address: Option<IpAddr>) -> Result<SlotGuard, Refusal> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.0 >= self.limits.max_connections {
            return Err(Refusal::Total);
        }
        if let Some(ip) = address {
            let n = open.1.entry(ip).or_insert(0);
            if *n >= self.limits.max_per_address {
                return Err(Refusal::Address);
            }
            *n += 1;
        }
        open.0 += 1;
        Ok(SlotGuard { slots: self.clone(), address })
    }
}

/// Gives its slot back when the connection ends.
struct SlotGuard {
    slots: Arc<Slots>,
    address: Option<IpAddr>,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|p| p.into_inner());
        open.0 = open.0.saturating_sub(1);
        if let Some(ip) = self.address
            && let Some(n) = open.1.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&ip);
            }
        }
    }
}

/// What every connection of one listener shares.
struct ConnCtx {
    surface: Surface,
    config: ListenerConfig,
    router: Router,
    stats: Arc<ListenerStats>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
}

impl ConnCtx {
    async fn connection(self: Arc<Self>, stream: TcpStream, peer: SocketAddr, watcher: Watcher) {
        let limits = self.config.limits;
        let _ = stream.set_nodelay(true);
        match &self.acceptor {
            None => self.http(stream, peer, false, watcher).await,
            Some(acceptor) => {
                // The handshake is part of the request: same deadline.
                match tokio::time::timeout(limits.request_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => self.http(tls, peer, true, watcher).await,
                    Ok(Err(e)) => {
                        self.stats.tls_failed.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    }
                    Err(_) => {
                        self.stats.tls_failed.fetch_add(1, Ordering::Relaxed);
                        self.stats.timed_out.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }

    async fn http<S>(self: &Arc<Self>, stream: S, peer: SocketAddr, tls: bool, watcher: Watcher)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let limits = self.config.limits;
        let clock = Arc::new(ConnClock::new());
        let io = TokioIo::new(Watched { inner: stream, clock: clock.clone() });
        let ctx = self.clone();
        let clock2 = clock.clone();
        let service = service_fn(move |mut req: Request<Incoming>| {
            let started = clock2.handling();
            let client = client_address(peer.ip(), req.headers(), &ctx.config.trusted_proxies);
            req.extensions_mut().insert(ConnInfo { surface: ctx.surface, peer, client, tls });
            req.extensions_mut().insert(RequestDeadline(started + limits.request_timeout));
            let router = TowerToHyperService::new(ctx.router.clone());
            let clock = clock2.clone();
            async move {
                let resp: Result<Response<Body>, _> = router.call(req).await;
                clock.idle();
                resp
            }
        });
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .keep_alive(true)
            .header_read_timeout(limits.request_timeout)
            .max_buf_size(limits.max_header_bytes)
            .max_headers(limits.max_headers);
        let conn = watcher.watch(builder.serve_connection(io, service));
        tokio::pin!(conn);
        loop {
            let deadline = clock.deadline(&limits);
            tokio::select! {
                result = &mut conn => {
                    if let Err(e) = result {
                        // hyper's own header-read timeout closes slow or idle connections too.
                        if e.is_timeout() {
                            self.stats.timed_out.fetch_add(1, Ordering::Relaxed);
                        }
                        tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
                    }
                    return;
                }
                _ = clock.changed.notified() => {}
                _ = sleep_until(deadline) => {
                    if clock.deadline(&limits).is_some_and(|d| d <= Instant::now()) {
                        self.stats.timed_out.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%peer, "closing a connection that was idle or slow for too long");
                        return;
                    }
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// When the current request of a connection must have its body read by (see
/// [`super::read_body`]).
#[derive(Debug, Clone, Copy)]
pub struct RequestDeadline(pub Instant);

/// Where a connection is in its life, for the idle and request deadlines.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Nothing in flight since then.
    Idle(Instant),
    /// The first byte of a request came then; its headers are not complete yet.
    Receiving(Instant),
    /// A handler has the request (its body reads are bounded by [`RequestDeadline`]).
    Handling,
}

struct ConnClock {
    phase: Mutex<Phase>,
    changed: Notify,
}

impl ConnClock {
    fn new() -> ConnClock {
        ConnClock { phase: Mutex::new(Phase::Idle(Instant::now())), changed: Notify::new() }
    }

    fn phase(&self) -> Phase {
        *self.phase.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, phase: Phase) {
        *self.phase.lock().unwrap_or_else(|p| p.into_inner()) = phase;
        self.changed.notify_one();
    }

    /// Bytes arrived: an idle connection starts a request.
    fn bytes_read(&self) {
        let mut phase = self.phase.lock().unwrap_or_else(|p| p.into_inner());
        if let Phase::Idle(_) = *phase {
            *phase = Phase::Receiving(Instant::now());
            drop(phase);
            self.changed.notify_one();
        }
    }

    /// The headers are in and a handler takes over; returns when the request started.
    fn handling(&self) -> Instant {
        let started = match self.phase() {
            Phase::Receiving(t) => t,
            // Pipelined: the bytes came with the previous request.
            _ => Instant::now(),
        };
        self.set(Phase::Handling);
        started
    }

    fn idle(&self) {
        self.set(Phase::Idle(Instant::now()));
    }

    /// When the connection is closed unless something happens first.
    fn deadline(&self, limits: &ConnLimits) -> Option<Instant> {
        match self.phase() {
            Phase::Idle(since) => Some(since + limits.idle_timeout),
            // A second more than hyper's header-read timeout, which answers first when it can.
            Phase::Receiving(since) => Some(since + limits.request_timeout + Duration::from_secs(1)),
            Phase::Handling => None,
        }
    }
}

/// The connection's byte stream, telling the clock when a request's first bytes arrive.
struct Watched<S> {
    inner: S,
    clock: Arc<ConnClock>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.bytes_read();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per: usize) -> ConnLimits {
        ConnLimits { max_connections: total, max_per_address: per, ..ConnLimits::default() }
    }

    #[test]
    fn slots_cap_each_address_and_the_total_and_come_back_when_dropped() {
        let slots = Arc::new(Slots::new(limits(3, 2)));
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let a1 = slots.take(Some(a)).unwrap();
        let _a2 = slots.take(Some(a)).unwrap();
        assert_eq!(slots.take(Some(a)).err(), Some(Refusal::Address));
        let _b1 = slots.take(Some(b)).unwrap();
        assert_eq!(slots.take(Some(b)).err(), Some(Refusal::Total));
        assert_eq!(slots.take(None).err(), Some(Refusal::Total), "an uncounted proxy still counts in the total");
        drop(a1);
        let _a3 = slots.take(Some(a)).unwrap();
        assert_eq!(slots.open.lock().unwrap().1.get(&a), Some(&2));
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_follows_the_phase_of_the_connection() {
        let l = limits(1, 1);
        let clock = ConnClock::new();
        let t0 = Instant::now();
        assert_eq!(clock.deadline(&l), Some(t0 + l.idle_timeout));
        tokio::time::advance(Duration::from_secs(3)).await;
        clock.bytes_read();
        let started = Instant::now();
        assert_eq!(clock.deadline(&l), Some(started + l.request_timeout + Duration::from_secs(1)));
        clock.bytes_read();
        assert_eq!(
            clock.deadline(&l),
            Some(started + l.request_timeout + Duration::from_secs(1)),
            "more bytes keep the start"
        );
        assert_eq!(clock.handling(), started);
        assert_eq!(clock.deadline(&l), None, "a handler's work has no connection deadline");
        clock.idle();
        assert_eq!(clock.deadline(&l), Some(Instant::now() + l.idle_timeout));
    }
}
