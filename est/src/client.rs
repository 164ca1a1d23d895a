//! The EST client (RFC 7030 §4 from the client side): one TLS connection per
//! [`EstConnection`], reused for several requests (keep-alive; HTTP/1.1, or HTTP/2 when a
//! caller-supplied TLS configuration offers it), with the connection's tls-exporter available
//! for channel binding in the CSR.

use crate::binding::{challenge_password_for, EXPORTER_LABEL};
use crate::keypackage::{Decryptor, KeyPackageError};
use crate::multipart;
use crate::tls::SeenServerCert;
use crate::wire::{self, CsrAttr, WireError, MEDIA_PKCS10};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, RETRY_AFTER};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use std::sync::Arc;
use std::time::Duration;
use x509_cert::Certificate;

/// Largest response body the client reads.
const MAX_RESPONSE: usize = 256 * 1024;

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
        Ok(EstConnection { sender, exporter, server_chain, client: self.clone() })
    }
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// One TLS connection to an EST server.
pub struct EstConnection {
    sender: Sender,
    exporter: Option<Vec<u8>>,
    server_chain: Vec<Certificate>,
    client: EstClient,
}

/// The answer to a [`EstConnection::post_raw`] request, for protocols other than EST on the
/// same connection (BRSKI's voucher request and status reports).
#[derive(Debug, Clone)]
pub struct RawReply {
    /// HTTP status.
    pub status: StatusCode,
    /// Content-Type (lower-cased), empty when absent.
    pub content_type: String,
    /// Retry-After, if sent (either form).
    pub retry_after: Option<Duration>,
    /// The body as received.
    pub body: Bytes,
}

impl RawReply {
    /// The human-readable reason of an error reply (RFC 9457 detail, or the text body).
    pub fn detail(&self) -> String {
        problem_detail(&self.content_type, &self.body)
    }
}

/// A response: status, content type, body.
struct Reply {
    status: StatusCode,
    content_type: String,
    retry_after: Option<Duration>,
    body: Bytes,
}

impl EstConnection {
    /// The RFC 9266 tls-exporter of this connection (None when TLS 1.2 without EMS).
    pub fn tls_exporter(&self) -> Option<&[u8]> {
        self.exporter.as_deref()
    }

    /// The challengePassword value that binds a CSR to this connection (base64 exporter).
    pub fn channel_binding(&self) -> Option<String> {
        self.exporter.as_deref().map(challenge_password_for)
    }

    /// The certificate chain the server presented on this connection (end entity first), as
    /// sent and not validated beyond what the trust mode did (a BRSKI pledge checks it against
    /// the voucher's pin afterwards).
    pub fn server_chain(&self) -> &[Certificate] {
        &self.server_chain
    }

    /// POSTs `body` as is (no base64) to the absolute `path` on this connection, e.g.
    /// `/.well-known/brski/requestvoucher`, with `content_type` and an optional `accept`.
    pub async fn post_raw(
        &mut self,
        path: &str,
        content_type: &str,
        accept: Option<&str>,
        body: Vec<u8>,
    ) -> Result<RawReply, ClientError> {
        let mut headers = vec![(CONTENT_TYPE, content_type.to_string())];
        if let Some(a) = accept {
            headers.push((ACCEPT, a.to_string()));
        }
        let r = self.exchange(Method::POST, path, headers, Bytes::from(body)).await?;
        Ok(RawReply {
            status: r.status,
            content_type: r.content_type,
            retry_after: r.retry_after,
            body: r.body,
        })
    }

    /// GETs the absolute `path` on this connection (for protocols other than EST on the same
    /// connection, e.g. the agent issuance endpoints), with an optional `accept`.
    pub async fn get_raw(&mut self, path: &str, accept: Option<&str>) -> Result<RawReply, ClientError> {
        let headers = accept.map(|a| vec![(ACCEPT, a.to_string())]).unwrap_or_default();
        let r = self.exchange(Method::GET, path, headers, Bytes::new()).await?;
        Ok(RawReply {
            status: r.status,
            content_type: r.content_type,
            retry_after: r.retry_after,
            body: r.body,
        })
    }

