//! Accepting connections on the gRPC and HTTP listeners, plaintext or TLS,
//! within limits, so that careless or hostile clients cannot exhaust the
//! server's descriptors or memory:
//!
//! - a cap per listener (`server.max_connections`): a permit of a semaphore
//!   is held by every accepted connection, from the accept (TLS handshake
//!   included) to the close; when none is left, new connections are closed
//!   at once, with one log line per burst;
//! - a header timeout (`server.header_timeout_ms`): a connection must have
//!   finished its TLS handshake and started its first request (complete
//!   request headers reached the service) this long after the accept, else it
//!   is closed: a client that sends nothing, or a slow handshake, or headers
//!   one byte at a time, holds a slot for a bounded time only;
//! - an idle timeout (`server.idle_timeout_ms`): a connection with no request
//!   in flight for this long is closed (HTTP/2 pings do not count as
//!   activity), and so is one whose responses the client has not read for
//!   this long;
//! - accept errors (EMFILE and the like) are logged once per burst and the
//!   loop backs off instead of spinning.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::task::AtomicWaker;
use http_body::Body as HttpBody;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Sleep;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// HTTP/2 keepalive on gRPC: a PING after this much silence...
pub const HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// ...that must be answered within this, else the connection is closed.
pub const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Concurrent gRPC calls on one connection at most (HTTP/2 streams): a
/// dialer multiplexing its calls needs far fewer; without a limit one
/// connection could open any number, past `max_connections`.
pub const GRPC_STREAMS_PER_CONNECTION: u32 = 1024;
/// TCP keepalive on accepted sockets (dead peers behind NAT, unplugged hosts).
pub const TCP_KEEPALIVE: Duration = Duration::from_secs(60);
/// Descriptors kept free for the stores, the log, snapshots and probes when
/// the caps are fitted to the process's descriptor limit.
pub const RESERVED_DESCRIPTORS: u64 = 128;
/// At most one log line per listener and kind of trouble this often.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// Pause after an accept error such as EMFILE (too many open files).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub idle_timeout: Duration,
    pub header_timeout: Duration,
}

/// Fits the per-listener cap to the descriptor limit: raises the soft limit
/// toward the hard one if needed, and lowers the cap (with a warning) when
/// two listeners at full cap would leave fewer than [`RESERVED_DESCRIPTORS`].
pub fn fit_to_descriptor_limit(max_connections: usize, listeners: u64) -> usize {
    let wanted = (max_connections as u64)
        .saturating_mul(listeners)
        .saturating_add(RESERVED_DESCRIPTORS);
    let soft = raise_descriptor_limit(wanted);
    let Some(soft) = soft else {
        return max_connections;
    };
    if soft >= wanted {
        return max_connections;
    }
    let fitted = (soft.saturating_sub(RESERVED_DESCRIPTORS) / listeners.max(1)).max(1) as usize;
    tracing::warn!(
        max_connections,
        fitted,
        descriptor_limit = soft,
        reserved = RESERVED_DESCRIPTORS,
        "server.max_connections does not fit the open-files limit (ulimit -n): lowered so that descriptors remain for the stores and probes"
    );
    fitted
}

/// The soft descriptor limit after trying to raise it to `wanted` (at most
/// the hard limit); `None` when unknown or unlimited.
#[cfg(target_os = "linux")]
fn raise_descriptor_limit(wanted: u64) -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let soft = limit.current?;
    if soft >= wanted {
        return Some(soft);
    }
    let target = limit.maximum.map_or(wanted, |hard| hard.min(wanted));
    if target > soft {
        let raised = rustix::process::Rlimit {
            current: Some(target),
            maximum: limit.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            tracing::info!(from = soft, to = target, "open-files limit raised");
            return Some(target);
        }
    }
    Some(soft)
}

#[cfg(not(target_os = "linux"))]
fn raise_descriptor_limit(_wanted: u64) -> Option<u64> {
    None
}

