//! The registrar's side of BRSKI-MASA (RFC 8995 §5.4): [`MasaClient`] posts a registrar
//! voucher-request to `requestvoucher` or `requestauditlog` over HTTPS. The MASA's TLS
//! certificate must chain to the given anchors and match the URL's host (DNS-ID or IP, checked
//! by webpki); SNI is sent for DNS names; the registrar's client certificate is presented when
//! given. Connections (HTTP/2 or HTTP/1.1 by ALPN) are kept alive and reused by later calls of
//! the same client and its clones: a registrar keeps one client per MASA, so a bootstrap does
//! not pay for new TLS handshakes to the MASA. Every exchange runs under a timeout.

use axum::http::StatusCode;
use est::client::{ClientError, EstClient, IdleRules, PooledClient, RawReply};
use est::tls::{client_config, ServerTrust};
use shared::brski::{masa_base_url, AuditLog};
use shared::keys::Signer;
use shared::signed::Format;
use std::sync::Arc;
use std::time::Duration;
use x509_cert::Certificate;

/// Default per-step timeout (connect, handshake, request).
pub(super) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Idle connections a client keeps for reuse, and for how long (the one pool's rules).
const POOL: IdleRules = IdleRules { max_idle: 16, max_idle_age: Duration::from_secs(20) };

/// Why a MASA exchange failed before an HTTP answer arrived, or the answer was unusable.
#[derive(Debug, thiserror::Error)]
pub enum MasaClientError {
    /// The MASA URL is not usable.
    #[error("MASA URL '{0}': expected https://host[:port][/path] or host[:port]")]
    Url(String),
    /// The TLS configuration could not be built.
    #[error("TLS setup: {0}")]
    Tls(String),
    /// Connecting, the TLS handshake or the HTTP exchange failed.
    #[error(transparent)]
    Transport(#[from] ClientError),
    /// The MASA refused (a non-200 answer where one was required).
    #[error("MASA answered {status}: {reason}")]
    Refused {
        /// HTTP status.
        status: StatusCode,
        /// The MASA's reason (problem detail or plain text).
        reason: String,
    },
    /// A 200 answer that is not what was asked for.
    #[error("unexpected MASA answer: {0}")]
    Unexpected(String),
}

/// The MASA's answer to a voucher request.
#[derive(Debug, Clone)]
pub struct MasaReply {
    /// HTTP status.
    pub status: StatusCode,
    /// Content-Type (lower-cased), empty when absent.
    pub content_type: String,
    /// The body as received: the signed voucher on 200.
    pub body: Vec<u8>,
    /// The MASA's reason on an error status (RFC 9457 detail or the plain-text body).
    pub reason: Option<String>,
}

impl MasaReply {
    /// Whether the MASA issued a voucher (200 with a voucher media type).
    pub fn is_voucher(&self) -> bool {
        self.status == StatusCode::OK && self.format().is_some()
    }

    /// The voucher format of the answer, from its Content-Type (parameters ignored; the alias
    /// `application/voucher-cose+cbor` some MASAs send is read as COSE).
    pub fn format(&self) -> Option<Format> {
        shared::brski::media::format_of(&self.content_type)
    }
}

/// An HTTPS client of one MASA. Clones share the TLS configuration (and its session cache)
/// and the idle keep-alive connections.
#[derive(Clone)]
pub struct MasaClient {
    pool: Arc<PooledClient>,
    base_path: String,
}

impl std::fmt::Debug for MasaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasaClient({})", self.base_path)
    }
}

