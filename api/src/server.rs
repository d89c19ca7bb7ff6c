//! The HTTP server: the accept loop, a cap on open connections, and the timeouts that
//! keep a connection from being held without being used.
//!
//! - **Header timeout** (hyper's): a request's head must arrive whole within
//!   [`HttpLimits::header_timeout`] of the connection opening or of its previous response,
//!   so a half-sent head and an idle kept-alive connection are closed alike.
//! - **Body timeout**: a request's body must arrive whole within
//!   [`HttpLimits::body_timeout`] ([`crate::edge`] reads it before any handler runs).
//! - **Send timeout** ([`SendTimeout`]): a client that takes none of a response for
//!   [`HttpLimits::send_timeout`] is cut off, whatever the response (a file, an export,
//!   live events); the response's producer then sees it gone and stops.
//! - **Connection cap** ([`Connections`]): at most [`HttpLimits::max_connections`] are
//!   open, and at most [`HttpLimits::max_per_address`] from one client address. At a cap
//!   a new connection closes the one that has waited longest for its client (idle, still
//!   sending its head, or still sending its body; from the same address at the address's
//!   cap), so clients that send slowly or not at all cannot lock the others out: a health
//!   check always gets in. With every connection busy with a request the server is
//!   answering, the new one is closed at once: it never holds a descriptor.
//! - **Live event streams** hold their connection for as long as their client listens,
//!   so they are kept to a share of the cap ([`HttpLimits::max_streams`], and
//!   [`HttpLimits::streams_per_user`] per person; [`crate::slots`]).
//!
//! The cap is what keeps descriptors for ingestion and the database whatever clients do:
//! the binary raises the process's open-file limit at start and keeps the cap well under
//! it.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use bytes::Bytes;
use http_body::Frame;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{debug, warn};

/// How the server bounds connections (`[http]` in cityhub.toml).
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Connections open at once at most.
    pub max_connections: usize,
    /// A request's head must arrive whole within this of the connection opening or of the
    /// previous response.
    pub header_timeout: Duration,
    /// A request's body must arrive whole within this once its head has.
    pub body_timeout: Duration,
    /// A client that takes no byte of a response for this long is cut off.
    pub send_timeout: Duration,
    /// Connections open at once from one client address at most.
    pub max_per_address: usize,
    /// Live event streams open at once at most: each holds a connection for as long as
    /// its client listens, so they are kept to a share of [`HttpLimits::max_connections`].
    pub max_streams: usize,
    /// Live event streams open at once per person (their sessions and tokens together).
    pub streams_per_user: usize,
}

impl HttpLimits {
    /// The shares of live event streams ([`crate::slots`]); no share per tenant.
    pub fn stream_shares(&self) -> crate::slots::Shares {
        crate::slots::Shares {
            total: self.max_streams,
            per_user: self.streams_per_user,
            per_tenant: usize::MAX,
        }
    }
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            send_timeout: Duration::from_secs(60),
            max_per_address: 256,
            max_streams: 512,
            streams_per_user: 8,
        }
    }
}

/// How long open connections may finish their requests at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The connection metrics (`cityhub_api_connections*`).
#[derive(Clone, Default)]
pub struct ConnectionMetrics {
    open: Gauge,
    refused: Counter,
    evicted: Counter,
}

impl ConnectionMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "cityhub_api_connections",
            "HTTP connections open",
            self.open.clone(),
        );
        registry.register(
            "cityhub_api_connections_refused",
            "HTTP connections closed on arrival: the cap was reached and every open connection was busy",
            self.refused.clone(),
        );
        registry.register(
            "cityhub_api_connections_evicted",
            "Connections waiting for a request that were closed to make room at the cap",
            self.evicted.clone(),
        );
    }
}

/// One open connection, as the cap sees it.
struct Conn {
    address: IpAddr,
    /// Requests in flight: from the head read to the end of the response's body.
    busy: AtomicUsize,
    /// A request's head has arrived and its body is still coming: the connection waits
    /// for its client, as an idle one does.
    receiving: AtomicBool,
    /// When it last began to wait for its client (idle, or a body to arrive), in
    /// milliseconds since the server started.
    idle_since: AtomicU64,
    /// Cancelled to close it.
    close: CancellationToken,
    /// Close it with a reset: what is queued for the client is thrown away.
    reset: AtomicBool,
}

impl Conn {
    /// Waiting for its client rather than for the server: may be closed to make room.
    fn waiting(&self) -> bool {
        self.busy.load(Ordering::SeqCst) == 0 || self.receiving.load(Ordering::SeqCst)
    }
}

/// Told by the request's reader when the body has arrived whole (a request extension).
#[derive(Clone)]
pub struct BodyArrival(Arc<Conn>);

impl BodyArrival {
    /// The body is in: the request now waits for the server, not for its client.
    pub fn arrived(&self) {
        self.0.receiving.store(false, Ordering::SeqCst);
    }
}