/// What the requests of one connection are doing, shared between the
/// connection (which closes itself when idle) and the request tracker.
#[derive(Debug)]
pub struct Activity {
    epoch: Instant,
    in_flight: AtomicUsize,
    started: AtomicBool,
    /// Milliseconds after `epoch` when the last request ended.
    idle_since_ms: AtomicU64,
    /// The connection's task, woken when its last request ends (its
    /// deadline changes while it may be waiting for the client).
    waker: AtomicWaker,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            started: AtomicBool::new(false),
            idle_since_ms: AtomicU64::new(0),
            waker: AtomicWaker::new(),
        }
    }

    /// A request started; it is in flight until the guard is dropped (with
    /// the response body).
    pub fn begin(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.started.store(true, Ordering::SeqCst);
        RequestGuard(Arc::clone(self))
    }
}

/// Keeps a connection's request in flight.
#[derive(Debug)]
pub struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let elapsed = self.0.epoch.elapsed().as_millis() as u64;
        self.0.idle_since_ms.store(elapsed, Ordering::SeqCst);
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.waker.wake();
        }
    }
}

#[derive(Debug)]
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// An accepted connection (TLS handshake done when TLS is on), holding its
/// slot of the listener's cap until it is dropped.
#[derive(Debug)]
pub struct Connection {
    listener: &'static str,
    stream: Stream,
    remote: SocketAddr,
    local: SocketAddr,
    activity: Arc<Activity>,
    accepted: Instant,
    limits: Limits,
    timer: Pin<Box<Sleep>>,
    /// Since when the last write has been waiting for the client to read.
    write_blocked: Option<Instant>,
    expired: bool,
    _permit: OwnedSemaphorePermit,
}

/// The connect info gRPC requests carry: the addresses, and the connection's
/// activity for [`Tracked`].
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub tcp: tonic::transport::server::TcpConnectInfo,
    pub activity: Arc<Activity>,
}

impl Connection {
    pub fn activity(&self) -> &Arc<Activity> {
        &self.activity
    }

    /// When the connection must be closed, as of `now`.
    fn deadline(&self, now: Instant) -> Deadline {
        let idle = self.limits.idle_timeout;
        let activity = &self.activity;
        if activity.in_flight.load(Ordering::SeqCst) > 0 {
            return match self.write_blocked {
                Some(since) if now >= since + idle => Deadline::Now,
                Some(since) => Deadline::At(since + idle),
                None => Deadline::Recheck(now + idle),
            };
        }
        let deadline = if activity.started.load(Ordering::SeqCst) {
            activity.epoch
                + Duration::from_millis(activity.idle_since_ms.load(Ordering::SeqCst))
                + idle
        } else {
            self.accepted + self.limits.header_timeout
        };
        if now < deadline {
            Deadline::At(deadline)
        } else {
            Deadline::Now
        }
    }

    /// Keeps the timer on the current deadline and polls it; an error when
    /// the connection has to be closed.
    fn poll_expiry(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        if self.expired {
            return Some(timed_out());
        }
        self.activity.waker.register(cx.waker());
        loop {
            let now = Instant::now();
            let current = self.timer.deadline().into_std();
            match self.deadline(now) {
                Deadline::Now => break,
                Deadline::At(at) if at != current => self.timer.as_mut().reset(at.into()),
                // Busy: look again an idle timeout from now at the latest.
                Deadline::Recheck(at) if current <= now || current > at => {
                    self.timer.as_mut().reset(at.into())
                }
                _ => {}
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return None;
            }
        }
        self.expired = true;
        let reason = if self.activity.in_flight.load(Ordering::SeqCst) > 0 {
            "responses not read"
        } else if self.activity.started.load(Ordering::SeqCst) {
            "idle"
        } else {
            "no request in time"
        };
        tracing::debug!(
            listener = self.listener,
            remote = %self.remote,
            reason,
            "connection closed"
        );
        Some(timed_out())
    }
}