impl MasaClient {
    /// A client for the MASA at `base_url` (`https://host:port/.well-known/brski`, or an
    /// id-pe-masa-url value such as `host:port`, which means that URL; the scheme is always
    /// https). `anchors` are trusted for the MASA's TLS certificate; `identity` is the
    /// registrar's client certificate chain and key.
    pub fn new(
        base_url: &str,
        anchors: Vec<Certificate>,
        identity: Option<(Vec<Certificate>, Arc<dyn Signer>)>,
    ) -> Result<Self, MasaClientError> {
        let url = masa_base_url(base_url.trim());
        let uri: axum::http::Uri = url.parse().map_err(|_| MasaClientError::Url(base_url.into()))?;
        if uri.host().is_none_or(str::is_empty) {
            return Err(MasaClientError::Url(base_url.into()));
        }
        let tls = client_config(&ServerTrust::Explicit(anchors), identity)
            .map_err(|e| MasaClientError::Tls(e.to_string()))?;
        let est = EstClient::new(&url, None, tls).map_err(|_| MasaClientError::Url(base_url.into()))?;
        let base_path = uri.path().trim_end_matches('/').to_string();
        let pool = Arc::new(PooledClient::new(est.with_timeout(DEFAULT_TIMEOUT), POOL));
        Ok(MasaClient { pool, base_path })
    }

    /// Sets the per-step timeout (connect, handshake, request); default 30 s.
    pub fn with_timeout(self, timeout: Duration) -> Self {
        let pool = Arc::new(PooledClient::new(self.pool.client().with_timeout(timeout), POOL));
        MasaClient { pool, ..self }
    }

    /// POSTs a registrar voucher-request in `format`, asking for a voucher in one of `accept`
    /// (the request's format when empty); problem JSON is accepted for errors. Any HTTP answer
    /// is a [`MasaReply`]; only transport failures are errors.
    pub async fn request_voucher(
        &self,
        rvr: &[u8],
        format: Format,
        accept: &[Format],
    ) -> Result<MasaReply, MasaClientError> {
        let mut types: Vec<&str> = accept.iter().map(|f| f.media_type()).collect();
        if types.is_empty() {
            types.push(format.media_type());
        }
        types.push(est::http::MEDIA_PROBLEM);
        self.post("requestvoucher", format.media_type(), &types.join(", "), rvr.to_vec()).await
    }

    /// POSTs a registrar voucher-request to `requestauditlog` and parses the audit log.
    pub async fn request_audit_log(&self, rvr: &[u8], format: Format) -> Result<AuditLog, MasaClientError> {
        let accept = format!("application/json, {}", est::http::MEDIA_PROBLEM);
        let reply = self.post("requestauditlog", format.media_type(), &accept, rvr.to_vec()).await?;
        if reply.status != StatusCode::OK {
            let reason = reply.reason.unwrap_or_default();
            return Err(MasaClientError::Refused { status: reply.status, reason });
        }
        AuditLog::from_json(&reply.body).map_err(|e| MasaClientError::Unexpected(e.to_string()))
    }

    /// POSTs `body` to the BRSKI `resource` (e.g. `requestvoucher`) with the given
    /// Content-Type and Accept: the building block of the calls above, for diagnostics and
    /// tests. Kept-alive connections are reused by the rules of [`PooledClient`].
    pub async fn post(
        &self,
        resource: &str,
        content_type: &str,
        accept: &str,
        body: Vec<u8>,
    ) -> Result<MasaReply, MasaClientError> {
        let path = format!("{}/{resource}", self.base_path);
        Ok(reply(self.pool.post_raw(&path, content_type, Some(accept), &body).await?))
    }

    /// Idle connections kept for reuse (for tests and diagnostics).
    pub fn idle_connections(&self) -> usize {
        self.pool.idle_connections()
    }
}

fn reply(raw: RawReply) -> MasaReply {
    let reason = (raw.status != StatusCode::OK).then(|| raw.detail());
    MasaReply { status: raw.status, content_type: raw.content_type, body: raw.body.to_vec(), reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchor() -> Vec<Certificate> {
        let key = shared::keys::SoftwareKey::generate(shared::keys::Algorithm::Es256).unwrap();
        vec![shared::pki::create_ca("CN=t", &key, Duration::from_secs(3600), None).unwrap()]
    }

    #[test]
    fn urls() {
        let c = MasaClient::new("masa.example:9443", anchor(), None).unwrap();
        assert_eq!(c.base_path, "/.well-known/brski");
        let c = MasaClient::new("https://127.0.0.1:9443/.well-known/brski/", anchor(), None).unwrap();
        assert_eq!(c.base_path, "/.well-known/brski");
        assert!(MasaClient::new("", anchor(), None).is_err());
    }
}