    /// Whether the connection is closed (by the server, or after an error): a kept-alive
    /// connection is reused only while this is false.
    pub fn is_closed(&self) -> bool {
        match &self.sender {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }

    /// HTTP version in use.
    pub fn is_http2(&self) -> bool {
        matches!(self.sender, Sender::H2(_))
    }

    /// GET /cacerts: the CA certificates (RFC 7030 §4.1).
    pub async fn cacerts(&mut self) -> Result<Vec<Certificate>, ClientError> {
        let r = self.send(Method::GET, "cacerts", None).await?;
        expect_ok(&r)?;
        Ok(wire::parse_certs_only(&wire::decode_body(&r.body)?)?)
    }

    /// GET /csrattrs: requested CSR attributes (empty on 204 or 404).
    pub async fn csrattrs(&mut self) -> Result<Vec<CsrAttr>, ClientError> {
        let r = self.send(Method::GET, "csrattrs", None).await?;
        if r.status == StatusCode::NO_CONTENT || r.status == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        expect_ok(&r)?;
        let der = wire::decode_body(&r.body)?;
        if der.is_empty() {
            return Ok(Vec::new());
        }
        Ok(wire::parse_csrattrs(&der)?)
    }

    /// POST /simpleenroll with a DER CSR.
    pub async fn simpleenroll(
        &mut self,
        csr_der: &[u8],
    ) -> Result<Enrollment<Vec<Certificate>>, ClientError> {
        self.enroll("simpleenroll", csr_der).await
    }

    /// POST /simplereenroll with a DER CSR (the connection must present the current certificate).
    pub async fn simplereenroll(
        &mut self,
        csr_der: &[u8],
    ) -> Result<Enrollment<Vec<Certificate>>, ClientError> {
        self.enroll("simplereenroll", csr_der).await
    }

    async fn enroll(
        &mut self,
        op: &'static str,
        csr_der: &[u8],
    ) -> Result<Enrollment<Vec<Certificate>>, ClientError> {
        let r = self.send(Method::POST, op, Some(csr_der)).await?;
        if let Some(p) = pending(&r) {
            return Ok(p);
        }
        expect_ok(&r)?;
        Ok(Enrollment::Done(wire::parse_certs_only(&wire::decode_body(&r.body)?)?))
    }

    /// POST /serverkeygen: the server generates the key pair and returns it with the certificate.
    pub async fn serverkeygen(&mut self, csr_der: &[u8]) -> Result<Enrollment<ServerKey>, ClientError> {
        let r = self.send(Method::POST, "serverkeygen", Some(csr_der)).await?;
        if let Some(p) = pending(&r) {
            return Ok(p);
        }
        expect_ok(&r)?;
        let parts =
            multipart::parse(&r.content_type, &r.body).map_err(|e| ClientError::Unexpected(e.to_string()))?;
        let Some(key) = parts.iter().find(|p| p.content_type.starts_with(wire::MEDIA_PKCS8)) else {
            if parts.iter().any(|p| is_server_generated_key(&p.content_type)) {
                return Err(ClientError::Unexpected(
                    "the key part is encrypted (server-generated-key); use serverkeygen_encrypted".into(),
                ));
            }
            return Err(ClientError::Unexpected("no application/pkcs8 part".into()));
        };
        Ok(Enrollment::Done(ServerKey {
            pkcs8: wire::decode_body(&key.body)?,
            certs: wire::parse_certs_only(&wire::decode_body(&certs_part(&parts)?.body)?)?,
        }))
    }

    /// POST /serverkeygen for a CSR that asks for the generated key to be encrypted (it carries
    /// SMIMECapabilities and AsymmetricDecryptKeyIdentifier or DecryptKeyIdentifier, see
    /// [`crate::keypackage::request_attributes`]). The key part must be
    /// `application/pkcs7-mime; smime-type=server-generated-key` (an unencrypted key is
    /// refused): it is decrypted with `decryptor`, its SignedData verified against `anchors`
    /// (empty: the CA certificates `/cacerts` returns on this connection), and the key must
    /// match the issued certificate.
    pub async fn serverkeygen_encrypted(
        &mut self,
        csr_der: &[u8],
        decryptor: &Decryptor<'_>,
        anchors: &[Certificate],
    ) -> Result<Enrollment<ServerKey>, ClientError> {
        let r = self.send(Method::POST, "serverkeygen", Some(csr_der)).await?;
        if let Some(p) = pending(&r) {
            return Ok(p);
        }
        expect_ok(&r)?;
        let parts =
            multipart::parse(&r.content_type, &r.body).map_err(|e| ClientError::Unexpected(e.to_string()))?;
        let key = parts.iter().find(|p| is_server_generated_key(&p.content_type)).ok_or_else(|| {
            let plain = parts.iter().any(|p| p.content_type.starts_with(wire::MEDIA_PKCS8));
            ClientError::Unexpected(if plain {
                "encryption was requested but the server returned the key unencrypted \
                 (application/pkcs8, RFC 7030 §4.4.2)"
                    .into()
            } else {
                "no server-generated-key part".into()
            })
        })?;
        let certs = wire::parse_certs_only(&wire::decode_body(&certs_part(&parts)?.body)?)?;
        let anchors = if anchors.is_empty() { self.cacerts().await? } else { anchors.to_vec() };
        let opened = crate::keypackage::open(
            &wire::decode_body(&key.body)?,
            decryptor,
            &shared::signed::Trust::now(anchors),
        )?;
        let issued = certs.first().ok_or(WireError::NoCertificates)?;
        let generated = shared::keys::SoftwareKey::from_pkcs8_der(&opened.pkcs8)
            .map_err(|e| ClientError::Unexpected(format!("the decrypted key: {e}")))?;
        if shared::keys::Signer::public_key_der(&generated) != shared::pki::spki_der(issued) {
            return Err(ClientError::Unexpected(
                "the decrypted key does not match the issued certificate".into(),
            ));
        }
        Ok(Enrollment::Done(ServerKey { pkcs8: opened.pkcs8.to_vec(), certs }))
    }

    async fn send(&mut self, method: Method, op: &str, csr: Option<&[u8]>) -> Result<Reply, ClientError> {
        let body = csr.map(|d| Bytes::from(wire::encode_body(d))).unwrap_or_default();
        let headers = if csr.is_some() { vec![(CONTENT_TYPE, MEDIA_PKCS10.to_string())] } else { Vec::new() };
        let path = format!("{}/{op}", self.client.base_path);
        self.exchange(method, &path, headers, body).await
    }

    /// One request/response on this connection, under the client's timeout.
    async fn exchange(
        &mut self,
        method: Method,
        path: &str,
        headers: Vec<(HeaderName, String)>,
        body: Bytes,
    ) -> Result<Reply, ClientError> {
        let c = &self.client;
        let authority = if c.host.contains(':') {
            format!("[{}]:{}", c.host, c.port)
        } else {
            format!("{}:{}", c.host, c.port)
        };
        let mut req = Request::builder().method(method).uri(format!("https://{authority}{path}"));
        if matches!(self.sender, Sender::H1(_)) {
            req = req.header(HOST, authority.as_str());
        }
        for (name, value) in headers {
            req = req.header(name, value);
        }
        if let Some(b) = &c.basic {
            req = req.header(AUTHORIZATION, b.clone());
        }
        let req = req.body(Full::new(body)).map_err(|e| ClientError::Http(e.to_string()))?;
        let fut = async {
            // Wait until the connection can take the request: after a response, an HTTP/1.1
            // connection's task still has to finish that message, and a request sent before
            // then is refused ("connection was not ready").
            let resp = match &mut self.sender {
                Sender::H1(s) => match s.ready().await {
                    Ok(()) => s.send_request(req).await,
                    Err(e) => Err(e),
                },
                Sender::H2(s) => match s.ready().await {
                    Ok(()) => s.send_request(req).await,
                    Err(e) => Err(e),
                },
            }
            .map_err(|e| ClientError::Http(e.to_string()))?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| ClientError::Http(e.to_string()))?
                .to_bytes();
            let header =
                |n| parts.headers.get(n).and_then(|v: &HeaderValue| v.to_str().ok()).map(str::to_string);
            Ok(Reply {
                status: parts.status,
                content_type: header(CONTENT_TYPE).unwrap_or_default().to_ascii_lowercase(),
                retry_after: header(RETRY_AFTER).and_then(|v| parse_retry_after(&v)),
                body,
            })
        };
        tokio::time::timeout(c.timeout, fut).await.map_err(|_| ClientError::Timeout("EST request"))?
    }
}