enum Deadline {
    Now,
    At(Instant),
    Recheck(Instant),
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "connection idle or too slow")
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.expired {
            return Poll::Ready(Err(timed_out()));
        }
        let polled = match &mut this.stream {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        match polled {
            Poll::Pending => match this.poll_expiry(cx) {
                Some(err) => Poll::Ready(Err(err)),
                None => Poll::Pending,
            },
            ready => ready,
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.expired {
            return Poll::Ready(Err(timed_out()));
        }
        let polled = match &mut this.stream {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        };
        this.after_write(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.expired {
            return Poll::Ready(Err(timed_out()));
        }
        let polled = match &mut this.stream {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        };
        this.after_write(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let polled = match &mut this.stream {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        };
        this.after_write(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.stream {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl Connection {
    /// Notes a write that waits for the client to read; closes the
    /// connection when that has lasted the idle timeout.
    fn after_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Pending => {
                if self.write_blocked.is_none() {
                    self.write_blocked = Some(Instant::now());
                }
                match self.poll_expiry(cx) {
                    Some(err) => Poll::Ready(Err(err)),
                    None => Poll::Pending,
                }
            }
            ready => {
                self.write_blocked = None;
                ready
            }
        }
    }
}

impl tonic::transport::server::Connected for Connection {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        ConnInfo {
            tcp: tonic::transport::server::TcpConnectInfo {
                local_addr: Some(self.local),
                remote_addr: Some(self.remote),
            },
            activity: Arc::clone(&self.activity),
        }
    }
}

/// At most one line per [`LOG_EVERY`] for a recurring condition, with the
/// number of occurrences since the last line.
#[derive(Debug, Default)]
struct Throttle {
    last: Option<Instant>,
    count: u64,
}

impl Throttle {
    /// The occurrences to report now, or `None` to stay quiet.
    fn hit(&mut self) -> Option<u64> {
        self.count += 1;
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < LOG_EVERY)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.count))
    }
}

/// Accept errors that mean "out of a resource": back off, do not spin.
fn is_resource_error(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(code) if [23 /* ENFILE */, 24 /* EMFILE */, 105 /* ENOBUFS */, 12 /* ENOMEM */].contains(&code)
    )
}

#[cfg(target_os = "linux")]
fn set_keepalive(tcp: &TcpStream) {
    use rustix::net::sockopt;
    let _ = sockopt::set_socket_keepalive(tcp, true);
    let _ = sockopt::set_tcp_keepidle(tcp, TCP_KEEPALIVE);
    let _ = sockopt::set_tcp_keepintvl(tcp, Duration::from_secs(10));
}

#[cfg(not(target_os = "linux"))]
fn set_keepalive(_tcp: &TcpStream) {}

/// Accepts connections on `listener` within `limits`, completing TLS
/// handshakes concurrently when `tls` is set (a slow or failed handshake
/// never blocks the others); yields the connections ready to serve. Stops
/// (closing the listening socket) when the receiver is dropped.
pub fn accept_loop(
    name: &'static str,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    limits: Limits,
) -> mpsc::Receiver<Connection> {
    let (sender, receiver) = mpsc::channel(256);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    tokio::spawn(async move {
        let mut refused = Throttle::default();
        let mut failing = Throttle::default();
        loop {
            let accepted = tokio::select! {
                () = sender.closed() => return,
                accepted = listener.accept() => accepted,
            };
            let (tcp, remote) = match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    let resource = is_resource_error(&err);
                    if let Some(count) = failing.hit() {
                        tracing::error!(
                            listener = name,
                            error = %err,
                            failures = count,
                            "accept failed{}",
                            if resource { ": out of descriptors or memory, backing off" } else { "" }
                        );
                    }
                    if resource {
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                    continue;
                }
            };
            let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                if let Some(count) = refused.hit() {
                    tracing::warn!(
                        listener = name,
                        max_connections = limits.max_connections,
                        refused = count,
                        "connection cap reached: new connections are closed at once (see server.max_connections)"
                    );
                }
                drop(tcp);
                continue;
            };
            let accepted_at = Instant::now();
            let _ = tcp.set_nodelay(true);
            set_keepalive(&tcp);
            let local = tcp.local_addr().unwrap_or(remote);
            let connection = move |stream| {
                let activity = Arc::new(Activity::new());
                Connection {
                    listener: name,
                    stream,
                    remote,
                    local,
                    activity,
                    accepted: accepted_at,
                    limits,
                    timer: Box::pin(tokio::time::sleep_until(
                        (accepted_at + limits.header_timeout).into(),
                    )),
                    write_blocked: None,
                    expired: false,
                    _permit: permit,
                }
            };
            match &tls {
                None => {
                    if sender.send(connection(Stream::Plain(tcp))).await.is_err() {
                        return;
                    }
                }
                Some(acceptor) => {
                    let acceptor = acceptor.clone();
                    let sender = sender.clone();
                    tokio::spawn(async move {
                        match tokio::time::timeout(limits.header_timeout, acceptor.accept(tcp))
                            .await
                        {
                            Ok(Ok(stream)) => {
                                let _ =
                                    sender.send(connection(Stream::Tls(Box::new(stream)))).await;
                            }
                            Ok(Err(err)) => {
                                tracing::info!(%remote, error = %err, "TLS handshake refused")
                            }
                            Err(_) => tracing::info!(%remote, "TLS handshake timed out"),
                        }
                    });
                }
            }
        }
    });
    receiver
}

