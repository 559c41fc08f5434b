//! Accepting connections with bounds, so that slow or abusive clients cannot starve the
//! server: a cap on open connections (kept under the descriptor limit; when full, the
//! oldest connection with no request in flight is closed to make room), a deadline for a
//! request's headers, a deadline for a connection that sits idle, and TLS handshakes under
//! the same header deadline. Body deadlines and the up-front 413 live with the body
//! extractor and the middleware in `lib.rs`.
//!
//! hyper's own server loop (`axum::serve`) has no connection cap nor idle deadline, hence
//! this small accept loop over `hyper_util`'s connection builder.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::time::Instant;
use tower::ServiceExt;

/// Bounds on connections and requests (`ductape server --max-connections ...`).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// A request's headers must arrive within this (HTTP/1.1 also closes a keep-alive
    /// connection that waits this long for its next request); so must a TLS handshake and
    /// a new connection's first request.
    pub header_timeout: Duration,
    /// A request's body must arrive within this.
    pub body_timeout: Duration,
    /// A connection with no request in flight for this long is closed (HTTP/2).
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: default_max_connections(),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Connections accepted above the cap while evicted ones finish closing.
const EVICTION_SLACK: usize = 64;

/// Descriptors kept free for everything else: database files and connections, the log,
/// the blocking pool.
const FD_HEADROOM: u64 = 256 + EVICTION_SLACK as u64;

/// Raises the soft descriptor limit to the hard one and returns a connection cap with
/// headroom under it.
pub fn default_max_connections() -> usize {
    let limit = raise_fd_limit();
    limit.saturating_sub(FD_HEADROOM).clamp(16, 1 << 20) as usize
}

#[cfg(unix)]
#[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every unix
fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit write and read the struct we pass; nothing else.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        let want = if lim.rlim_max == libc::RLIM_INFINITY {
            1 << 20
        } else {
            lim.rlim_max
        };
        if want > lim.rlim_cur {
            let raised = libc::rlimit {
                rlim_cur: want,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return want as u64;
            }
        }
        lim.rlim_cur as u64
    }
}

#[cfg(not(unix))]
fn raise_fd_limit() -> u64 {
    8192
}

/// Binds a listener with a deep accept backlog (4096, or the kernel's `somaxconn` if
/// lower), so that a burst of connections is queued rather than dropped.
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// One open connection, as the accept loop and its watchdog see it.
struct Conn {
    in_flight: AtomicUsize,
    /// Milliseconds since `epoch` of the last request start or end.
    last_active_ms: AtomicU64,
    /// Whether a request ever arrived (before that, the header deadline applies).
    served: AtomicBool,
    /// Set once the connection was chosen to make room (it closes shortly).
    evicted: AtomicBool,
    evict: Notify,
}

struct Registry {
    epoch: Instant,
    next_id: AtomicU64,
    conns: Mutex<BTreeMap<u64, Arc<Conn>>>,
    slots: Arc<Semaphore>,
}

impl Registry {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn register(self: &Arc<Self>) -> (u64, Arc<Conn>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            in_flight: AtomicUsize::new(0),
            last_active_ms: AtomicU64::new(self.now_ms()),
            served: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
        });
        self.lock().insert(id, conn.clone());
        (id, conn)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Closes the oldest connection with no request in flight (a slow or idle one) that is
    /// not already closing; `false` if every connection is busy.
    fn evict_oldest_idle(&self) -> bool {
        let conns = self.lock();
        let victim = conns.values().find(|c| {
            c.in_flight.load(Ordering::Acquire) == 0 && !c.evicted.load(Ordering::Acquire)
        });
        match victim {
            Some(c) => {
                c.evicted.store(true, Ordering::Release);
                c.evict.notify_one();
                true
            }
            None => false,
        }
    }

    fn open(&self) -> usize {
        self.lock().len()
    }
}

/// Counts a request in flight on its connection for as long as it lives.
struct Busy {
    conn: Arc<Conn>,
    registry: Arc<Registry>,
}

