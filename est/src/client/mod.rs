//! The EST client (RFC 7030 §4 from the client side): one TLS connection per
//! [`EstConnection`], reused for several requests (keep-alive; HTTP/1.1, or HTTP/2 when a
//! caller-supplied TLS configuration offers it), with the connection's tls-exporter available
//! for channel binding in the CSR.
//!
//! Layout (each module imports only those above it):
//!
//! * this file: [`EstClient`] (where and how to connect), [`ClientError`], [`Enrollment`];
//! * `connection`: [`EstConnection`], one request/response at a time under the client's
//!   timeout, and [`RawReply`] for the other protocols on the same connection (BRSKI, agents);
//! * `operations`: the RFC 7030 §4 operations on a connection (`cacerts`, `csrattrs`,
//!   `simpleenroll`, `simplereenroll`, `serverkeygen`);
//! * `pool`: [`PooledClient`], the one pool of idle keep-alive connections every long-lived
//!   client of the house uses (the registrar's MASA link, the Identity Proxy's upstream).

mod connection;
mod operations;
mod pool;

pub use connection::{EstConnection, RawReply};
pub use pool::PooledClient;
pub use shared::idle::IdleRules;

use crate::binding::EXPORTER_LABEL;
use crate::keypackage::KeyPackageError;
use crate::tls::SeenServerCert;
use crate::wire::WireError;
use connection::Sender;
use hyper::header::HeaderValue;
use hyper::{StatusCode, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use std::sync::Arc;
use std::time::Duration;
use x509_cert::Certificate;

/// Why an EST exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server URL is not usable.
    #[error("server URL '{0}': expected https://host[:port]")]
    Url(String),
    /// TCP or TLS connection failed.
    #[error("connecting to {addr}: {detail}")]
    Connect {
        /// host:port.
        addr: String,
        /// What went wrong.
        detail: String,
    },
    /// No answer in time.
    #[error("{0} timed out")]
    Timeout(&'static str),
    /// HTTP transport error.
    #[error("HTTP: {0}")]
    Http(String),
    /// The server refused the request.
    #[error("server answered {status}: {detail}")]
    Status {
        /// HTTP status.
        status: StatusCode,
        /// The problem detail or body text.
        detail: String,
    },
    /// The response could not be read.
    #[error("{0}")]
    Wire(#[from] WireError),
    /// A response of an unexpected shape.
    #[error("unexpected response: {0}")]
    Unexpected(String),
    /// The encrypted server-generated key could not be decrypted or verified.
    #[error("{0}")]
    KeyPackage(#[from] KeyPackageError),
}

/// The outcome of an enrollment request.
#[derive(Debug, Clone)]
pub enum Enrollment<T> {
    /// Issued now.
    Done(T),
    /// Accepted for later (202): retry the same request after this long.
    Pending {
        /// The server's Retry-After.
        retry_after: Duration,
    },
}

impl<T> Enrollment<T> {
    /// Transforms the issued value, keeping a pending answer as it is.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Enrollment<U> {
        match self {
            Enrollment::Done(t) => Enrollment::Done(f(t)),
            Enrollment::Pending { retry_after } => Enrollment::Pending { retry_after },
        }
    }
}

/// A server-generated key and its certificate (serverkeygen).
#[derive(Debug, Clone)]
pub struct ServerKey {
    /// PKCS#8 DER of the private key.
    pub pkcs8: Vec<u8>,
    /// The certificate(s) from the certs-only part, issued certificate first.
    pub certs: Vec<Certificate>,
}

/// Where and how to reach an EST server.
#[derive(Clone)]
pub struct EstClient {
    host: String,
    port: u16,
    base_path: String,
    tls: Arc<ClientConfig>,
    seen: Arc<SeenServerCert>,
    basic: Option<HeaderValue>,
    timeout: Duration,
}

impl EstClient {
    /// A client for `server` (`https://host[:port]`), optionally under CA `label`.
    pub fn new(
        server: &str,
        label: Option<&str>,
        tls: (Arc<ClientConfig>, Arc<SeenServerCert>),
    ) -> Result<Self, ClientError> {
        let uri: Uri = server.parse().map_err(|_| ClientError::Url(server.into()))?;
        if uri.scheme_str() != Some("https") {
            return Err(ClientError::Url(server.into()));
        }
        let host =
            uri.host().ok_or_else(|| ClientError::Url(server.into()))?.trim_matches(['[', ']']).to_string();
        let base_path = match label.filter(|l| !l.is_empty()) {
            Some(l) => format!("/.well-known/est/{l}"),
            None => "/.well-known/est".to_string(),
        };
        Ok(EstClient {
            host,
            port: uri.port_u16().unwrap_or(443),
            base_path,
            tls: tls.0,
            seen: tls.1,
            basic: None,
            timeout: Duration::from_secs(30),
        })
    }

    /// Adds HTTP Basic credentials to every request.
    pub fn with_basic(mut self, user: &str, password: &str) -> Self {
        let token = shared::b64::encode(format!("{user}:{password}").as_bytes());
        self.basic = HeaderValue::from_str(&format!("Basic {token}")).ok();
        self
    }

    /// Sets the per-step timeout (connect, handshake, each request); default 30 s.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// SHA-256 of the server certificate seen on the last handshake (for bootstrap display).
    pub fn server_fingerprint(&self) -> Option<[u8; 32]> {
        self.seen.sha256()
    }

    /// The server certificate seen on the last handshake.
    pub fn server_certificate(&self) -> Option<Certificate> {
        shared::pki::cert_from_der(&self.seen.der()?).ok()
    }

    /// Opens one TLS connection; requests on it share the TLS session (and its exporter).
    pub async fn connect(&self) -> Result<EstConnection, ClientError> {
        let addr = format!("{}:{}", self.host, self.port);
        let cerr = |detail: String| ClientError::Connect { addr: addr.clone(), detail };
        let tcp = tokio::time::timeout(
            self.timeout,
            tokio::net::TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| ClientError::Timeout("TCP connect"))?
        .map_err(|e| cerr(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(self.host.clone()).map_err(|e| cerr(e.to_string()))?;
        let tls = tokio::time::timeout(
            self.timeout,
            tokio_rustls::TlsConnector::from(self.tls.clone()).connect(name, tcp),
        )
        .await
        .map_err(|_| ClientError::Timeout("TLS handshake"))?
        .map_err(|e| cerr(e.to_string()))?;
        let conn = tls.get_ref().1;
        let exporter = conn.export_keying_material([0u8; 32], EXPORTER_LABEL, None).ok().map(|k| k.to_vec());
        let server_chain = conn
            .peer_certificates()
            .unwrap_or_default()
            .iter()
            .filter_map(|c| shared::pki::cert_from_der(c.as_ref()).ok())
            .collect();
        let h2 = conn.alpn_protocol() == Some(b"h2");
        let sender = if h2 {
            let (tx, c) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .map_err(|e| cerr(e.to_string()))?;
            tokio::spawn(c);
            Sender::H2(tx)
        } else {
            let (tx, c) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| cerr(e.to_string()))?;
            tokio::spawn(c);
            Sender::H1(tx)
        };
        Ok(EstConnection::new(sender, exporter, server_chain, self.clone()))
    }
}

/// The human-readable part of an error body: an RFC 9457 `detail`/`title`, or the text.
fn problem_detail(content_type: &str, body: &[u8]) -> String {
    if content_type.starts_with(crate::http::MEDIA_PROBLEM) {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
            if let Some(d) = v.get("detail").or_else(|| v.get("title")).and_then(|d| d.as_str()) {
                return d.to_string();
            }
        }
    }
    String::from_utf8_lossy(&body[..body.len().min(300)]).trim().to_string()
}

/// Parses Retry-After: delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(std::time::SystemTime::now()).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests;
