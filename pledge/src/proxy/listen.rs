//! The Agent API's listeners (`docs/agent-api.md`): the Unix socket (mode 0660, optional
//! group, a stale socket replaced, a live one never), and loopback TCP only when asked; one
//! task per connection up to a limit, HTTP/1.1 with a header timeout and a connection time
//! limit, one log line per request naming the caller.

use super::agent_api::{router, Outcome};
use super::peer::Peer;
use super::{Proxy, ProxyError};
use axum::body::Body;
use axum::http::Request;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// Longest wait for a request's headers.
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest life of one connection.
pub(crate) const CONNECTION_TIMEOUT: Duration = Duration::from_secs(300);

/// Binds the Agent API socket at `path`: a stale socket left by a dead proxy is replaced, a
/// live one is not; the socket gets mode 0660 and, when given, `group` (name or gid).
pub(crate) fn bind_unix(path: &Path, group: Option<&str>) -> Result<UnixListener, ProxyError> {
    let io = |what: String| move |source| ProxyError::Io { what, source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            return Err(ProxyError::Config(format!("{} exists and is not a socket", path.display())));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ProxyError::Config(format!(
                "{}: another process is serving this socket",
                path.display()
            )));
        }
        std::fs::remove_file(path).map_err(io(format!("removing the stale socket {}", path.display())))?;
    }
    let listener = UnixListener::bind(path).map_err(io(format!("binding {}", path.display())))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(io(format!("chmod 0660 {}", path.display())))?;
    if let Some(g) = group {
        let gid = resolve_group(g)?;
        std::os::unix::fs::chown(path, None, Some(gid))
            .map_err(io(format!("chgrp {g} {}", path.display())))?;
    }
    Ok(listener)
}

/// A group name (from /etc/group) or number.
pub(crate) fn resolve_group(group: &str) -> Result<u32, ProxyError> {
    if let Ok(n) = group.parse::<u32>() {
        return Ok(n);
    }
    let text = std::fs::read_to_string("/etc/group")
        .map_err(|source| ProxyError::Io { what: "reading /etc/group".into(), source })?;
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let gid = f.nth(1)?.parse::<u32>().ok()?;
            (name == group).then_some(gid)
        })
        .next()
        .ok_or_else(|| ProxyError::Config(format!("--socket-group {group}: no such group")))
}

/// Serves the Agent API on a Unix socket: one task per connection, at most as many as
/// `limit` has permits; each request carries the peer's `SO_PEERCRED`.
pub(crate) async fn serve_unix(proxy: Arc<Proxy>, listener: UnixListener, limit: Arc<Semaphore>) {
    let app = router(proxy);
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else { return };
        match listener.accept().await {
            Ok((stream, _)) => {
                let peer = Peer::of_unix(&stream);
                let app = app.clone();
                tokio::spawn(async move {
                    serve_connection(app, stream, peer).await;
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "Agent API accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Serves the Agent API on a loopback TCP listener (callers have no uid or pid).
pub(crate) async fn serve_tcp(proxy: Arc<Proxy>, listener: TcpListener, limit: Arc<Semaphore>) {
    let app = router(proxy);
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else { return };
        match listener.accept().await {
            Ok((stream, addr)) if addr.ip().is_loopback() => {
                let app = app.clone();
                tokio::spawn(async move {
                    serve_connection(app, stream, Peer::default()).await;
                    drop(permit);
                });
            }
            Ok((_, addr)) => {
                tracing::warn!(%addr, "Agent API: refused a connection from a non-loopback address")
            }
            Err(e) => {
                tracing::warn!(error = %e, "Agent API accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Serves one connection with HTTP/1.1 (keep-alive), logging each request with its caller.
pub(crate) async fn serve_connection<I>(app: Router, io: I, peer: Peer)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
        let app = app.clone();
        async move {
            let started = Instant::now();
            let method = req.method().clone();
            let path = req.uri().path().to_string();
            req.extensions_mut().insert(peer);
            let resp = match app.oneshot(req.map(Body::new)).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            let outcome = resp.extensions().get::<Outcome>().map(|o| o.0.clone()).unwrap_or_default();
            tracing::info!(
                uid = ?peer.uid,
                pid = ?peer.pid,
                %method,
                %path,
                status = resp.status().as_u16(),
                %outcome,
                ms = started.elapsed().as_millis() as u64,
                "agent api"
            );
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(io), svc);
    match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, caller = %peer.describe(), "Agent API connection ended"),
        Err(_) => {
            tracing::debug!(caller = %peer.describe(), "Agent API connection closed after its time limit")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_by_number_or_name() {
        assert_eq!(resolve_group("4242").unwrap(), 4242);
        assert_eq!(resolve_group("root").unwrap(), 0);
        assert!(resolve_group("no-such-group-here").is_err());
    }

    #[test]
    fn stale_sockets_are_replaced_and_live_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/agent.sock");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let live = bind_unix(&path, None).unwrap();
            assert!(matches!(bind_unix(&path, None), Err(ProxyError::Config(_))));
            drop(live);
            // The file stays behind a dead listener: it is replaced.
            assert!(path.exists());
            bind_unix(&path, None).unwrap();
            let plain = dir.path().join("file");
            std::fs::write(&plain, "x").unwrap();
            assert!(matches!(bind_unix(&plain, None), Err(ProxyError::Config(_))));
        });
    }
}