/// The `smime-type` parameter of a Content-Type (lower-cased by the multipart reader).
fn smime_type(content_type: &str) -> Option<&str> {
    content_type
        .split(';')
        .skip(1)
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim() == "smime-type")
        .map(|(_, v)| v.trim().trim_matches('"'))
}

fn is_server_generated_key(content_type: &str) -> bool {
    content_type.starts_with("application/pkcs7-mime")
        && smime_type(content_type) == Some("server-generated-key")
}

/// The certificate part of a serverkeygen answer: the pkcs7-mime part that is not the key.
fn certs_part(parts: &[multipart::Part]) -> Result<&multipart::Part, ClientError> {
    parts
        .iter()
        .find(|p| {
            p.content_type.starts_with("application/pkcs7-mime") && !is_server_generated_key(&p.content_type)
        })
        .ok_or_else(|| ClientError::Unexpected("no certs-only part".into()))
}

fn pending<T>(r: &Reply) -> Option<Enrollment<T>> {
    (r.status == StatusCode::ACCEPTED)
        .then(|| Enrollment::Pending { retry_after: r.retry_after.unwrap_or(Duration::from_secs(60)) })
}

fn expect_ok(r: &Reply) -> Result<(), ClientError> {
    if r.status == StatusCode::OK {
        return Ok(());
    }
    Err(ClientError::Status { status: r.status, detail: problem_detail(&r.content_type, &r.body) })
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
mod tests {
    use super::*;

    #[test]
    fn retry_after_both_forms() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        let later = std::time::SystemTime::now() + Duration::from_secs(90);
        let d = parse_retry_after(&httpdate::fmt_http_date(later)).unwrap();
        assert!(d > Duration::from_secs(80) && d <= Duration::from_secs(90), "{d:?}");
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn problem_details_are_extracted() {
        assert_eq!(
            problem_detail(
                crate::http::MEDIA_PROBLEM,
                br#"{"title":"Bad","detail":"CSR signature does not verify"}"#
            ),
            "CSR signature does not verify"
        );
        assert_eq!(problem_detail("text/plain", b"plain reason\n"), "plain reason");
    }

    #[test]
    fn smime_types_tell_key_from_certificates() {
        assert!(is_server_generated_key("application/pkcs7-mime; smime-type=server-generated-key"));
        assert!(is_server_generated_key("application/pkcs7-mime;smime-type=\"server-generated-key\""));
        assert!(!is_server_generated_key("application/pkcs7-mime; smime-type=certs-only"));
        assert!(!is_server_generated_key("application/pkcs8"));
        assert_eq!(smime_type("application/pkcs7-mime"), None);
    }

    #[test]
    fn urls_and_labels() {
        let tls = crate::tls::client_config(&crate::tls::ServerTrust::InsecureBootstrap, None).unwrap();
        let c = EstClient::new("https://127.0.0.1:8443", Some("ldevid"), tls.clone()).unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.base_path.as_str()),
            ("127.0.0.1", 8443, "/.well-known/est/ldevid")
        );
        let c = EstClient::new("https://est.example", None, tls.clone()).unwrap();
        assert_eq!((c.port, c.base_path.as_str()), (443, "/.well-known/est"));
        assert!(matches!(EstClient::new("http://est.example", None, tls), Err(ClientError::Url(_))));
    }
}