/// Ends the request's connection at once (a request extension): a reset, so that what
/// the kernel still queues for the client is thrown away rather than sent. For an answer
/// that must not reach its client any further (an export whose caller lost access).
#[derive(Clone)]
pub struct Reset(Arc<Conn>);

impl Reset {
    pub fn now(&self) {
        self.0.reset.store(true, Ordering::SeqCst);
        self.0.close.cancel();
    }
}

/// The open connections and the caps on them.
pub struct Connections {
    limit: usize,
    per_address: usize,
    started: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
    metrics: ConnectionMetrics,
}

/// What the cap decided for a new connection.
struct Admitted {
    id: u64,
    conn: Arc<Conn>,
}

impl Connections {
    pub fn new(limit: usize, per_address: usize, metrics: ConnectionMetrics) -> Connections {
        Connections {
            limit: limit.max(1),
            per_address: per_address.max(1),
            started: Instant::now(),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        // Plain bookkeeping; a panic elsewhere leaves it usable.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a new connection from `address`. At the address's cap, the connection from
    /// that address that has waited longest for its client is closed to make room; at the
    /// server's cap, the one from any address. `None` when no connection can be closed:
    /// every one is busy with a request the server is answering.
    fn admit(&self, address: IpAddr) -> Option<Admitted> {
        let mut open = self.lock();
        let from_address = open.values().filter(|c| c.address == address).count();
        if from_address >= self.per_address {
            Self::evict(&mut open, |c| c.address == address)?;
            self.metrics.evicted.inc();
        } else if open.len() >= self.limit {
            Self::evict(&mut open, |_| true)?;
            self.metrics.evicted.inc();
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            address,
            busy: AtomicUsize::new(0),
            receiving: AtomicBool::new(false),
            idle_since: AtomicU64::new(self.now_ms()),
            close: CancellationToken::new(),
            reset: AtomicBool::new(false),
        });
        open.insert(id, conn.clone());
        self.metrics.open.set(open.len() as i64);
        Some(Admitted { id, conn })
    }

    /// Closes the connection among `which` that has waited longest for its client.
    fn evict(open: &mut HashMap<u64, Arc<Conn>>, which: impl Fn(&Conn) -> bool) -> Option<()> {
        let longest = open
            .iter()
            .filter(|(_, c)| which(c) && c.waiting())
            .min_by_key(|(_, c)| c.idle_since.load(Ordering::SeqCst))
            .map(|(id, _)| *id)?;
        open.remove(&longest)?.close.cancel();
        Some(())
    }

    fn remove(&self, id: u64) {
        let mut open = self.lock();
        open.remove(&id);
        self.metrics.open.set(open.len() as i64);
    }

    fn count(&self) -> usize {
        self.lock().len()
    }
}

/// A request in flight on a connection: the connection is busy until it is dropped (with
/// the response's body, once sent).
struct InFlight {
    conn: Arc<Conn>,
    connections: Arc<Connections>,
}

impl InFlight {
    fn start(conn: &Arc<Conn>, connections: &Arc<Connections>) -> InFlight {
        conn.idle_since
            .store(connections.now_ms(), Ordering::SeqCst);
        conn.receiving.store(true, Ordering::SeqCst);
        conn.busy.fetch_add(1, Ordering::SeqCst);
        InFlight {
            conn: conn.clone(),
            connections: connections.clone(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.conn
            .idle_since
            .store(self.connections.now_ms(), Ordering::SeqCst);
        self.conn.receiving.store(false, Ordering::SeqCst);
        self.conn.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that keeps its request in flight until it ends.
struct Tracked {
    inner: Body,
    _in_flight: InFlight,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A socket whose writes fail once they have made no progress for a while: a client that
/// stops reading cannot hold a response (and what produces it) forever.
pub struct SendTimeout<S> {
    inner: S,
    timeout: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> SendTimeout<S> {
    pub fn new(inner: S, timeout: Duration) -> SendTimeout<S> {
        SendTimeout {
            inner,
            timeout,
            stalled: None,
        }
    }

    /// The write made no progress: fails once it has made none for the timeout.
    fn stall<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let timeout = self.timeout;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client took none of the response for the send timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn progressed<T>(
        &mut self,
        result: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        match result {
            Poll::Pending => self.stall(cx),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SendTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SendTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.progressed(result, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.progressed(result, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        this.progressed(result, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Accepts connections on `listener` and serves `router` on each, until `shutdown`; then
/// lets open connections finish their requests for a while.
pub async fn run(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    metrics: ConnectionMetrics,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let connections = Arc::new(Connections::new(
        limits.max_connections,
        limits.max_per_address,
        metrics,
    ));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(error) => {
                // Out of descriptors (or a connection reset before it was taken): the
                // socket stays in the backlog; try again shortly rather than spin.
                warn!(message = "Cannot accept an HTTP connection.", %error);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(admitted) = connections.admit(peer.ip()) else {
            connections.metrics.refused.inc();
            debug!(message = "HTTP connection refused: every connection is busy.", %peer);
            drop(stream);
            continue;
        };
        tokio::spawn(serve_connection(
            stream,
            peer,
            admitted,
            connections.clone(),
            router.clone(),
            limits.clone(),
            shutdown.clone(),
        ));
    }
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while connections.count() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    admitted: Admitted,
    connections: Arc<Connections>,
    router: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    // A second handle on the socket, to reset it after hyper has let go of its own.
    let control = socket2::SockRef::from(&stream)
        .try_clone()
        .map_err(|error| debug!(message = "No handle to reset the connection with.", %error))
        .ok();
    let io = TokioIo::new(SendTimeout::new(stream, limits.send_timeout));
    let conn = admitted.conn.clone();
    let tracking = connections.clone();
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let in_flight = InFlight::start(&conn, &tracking);
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(peer));
        request.extensions_mut().insert(BodyArrival(conn.clone()));
        request.extensions_mut().insert(Reset(conn.clone()));
        let router = router.clone();
        async move {
            let response = router.oneshot(request).await?;
            Ok::<_, std::convert::Infallible>(response.map(|inner| {
                Body::new(Tracked {
                    inner,
                    _in_flight: in_flight,
                })
            }))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let served = builder.serve_connection(io, service);
    tokio::pin!(served);
    tokio::select! {
        result = served.as_mut() => {
            if let Err(error) = result {
                debug!(message = "HTTP connection ended.", %peer, %error);
            }
        }
        _ = admitted.conn.close.cancelled() => {
            debug!(message = "HTTP connection closed.", %peer);
        }
        _ = shutdown.cancelled() => {
            served.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, served.as_mut()).await;
        }
    }
    // However it ended (the answer may have been cut just before the reset was asked),
    // a connection to reset is closed with a zero linger: the socket sends a reset and
    // drops its queue when the last handle (hyper's or this one) goes, just below.
    if admitted.conn.reset.load(Ordering::SeqCst) {
        if let Some(socket) = &control {
            let _ = socket.set_linger(Some(Duration::ZERO));
        }
        debug!(message = "HTTP connection reset.", %peer);
    }
    connections.remove(admitted.id);
}

#[cfg(test)]
mod tests {
    use super::*;

    const HERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn at_the_cap_the_longest_idle_connection_makes_room_and_busy_ones_stay() {
        let c = Connections::new(3, 3, ConnectionMetrics::default());
        let a = c.admit(HERE).unwrap();
        let b = c.admit(HERE).unwrap();
        let d = c.admit(HERE).unwrap();
        a.conn.busy.store(1, Ordering::SeqCst);
        b.conn.idle_since.store(5, Ordering::SeqCst);
        d.conn.idle_since.store(9, Ordering::SeqCst);
        let e = c.admit(HERE).expect("room made");
        assert!(b.conn.close.is_cancelled(), "the longest idle is closed");
        assert!(!a.conn.close.is_cancelled() && !d.conn.close.is_cancelled());
        assert_eq!(c.count(), 3);
        for x in [&d, &e] {
            x.conn.busy.store(1, Ordering::SeqCst);
        }
        assert!(c.admit(HERE).is_none(), "every connection busy: refused");
        c.remove(a.id);
        assert!(c.admit(HERE).is_some());
    }

    #[test]
    fn a_connection_still_sending_its_body_makes_room_and_one_being_answered_stays() {
        let c = Arc::new(Connections::new(2, 2, ConnectionMetrics::default()));
        let slow = c.admit(HERE).unwrap();
        let answered = c.admit(HERE).unwrap();
        let _slow_request = InFlight::start(&slow.conn, &c);
        let _answered_request = InFlight::start(&answered.conn, &c);
        BodyArrival(answered.conn.clone()).arrived();
        assert!(c.admit(HERE).is_some(), "the slow body made room");
        assert!(slow.conn.close.is_cancelled());
        assert!(!answered.conn.close.is_cancelled());
    }

    #[test]
    fn one_address_cannot_take_every_connection() {
        let c = Connections::new(4, 2, ConnectionMetrics::default());
        let other: IpAddr = "192.0.2.1".parse().unwrap();
        let mine: Vec<_> = (0..2).map(|_| c.admit(other).unwrap()).collect();
        for m in &mine {
            m.conn.busy.store(1, Ordering::SeqCst);
        }
        assert!(c.admit(other).is_none(), "its own busy ones are not closed");
        let theirs = c.admit(HERE).unwrap();
        assert_eq!(c.count(), 3);
        assert!(!theirs.conn.close.is_cancelled());
        mine[0].conn.busy.store(0, Ordering::SeqCst);
        assert!(c.admit(other).is_some(), "its own idle one made room");
        assert!(mine[0].conn.close.is_cancelled());
        assert_eq!(c.count(), 3, "still two from that address");
    }
}