impl Busy {
    fn start(conn: Arc<Conn>, registry: Arc<Registry>) -> Busy {
        conn.in_flight.fetch_add(1, Ordering::AcqRel);
        conn.served.store(true, Ordering::Release);
        conn.last_active_ms
            .store(registry.now_ms(), Ordering::Release);
        Busy { conn, registry }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.conn
            .last_active_ms
            .store(self.registry.now_ms(), Ordering::Release);
        self.conn.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves `app` on `listener` (HTTPS when `tls` is given) within `limits`, until
/// `shutdown` resolves; then stops accepting and gives open requests 10 s to finish.
pub async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let registry = Arc::new(Registry {
        epoch: Instant::now(),
        next_id: AtomicU64::new(0),
        conns: Mutex::new(BTreeMap::new()),
        // A little room above the cap, so that accepting never waits for an evicted
        // connection to finish closing (a waiting accept lets the backlog overflow, and a
        // dropped SYN costs a good client a second).
        slots: Arc::new(Semaphore::new(limits.max_connections + EVICTION_SLACK)),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let limits = Arc::new(limits);
    tokio::pin!(shutdown);
    loop {
        // A slot first: when even the slack is taken, make room by closing the oldest idle
        // connection (slowloris clients never get a request in flight), else wait.
        let permit = match registry.slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                registry.evict_oldest_idle();
                tokio::select! {
                    p = registry.slots.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    _ = &mut shutdown => break,
                }
            }
        };
        let (stream, _peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: never spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        // At the cap, the newcomer is served and the oldest idle connection makes room.
        if registry.open() >= limits.max_connections {
            registry.evict_oldest_idle();
        }
        let (id, conn) = registry.register();
        let (registry, app, limits, tls, stop) = (
            registry.clone(),
            app.clone(),
            limits.clone(),
            tls.clone(),
            stop_rx.clone(),
        );
        tokio::spawn(crate::self_wake::Rewoken::new(async move {
            match tls {
                None => serve_conn(stream, app, &limits, &registry, conn, stop).await,
                Some(acceptor) => {
                    let handshake = tokio::select! {
                        r = tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)) => r,
                        _ = conn.evict.notified() => Ok(Err(std::io::ErrorKind::TimedOut.into())),
                    };
                    if let Ok(Ok(stream)) = handshake {
                        serve_conn(stream, app, &limits, &registry, conn, stop).await;
                    }
                }
            }
            registry.lock().remove(&id);
            drop(permit);
        }));
    }
    // Stop accepting; let open connections finish their requests.
    drop(listener);
    let _ = stop_tx.send(true);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !registry.lock().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn serve_conn<I>(
    io: I,
    app: Router,
    limits: &Limits,
    registry: &Arc<Registry>,
    conn: Arc<Conn>,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (c, r) = (conn.clone(), registry.clone());
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let busy = Busy::start(c.clone(), r.clone());
        let app = app.clone();
        async move {
            let resp = app.oneshot(req.map(axum::body::Body::new)).await;
            drop(busy);
            resp
        }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(limits.header_timeout);
    let io = crate::protocol_errors::JsonProtocolErrors::new(io);
    let served = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(served);
    tokio::select! {
        _ = served.as_mut() => {}
        _ = conn.evict.notified() => {}
        _ = idle(&conn, registry, limits) => {}
        _ = async { let _ = stop.wait_for(|s| *s).await.map(|_| ()); } => {
            served.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(10), served.as_mut()).await;
        }
    }
}

/// Resolves when the connection has had no request in flight for too long: the header
/// deadline before its first request, the idle deadline after.
async fn idle(conn: &Conn, registry: &Registry, limits: &Limits) {
    loop {
        let allowed = if conn.served.load(Ordering::Acquire) {
            limits.idle_timeout
        } else {
            limits.header_timeout
        };
        let last = conn.last_active_ms.load(Ordering::Acquire);
        let idle_for = Duration::from_millis(registry.now_ms().saturating_sub(last));
        if conn.in_flight.load(Ordering::Acquire) == 0 && idle_for >= allowed {
            return;
        }
        let wait = allowed
            .saturating_sub(idle_for)
            .max(Duration::from_millis(100));
        tokio::time::sleep(wait).await;
    }
}

/// A TLS acceptor for the PEM certificate chain and private key at these paths, offering
/// HTTP/2 and HTTP/1.1.
pub fn tls_acceptor(
    cert_pem: &std::path::Path,
    key_pem: &std::path::Path,
) -> std::io::Result<tokio_rustls::TlsAcceptor> {
    let invalid = |what: &str, e: &dyn std::fmt::Display| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{what}: {e}"))
    };
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(std::fs::File::open(cert_pem)?))
        .collect::<Result<Vec<_>, _>>()?;
    let key =
        rustls_pemfile::private_key(&mut std::io::BufReader::new(std::fs::File::open(key_pem)?))?
            .ok_or_else(|| invalid("no private key in the file", &key_pem.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("TLS setup failed", &e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| invalid("invalid TLS certificate or key", &e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