/// An axum listener over [`accept_loop`].
#[derive(Debug)]
pub struct Listener {
    pub connections: mpsc::Receiver<Connection>,
    pub local: SocketAddr,
}

impl axum::serve::Listener for Listener {
    type Io = Connection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.connections.recv().await {
            Some(connection) => {
                let remote = connection.remote;
                (connection, remote)
            }
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Keeps a request in flight on its connection until its response body has
/// been sent (or dropped): the connection is not idle meanwhile.
#[derive(Debug, Clone)]
pub struct Tracked<S> {
    inner: S,
    /// The connection's activity; `None`: taken from the request's
    /// [`ConnInfo`] (gRPC).
    activity: Option<Arc<Activity>>,
}

/// [`Tracked`] as a tower layer (gRPC: the activity comes with each request).
#[derive(Debug, Clone, Copy, Default)]
pub struct TrackLayer;

impl<S> tower::Layer<S> for TrackLayer {
    type Service = Tracked<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Tracked {
            inner,
            activity: None,
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for Tracked<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = http::Response<GuardedBody<R>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let activity = self.activity.clone().or_else(|| {
            let info = request.extensions().get::<ConnInfo>().cloned()?;
            // `Request::remote_addr` looks for the plain TCP info.
            request.extensions_mut().insert(info.tcp);
            Some(info.activity)
        });
        let guard = activity.as_ref().map(Activity::begin);
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| GuardedBody {
                inner: Box::pin(body),
                _guard: guard,
            }))
        })
    }
}

/// A response body that keeps its request in flight.
pub struct GuardedBody<B> {
    inner: Pin<Box<B>>,
    _guard: Option<RequestGuard>,
}

impl<B: HttpBody> HttpBody for GuardedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.inner.as_mut().poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The axum make-service: tracks each connection's requests.
#[derive(Debug, Clone)]
pub struct TrackedRouter(pub axum::Router);

type HttpService = tower::util::MapResponse<
    Tracked<axum::Router>,
    fn(http::Response<GuardedBody<axum::body::Body>>) -> axum::response::Response,
>;

fn to_axum_body(
    response: http::Response<GuardedBody<axum::body::Body>>,
) -> axum::response::Response {
    response.map(axum::body::Body::new)
}

impl<'a> tower::Service<axum::serve::IncomingStream<'a, Listener>> for TrackedRouter {
    type Response = HttpService;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, incoming: axum::serve::IncomingStream<'a, Listener>) -> Self::Future {
        let tracked = Tracked {
            inner: self.0.clone(),
            activity: Some(Arc::clone(incoming.io().activity())),
        };
        let map: fn(http::Response<GuardedBody<axum::body::Body>>) -> axum::response::Response =
            to_axum_body;
        std::future::ready(Ok(tower::util::MapResponse::new(tracked, map)))
    }
}
