//! The accept loop: TLS handshakes, HTTP/1.1 or h2 by ALPN, and the per-connection
//! [`ConnectionInfo`] every request carries as an extension.

use super::connection::ConnectionInfo;
use super::linger::Lingering;
use axum::{Extension, Router};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Default largest request head: 16 KiB, what nginx allows by default (4 x 8 KiB buffers
/// minus its line limit) and ample for every request of this house.
pub const DEFAULT_MAX_HEAD: usize = 16 * 1024;

/// Timeouts and limits of the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// Longest TLS handshake.
    pub handshake_timeout: Duration,
    /// Longest wait for a complete HTTP/1.1 request head.
    pub header_read_timeout: Duration,
    /// Largest request head (request line and header fields): HTTP/1.1 answers 431 beyond it
    /// (RFC 6585 §5), HTTP/2 bounds the decoded header list (RFC 9113 §6.5.2,
    /// SETTINGS_MAX_HEADER_LIST_SIZE) to the same.
    pub max_head: usize,
    /// Longest wait from the end of the TLS handshake to the first byte of a request.
    pub first_byte_timeout: Duration,
    /// Most connections open at once; past it, new connections wait in the listen backlog
    /// and the ones already open keep working. 0: three quarters of the process's open-file
    /// limit (the rest is for the store, logs and outbound connections).
    pub max_connections: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            max_head: DEFAULT_MAX_HEAD,
            first_byte_timeout: Duration::from_secs(10),
            max_connections: 0,
        }
    }
}

/// Accepts TLS connections on `listener` and serves `router` on each (HTTP/1.1 or h2 by ALPN),
/// inserting the connection's [`ConnectionInfo`] into every request. Runs until the task is
/// dropped; accept errors are logged and retried.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
) -> std::io::Result<()> {
    serve_with(listener, tls, router, ServeOptions::default()).await
}

/// [`serve`] with explicit timeouts.
pub async fn serve_with(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    opts: ServeOptions,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let slots = Arc::new(tokio::sync::Semaphore::new(connection_cap(opts.max_connections)));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { return Ok(()) };
        let (tcp, remote) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Small request/response exchanges: without TCP_NODELAY, Nagle's algorithm and delayed
        // ACKs add ~40 ms stalls to every keep-alive exchange.
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            serve_connection(acceptor, tcp, remote, router, opts).await;
            drop(slot);
        });
    }
}

/// One connection: the TLS handshake within its timeout, then HTTP/1.1 or h2 by ALPN with the
/// head limits, the first-byte deadline and a lingering close.
async fn serve_connection(
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: tokio::net::TcpStream,
    remote: SocketAddr,
    router: Router,
    opts: ServeOptions,
) {
    let stream = match tokio::time::timeout(opts.handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%remote, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%remote, "TLS handshake timed out");
            return;
        }
    };
    let info = Arc::new(ConnectionInfo::from_connection(stream.get_ref().1, Some(remote)));
    let svc = TowerToHyperService::new(router.layer(Extension(info)));
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // Conventional header capitalization (Content-Type, Retry-After): strict HTTP/1.1
    // parsers in deployed EST clients (libest) compare header names case-sensitively; the one
    // name title case misspells (`WWW-Authenticate`) is corrected as it is written (`spelling`).
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout)
        .max_buf_size(opts.max_head.max(8192))
        .title_case_headers(true);
    builder
        .http2()
        .max_header_list_size(u32::try_from(opts.max_head).unwrap_or(u32::MAX))
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    let io = TokioIo::new(Lingering::new(stream, opts.first_byte_timeout));
    if let Err(e) = builder.serve_connection(io, svc).await {
        tracing::debug!(%remote, error = %e, "connection ended with an error");
    }
}

/// The connection cap: `configured`, or three quarters of the soft open-file limit
/// (`/proc/self/limits`; 768 when it cannot be read).
fn connection_cap(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    let soft = std::fs::read_to_string("/proc/self/limits").ok().and_then(|text| {
        let line = text.lines().find(|l| l.starts_with("Max open files"))?;
        line["Max open files".len()..].split_whitespace().next()?.parse::<usize>().ok()
    });
    (soft.unwrap_or(1024) / 4 * 3).max(16)
}
