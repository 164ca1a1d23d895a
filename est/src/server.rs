//! The EST server (RFC 7030 as clarified by RFC 8951, RFC 9266 channel binding): per-label
//! policy, the axum router for `/.well-known/est[/<label>]/<operation>`, the TLS
//! configuration, and an accept loop that hands each request its connection's TLS facts.
//!
//! Every refusal is an [`EstError`], turned into HTTP in one place
//! ([`EstError::into_response`]): the precise status, an RFC 9457 `application/problem+json`
//! body, and any header the status needs (`WWW-Authenticate`, `Allow`).

use crate::authority::{Authority, AuthorityError, Decision, EnrollContext, Identity, Operation};
use crate::binding::{challenge_password_for, exporter_value};
use crate::wire::{self, CsrAttr};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Extension, Router};
use const_oid::ObjectIdentifier;
use der::{Decode, Encode};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use shared::keys::{Algorithm, SoftwareKey};
use shared::pki::{spki_der, verify_chain, Csr, Profile, San};
use shared::Verified;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::Certificate;

/// Default request body limit (64 KiB: far above any CSR, base64 included).
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;
/// `WWW-Authenticate` value sent with every 401.
pub const WWW_AUTHENTICATE_BASIC: &str = "Basic realm=\"est\"";
/// RFC 9457 media type of every error body.
pub const MEDIA_PROBLEM: &str = "application/problem+json";
/// id-aa-decryptKeyID (RFC 4108): serverkeygen asks for symmetric key encryption.
pub const DECRYPT_KEY_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.37");
/// id-aa-asymmDecryptKeyID (RFC 7030): serverkeygen asks for asymmetric key encryption.
pub const ASYMM_DECRYPT_KEY_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.54");
/// The EST operation names, which a label must not equal (RFC 7030 §3.2.2).
pub const OPERATIONS: [&str; 6] =
    ["cacerts", "simpleenroll", "simplereenroll", "fullcmc", "serverkeygen", "csrattrs"];

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// How a client must authenticate to enroll (simpleenroll, serverkeygen) under a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthRequirement {
    /// A TLS client certificate that chains to one of the label's anchors.
    ClientCert,
    /// HTTP Basic credentials of one of the label's users.
    Basic,
    /// Either of the two.
    Either,
    /// Both.
    Both,
}

/// What to do with the CSR's challengePassword (RFC 7030 §3.5 linking, RFC 9266 exporter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingPolicy {
    /// The CSR must carry base64 of this connection's `tls-exporter` (400 otherwise).
    Require,
    /// Checked when present (400 on mismatch), accepted when absent.
    Accept,
    /// Not checked.
    Ignore,
}

/// Policy of one CA label.
#[derive(Debug, Clone)]
pub struct LabelPolicy {
    /// Issuance profile for this label (hand [`EstServerConfig::profiles`] to the authority).
    pub profile: Profile,
    /// Key algorithms a CSR may carry (empty: every algorithm the CSR verifier supports).
    pub allowed_key_algorithms: Vec<Algorithm>,
    /// Trust anchors for TLS client certificates on simpleenroll/serverkeygen.
    pub client_cert_anchors: Vec<Certificate>,
    /// HTTP Basic users: user name -> argon2 PHC hash (see [`hash_password`]).
    pub basic_users: HashMap<String, String>,
    /// Which credentials an enrollment needs.
    pub auth: AuthRequirement,
    /// Channel-binding policy.
    pub binding: BindingPolicy,
    /// Whether `/serverkeygen` is offered (RFC 7030 recommends off by default).
    pub serverkeygen: bool,
}

impl LabelPolicy {
    /// A policy with `profile`, any key algorithm, no anchors or users, [`AuthRequirement::Either`],
    /// [`BindingPolicy::Accept`] and serverkeygen off.
    pub fn new(profile: Profile) -> Self {
        LabelPolicy {
            profile,
            allowed_key_algorithms: Vec::new(),
            client_cert_anchors: Vec::new(),
            basic_users: HashMap::new(),
            auth: AuthRequirement::Either,
            binding: BindingPolicy::Accept,
            serverkeygen: false,
        }
    }
}

/// The EST server's configuration: label policies and request limits.
#[derive(Debug, Clone)]
pub struct EstServerConfig {
    /// Policies by label; `""` is the default label (`/.well-known/est/<op>`).
    pub labels: HashMap<String, LabelPolicy>,
    /// Largest request body accepted (413 above).
    pub body_limit: usize,
    /// Longest wait for a request body (408 after).
    pub body_timeout: Duration,
    /// Longest time one request may take in total, authority calls included (503 after).
    pub request_timeout: Duration,
}

impl Default for EstServerConfig {
    fn default() -> Self {
        EstServerConfig {
            labels: HashMap::new(),
            body_limit: DEFAULT_BODY_LIMIT,
            body_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
        }
    }
}

impl EstServerConfig {
    /// Adds (or replaces) the policy of `label`.
    pub fn with_label(mut self, label: &str, policy: LabelPolicy) -> Self {
        self.labels.insert(label.to_string(), policy);
        self
    }

    /// The profile of every label, for [`crate::authority::LocalCa::new`].
    pub fn profiles(&self) -> HashMap<String, Profile> {
        self.labels.iter().map(|(k, v)| (k.clone(), v.profile.clone())).collect()
    }

    /// Checks the configuration: labels must be single path segments and no operation name.
    pub fn check(&self) -> Result<(), ConfigError> {
        for label in self.labels.keys() {
            if OPERATIONS.contains(&label.as_str()) {
                return Err(ConfigError(format!("label '{label}' equals an EST operation name")));
            }
            if label.contains('/') || label.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(ConfigError(format!("label '{label}' is not a single URI path segment")));
            }
        }
        if self.body_limit == 0 {
            return Err(ConfigError("body_limit must be positive".into()));
        }
        Ok(())
    }
}

/// A configuration the server refuses to start with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid EST server configuration: {0}")]
pub struct ConfigError(pub String);

/// Hashes a password for [`LabelPolicy::basic_users`] (argon2id, random salt, PHC string).
pub fn hash_password(password: &str) -> Result<String, ConfigError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| ConfigError(format!("random source: {e}")))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| ConfigError(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ConfigError(e.to_string()))
}

/// Checks `password` against a PHC hash made by [`hash_password`] (false on a malformed hash).
pub fn verify_password(phc: &str, password: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

// ---------------------------------------------------------------------------------------------
// Errors: one enum, mapped to HTTP in one place
// ---------------------------------------------------------------------------------------------

/// Every way an EST request can fail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EstError {
    /// No such CA label.
    #[error("there is no EST CA label '{0}' on this server")]
    UnknownLabel(String),
    /// No such resource.
    #[error("unknown EST resource '{0}'")]
    NotFound(String),
    /// Wrong HTTP method for the operation.
    #[error("method {method} is not allowed on /{op}; use {allow}")]
    MethodNotAllowed {
        /// The method received.
        method: String,
        /// The operation.
        op: &'static str,
        /// The method to use.
        allow: &'static str,
    },
    /// Content-Type is not application/pkcs10.
    #[error("Content-Type must be application/pkcs10 (RFC 7030), got '{0}'")]
    UnsupportedMediaType(String),
    /// The body is over the limit.
    #[error("request body exceeds the limit of {0} bytes")]
    PayloadTooLarge(usize),
    /// The body did not arrive in time.
    #[error("timed out waiting for the request body")]
    BodyTimeout,
    /// The body could not be read.
    #[error("cannot read the request body: {0}")]
    BodyRead(String),
    /// Not base64.
    #[error("request body is not base64 (RFC 8951: EST bodies are base64 of DER)")]
    BadBase64,
    /// The CSR is malformed or its signature does not verify.
    #[error("{0}")]
    BadCsr(String),
    /// The CSR's key is the CA's own key.
    #[error("the CSR's public key is this CA's own key; generate a new key for the client")]
    CaKeyReuse,
    /// The CSR's key algorithm is not allowed here.
    #[error("key algorithm {0} is not allowed for this label")]
    KeyAlgorithm(String),
    /// Channel binding required but absent.
    #[error(
        "channel binding is required: put base64 of this TLS connection's tls-exporter \
         (RFC 9266, label EXPORTER-Channel-Binding, 32 bytes) into the CSR's challengePassword"
    )]
    BindingRequired,
    /// Channel binding present but this connection has no exporter value.
    #[error("this TLS connection offers no tls-exporter value to check the challengePassword against")]
    BindingUnavailable,
    /// Channel binding present and wrong.
    #[error(
        "the CSR's challengePassword does not match this TLS connection's channel binding \
         (tls-exporter); build the CSR on the connection that sends it"
    )]
    BindingMismatch,
    /// simplereenroll changed subject or subjectAltName.
    #[error("simplereenroll must keep the current certificate's names: {0}")]
    NameChanged(String),
    /// HTTP authentication needed or failed (401 + WWW-Authenticate).
    #[error("authentication required: {0}")]
    AuthRequired(String),
    /// A TLS client certificate is needed.
    #[error("{0}")]
    ClientCertRequired(String),
    /// The TLS client certificate was refused.
    #[error("client certificate refused: {0}")]
    ClientCertRejected(String),
    /// The authority refused the request.
    #[error("request denied: {0}")]
    Denied(String),
    /// The operation or option is not implemented / offered.
    #[error("{0}")]
    NotImplemented(String),
    /// The authority or its store is unavailable; nothing was issued.
    #[error("the certificate authority is unavailable: {0}")]
    Unavailable(String),
    /// The request took longer than allowed.
    #[error("the request took too long to process")]
    Timeout,
    /// A bug or a failure the client cannot fix (details only in the server log).
    #[error("internal error: {0}")]
    Internal(String),
}

impl EstError {
    /// HTTP status, problem type slug and title: the one mapping from errors to HTTP.
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        use EstError::*;
        match self {
            UnknownLabel(_) => (StatusCode::NOT_FOUND, "unknown-label", "Unknown CA label"),
            NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Unknown EST resource"),
            MethodNotAllowed { .. } => {
                (StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", "Method not allowed")
            }
            UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", "Unsupported media type")
            }
            PayloadTooLarge(_) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", "Request body too large")
            }
            BodyTimeout => (StatusCode::REQUEST_TIMEOUT, "body-timeout", "Request body timeout"),
            BodyRead(_) => (StatusCode::BAD_REQUEST, "body-read", "Unreadable request body"),
            BadBase64 => (StatusCode::BAD_REQUEST, "bad-base64", "Body is not base64"),
            BadCsr(_) => (StatusCode::BAD_REQUEST, "bad-csr", "Invalid certification request"),
            CaKeyReuse => (StatusCode::BAD_REQUEST, "ca-key-reuse", "CSR uses the CA's key"),
            KeyAlgorithm(_) => (StatusCode::BAD_REQUEST, "key-algorithm", "Key algorithm not allowed"),
            BindingRequired => (StatusCode::BAD_REQUEST, "binding-required", "Channel binding required"),
            BindingUnavailable => {
                (StatusCode::BAD_REQUEST, "binding-unavailable", "No channel binding available")
            }
            BindingMismatch => (StatusCode::BAD_REQUEST, "binding-mismatch", "Channel binding mismatch"),
            NameChanged(_) => (StatusCode::BAD_REQUEST, "name-changed", "Re-enrollment changed the names"),
            AuthRequired(_) => {
                (StatusCode::UNAUTHORIZED, "authentication-required", "Authentication required")
            }
            ClientCertRequired(_) => {
                (StatusCode::FORBIDDEN, "client-certificate-required", "Client certificate required")
            }
            ClientCertRejected(_) => {
                (StatusCode::FORBIDDEN, "client-certificate-rejected", "Client certificate refused")
            }
            Denied(_) => (StatusCode::FORBIDDEN, "denied", "Request denied"),
            NotImplemented(_) => (StatusCode::NOT_IMPLEMENTED, "not-implemented", "Not implemented"),
            Unavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Certificate authority unavailable")
            }
            Timeout => (StatusCode::SERVICE_UNAVAILABLE, "timeout", "Request processing timed out"),
            Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal server error"),
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        self.parts().0
    }

    /// The RFC 9457 problem `type` URI of this error.
    pub fn problem_type(&self) -> String {
        format!("urn:brski:est:problem:{}", self.parts().1)
    }

    /// The problem `detail` shown to the client (internal details stay in the log).
    fn detail(&self) -> String {
        match self {
            EstError::Internal(_) => "internal error; the server log has the details".to_string(),
            EstError::Unavailable(_) => {
                "the certificate authority is unavailable; nothing was issued, retry later".to_string()
            }
            other => other.to_string(),
        }
    }
}

impl IntoResponse for EstError {
    fn into_response(self) -> Response {
        let (status, _, title) = self.parts();
        let body = serde_json::json!({
            "type": self.problem_type(),
            "title": title,
            "status": status.as_u16(),
            "detail": self.detail(),
        });
        let mut resp = (status, [(header::CONTENT_TYPE, MEDIA_PROBLEM)], body.to_string()).into_response();
        match &self {
            EstError::AuthRequired(_) => {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(WWW_AUTHENTICATE_BASIC));
            }
            EstError::MethodNotAllowed { allow, .. } => {
                resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            _ => {}
        }
        resp
    }
}

impl From<AuthorityError> for EstError {
    fn from(e: AuthorityError) -> Self {
        match e {
            AuthorityError::UnknownLabel(l) => EstError::UnknownLabel(l),
            AuthorityError::Refused(r) => {
                EstError::BadCsr(format!("the issuance profile refused the CSR: {r}"))
            }
            AuthorityError::Issue(r) => EstError::Internal(r),
            AuthorityError::Store(s) => EstError::Unavailable(s.to_string()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Per-connection information
// ---------------------------------------------------------------------------------------------

/// TLS facts of the connection a request arrived on, inserted by [`serve`] as an
/// `Extension<Arc<ConnectionInfo>>` into every request.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// The peer's address.
    pub remote: Option<SocketAddr>,
    /// The client certificate chain as sent (leaf first), unvalidated; empty without one.
    pub peer_certs: Vec<CertificateDer<'static>>,
    /// RFC 9266 `tls-exporter` (32 bytes). TLS 1.2 connections always have Extended Master
    /// Secret here ([`server_tls_config`] requires it), so the value is sound on both versions.
    pub exporter: Option<[u8; 32]>,
    /// The negotiated TLS version.
    pub protocol: Option<rustls::ProtocolVersion>,
    /// The negotiated ALPN protocol.
    pub alpn: Option<Vec<u8>>,
}

impl ConnectionInfo {
    /// Facts of a rustls server connection after its handshake.
    pub fn from_connection(conn: &rustls::ServerConnection, remote: Option<SocketAddr>) -> Self {
        ConnectionInfo {
            remote,
            peer_certs: conn
                .peer_certificates()
                .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                .unwrap_or_default(),
            exporter: exporter_value(conn),
            protocol: conn.protocol_version(),
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// TLS and the accept loop
// ---------------------------------------------------------------------------------------------

/// Requests a client certificate but lets the handshake proceed without one; any chain is
/// accepted here (the handshake signature still proves possession of its key). Handlers
/// validate the chain against the label's anchors.
#[derive(Debug)]
struct OptionalAnyClientCert {
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for OptionalAnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// The server's TLS configuration: aws-lc-rs provider, TLS 1.3 and 1.2 (1.2 only with
/// Extended Master Secret, so `tls-exporter` is sound), ALPN h2 and http/1.1, and a client
/// certificate requested but optional.
pub fn server_tls_config(
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = OptionalAnyClientCert { algs: provider.signature_verification_algorithms };
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(cert_chain, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    cfg.require_ems = true;
    Ok(cfg)
}

/// Timeouts of the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// Longest TLS handshake.
    pub handshake_timeout: Duration,
    /// Longest wait for a complete HTTP/1.1 request head.
    pub header_read_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
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
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
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
            builder.http1().timer(TokioTimer::new()).header_read_timeout(opts.header_read_timeout);
            builder
                .http2()
                .timer(TokioTimer::new())
                .keep_alive_interval(Some(Duration::from_secs(30)))
                .keep_alive_timeout(Duration::from_secs(10));
            if let Err(e) = builder.serve_connection(TokioIo::new(stream), svc).await {
                tracing::debug!(%remote, error = %e, "connection ended with an error");
            }
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Router and handlers
// ---------------------------------------------------------------------------------------------

struct ServerState {
    config: EstServerConfig,
    authority: Arc<dyn Authority>,
}

/// The EST router: `/.well-known/est[/<label>]/{cacerts,csrattrs,simpleenroll,simplereenroll,
/// serverkeygen,fullcmc}`; every other path answers a 404 problem. Serve it with [`serve`] so
/// handlers see the TLS connection (without it: no client certificate, no channel binding).
pub fn router(config: EstServerConfig, authority: Arc<dyn Authority>) -> Result<Router, ConfigError> {
    config.check()?;
    let state = Arc::new(ServerState { config, authority });
    Ok(Router::new()
        .route("/.well-known/est/{*rest}", any(handle))
        .fallback(|req: Request| async move {
            let e = EstError::NotFound(req.uri().path().to_string());
            tracing::info!(path = %req.uri().path(), status = 404, "EST request refused: {e}");
            e.into_response()
        })
        .with_state(state))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    CaCerts,
    CsrAttrs,
    Enroll,
    Reenroll,
    ServerKeygen,
    FullCmc,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "cacerts" => Op::CaCerts,
            "csrattrs" => Op::CsrAttrs,
            "simpleenroll" => Op::Enroll,
            "simplereenroll" => Op::Reenroll,
            "serverkeygen" => Op::ServerKeygen,
            "fullcmc" => Op::FullCmc,
            _ => return None,
        })
    }
    fn name(self) -> &'static str {
        match self {
            Op::CaCerts => "cacerts",
            Op::CsrAttrs => "csrattrs",
            Op::Enroll => "simpleenroll",
            Op::Reenroll => "simplereenroll",
            Op::ServerKeygen => "serverkeygen",
            Op::FullCmc => "fullcmc",
        }
    }
    fn method(self) -> Method {
        match self {
            Op::CaCerts | Op::CsrAttrs => Method::GET,
            _ => Method::POST,
        }
    }
}

/// Splits the path after `/.well-known/est/` into (label, operation name).
fn split_path(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/.well-known/est/")?;
    match rest.split('/').collect::<Vec<_>>().as_slice() {
        [op] => Some(("", op)),
        [label, op] if !label.is_empty() => Some((label, op)),
        _ => None,
    }
}

async fn handle(State(st): State<Arc<ServerState>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let conn = req.extensions().get::<Arc<ConnectionInfo>>().cloned().unwrap_or_else(|| {
        Arc::new(ConnectionInfo {
            remote: None,
            peer_certs: Vec::new(),
            exporter: None,
            protocol: None,
            alpn: None,
        })
    });
    let (label, op_name) = split_path(&path).unwrap_or(("", ""));
    let (label, op_name) = (label.to_string(), op_name.to_string());
    let result =
        match tokio::time::timeout(st.config.request_timeout, dispatch(&st, &conn, &label, &op_name, req))
            .await
        {
            Ok(r) => r,
            Err(_) => Err(EstError::Timeout),
        };
    match result {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let remote = conn.remote;
            tracing::info!(%method, %label, op = %op_name, status, ?remote, "EST request served");
            resp
        }
        Err(e) => {
            let status = e.status().as_u16();
            let remote = conn.remote;
            if status >= 500 {
                tracing::error!(%method, %path, status, ?remote, error = %e, "EST request failed");
            } else {
                tracing::warn!(%method, %path, status, ?remote, error = %e, "EST request refused");
            }
            e.into_response()
        }
    }
}

async fn dispatch(
    st: &ServerState,
    conn: &ConnectionInfo,
    label: &str,
    op_name: &str,
    req: Request,
) -> Result<Response, EstError> {
    if op_name.is_empty() {
        return Err(EstError::NotFound(req.uri().path().to_string()));
    }
    let policy = st.config.labels.get(label).ok_or_else(|| EstError::UnknownLabel(label.to_string()))?;
    let op = Op::parse(op_name).ok_or_else(|| EstError::NotFound(req.uri().path().to_string()))?;
    let method_ok =
        req.method() == op.method() || (op.method() == Method::GET && req.method() == Method::HEAD);
    if !method_ok {
        return Err(EstError::MethodNotAllowed {
            method: req.method().to_string(),
            op: op.name(),
            allow: if op.method() == Method::GET { "GET" } else { "POST" },
        });
    }
    match op {
        Op::CaCerts => cacerts(st, label),
        Op::CsrAttrs => csrattrs(st, policy, label),
        Op::FullCmc => Err(EstError::NotImplemented("Full CMC is not implemented; use simpleenroll".into())),
        Op::Enroll => enroll(st, policy, conn, label, Operation::Enroll, req).await,
        Op::Reenroll => enroll(st, policy, conn, label, Operation::Reenroll, req).await,
        Op::ServerKeygen => {
            if !policy.serverkeygen {
                return Err(EstError::NotImplemented(
                    "server-side key generation is not offered for this label".into(),
                ));
            }
            enroll(st, policy, conn, label, Operation::ServerKeygen, req).await
        }
    }
}

fn base64_response(content_type: &'static str, der: &[u8]) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], wire::encode_body(der)).into_response()
}

fn cacerts(st: &ServerState, label: &str) -> Result<Response, EstError> {
    let certs = st.authority.ca_certs(label);
    if certs.is_empty() {
        return Err(EstError::Unavailable(format!("no CA certificates for label '{label}'")));
    }
    let der = wire::certs_only(&certs).map_err(|e| EstError::Internal(e.to_string()))?;
    Ok(base64_response(wire::MEDIA_CACERTS, &der))
}

fn csrattrs(st: &ServerState, policy: &LabelPolicy, label: &str) -> Result<Response, EstError> {
    let mut attrs = st.authority.csr_attrs(label);
    let cp = CsrAttr::Oid(shared::pki::CHALLENGE_PASSWORD);
    if policy.binding == BindingPolicy::Require && !attrs.contains(&cp) {
        attrs.insert(0, cp);
    }
    if attrs.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let der = wire::encode_csrattrs(&attrs).map_err(|e| EstError::Internal(e.to_string()))?;
    Ok(base64_response(wire::MEDIA_CSRATTRS, &der))
}

/// Checks Content-Type, reads the body within the limit and timeout, decodes base64 and
/// verifies the CSR.
async fn read_csr(st: &ServerState, req: Request) -> Result<Verified<Csr>, EstError> {
    let ct =
        req.headers().get(header::CONTENT_TYPE).map(|v| String::from_utf8_lossy(v.as_bytes()).to_string());
    let essence = ct.as_deref().map(|c| c.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
    if essence.as_deref() != Some(wire::MEDIA_PKCS10) {
        return Err(EstError::UnsupportedMediaType(ct.unwrap_or_else(|| "(none)".into())));
    }
    let limit = st.config.body_limit;
    let body = tokio::time::timeout(st.config.body_timeout, read_limited(req.into_body(), limit))
        .await
        .map_err(|_| EstError::BodyTimeout)??;
    let der = wire::decode_body(&body).map_err(|_| EstError::BadBase64)?;
    Csr::verify_der(&der).map_err(|e| match e {
        shared::pki::CsrError::TooLarge(n) => EstError::PayloadTooLarge(n.min(shared::pki::MAX_CSR_LEN)),
        other => EstError::BadCsr(other.to_string()),
    })
}

/// Reads at most `limit` bytes. Past the limit the rest is drained (up to 1 MiB more) so the
/// client reads the 413 instead of a connection reset.
async fn read_limited(mut body: Body, limit: usize) -> Result<Vec<u8>, EstError> {
    let mut buf = Vec::new();
    let mut over = false;
    let mut drained = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| EstError::BodyRead(e.to_string()))?;
        let Ok(data) = frame.into_data() else { continue };
        if over {
            drained += data.len();
            if drained > 1024 * 1024 {
                break;
            }
        } else if buf.len() + data.len() > limit {
            over = true;
            buf = Vec::new();
        } else {
            buf.extend_from_slice(&data);
        }
    }
    if over {
        return Err(EstError::PayloadTooLarge(limit));
    }
    Ok(buf)
}

/// The client certificate chain of the connection, parsed: (leaf, the rest).
fn peer_chain(conn: &ConnectionInfo) -> Result<Option<(Certificate, Vec<Certificate>)>, EstError> {
    let mut certs = Vec::with_capacity(conn.peer_certs.len());
    for c in &conn.peer_certs {
        certs.push(
            Certificate::from_der(c.as_ref())
                .map_err(|e| EstError::ClientCertRejected(format!("unparsable client certificate: {e}")))?,
        );
    }
    if certs.is_empty() {
        return Ok(None);
    }
    let leaf = certs.remove(0);
    Ok(Some((leaf, certs)))
}

fn serial_hex(cert: &Certificate) -> String {
    hex::encode(cert.tbs_certificate().serial_number().as_bytes())
}

/// Validates a client certificate against `anchors` now and the store's revocations.
async fn validate_client_cert(
    st: &ServerState,
    leaf: &Certificate,
    rest: &[Certificate],
    anchors: &[Certificate],
) -> Result<(), String> {
    if anchors.is_empty() {
        return Err("no trust anchors are configured for client certificates on this label".into());
    }
    verify_chain(leaf, rest, anchors, time::OffsetDateTime::now_utc()).map_err(|e| e.to_string())?;
    match st.authority.is_revoked(&serial_hex(leaf)).await {
        Ok(false) => Ok(()),
        Ok(true) => Err(format!("certificate {} has been revoked", serial_hex(leaf))),
        Err(e) => Err(format!("revocation status unavailable: {e}")),
    }
}

/// The Basic credentials of a request: `None` without an Authorization Basic header,
/// `Some(Err)` for a malformed one.
fn basic_credentials(headers: &HeaderMap) -> Option<Result<(String, String), ()>> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = shared::b64::decode_lenient(rest.trim()).ok().and_then(|b| String::from_utf8(b).ok());
    Some(decoded.and_then(|s| s.split_once(':').map(|(u, p)| (u.to_string(), p.to_string()))).ok_or(()))
}

/// Checks Basic credentials against the label's users (argon2 off the async threads).
async fn check_basic(policy: &LabelPolicy, headers: &HeaderMap) -> Option<Result<String, ()>> {
    let creds = basic_credentials(headers)?;
    let Ok((user, pass)) = creds else { return Some(Err(())) };
    let Some(phc) = policy.basic_users.get(&user).cloned() else { return Some(Err(())) };
    let ok = tokio::task::spawn_blocking(move || verify_password(&phc, &pass)).await.unwrap_or(false);
    Some(if ok { Ok(user) } else { Err(()) })
}

/// Authenticates simpleenroll / serverkeygen per the label's [`AuthRequirement`].
async fn authenticate_enroll(
    st: &ServerState,
    policy: &LabelPolicy,
    conn: &ConnectionInfo,
    headers: &HeaderMap,
) -> Result<Identity, EstError> {
    let cert = match peer_chain(conn)? {
        None => None,
        Some((leaf, rest)) => Some(
            validate_client_cert(st, &leaf, &rest, &policy.client_cert_anchors)
                .await
                .map(|()| (leaf.tbs_certificate().subject().to_string(), serial_hex(&leaf))),
        ),
    };
    let basic = match policy.auth {
        AuthRequirement::ClientCert => None,
        _ => check_basic(policy, headers).await,
    };
    let mut id = Identity::default();
    if let Some(Ok((subject, serial))) = &cert {
        id.client_cert_subject = Some(subject.clone());
        id.client_cert_serial = Some(serial.clone());
    }
    if let Some(Ok(user)) = &basic {
        id.basic_user = Some(user.clone());
    }
    let cert_problem = || match &cert {
        Some(Err(r)) => EstError::ClientCertRejected(r.clone()),
        _ => EstError::ClientCertRequired("a TLS client certificate is required for this label".into()),
    };
    let basic_problem = || match &basic {
        Some(Err(())) => EstError::AuthRequired("wrong user name or password".into()),
        _ => EstError::AuthRequired("HTTP Basic credentials are required".into()),
    };
    let cert_ok = id.client_cert_subject.is_some();
    let basic_ok = id.basic_user.is_some();
    match policy.auth {
        AuthRequirement::ClientCert if !cert_ok => Err(cert_problem()),
        AuthRequirement::Basic if !basic_ok => Err(basic_problem()),
        AuthRequirement::Both if !cert_ok => Err(cert_problem()),
        AuthRequirement::Both if !basic_ok => Err(basic_problem()),
        AuthRequirement::Either if !cert_ok && !basic_ok => match (&basic, &cert) {
            (Some(Err(())), _) => Err(basic_problem()),
            (_, Some(Err(r))) => Err(EstError::AuthRequired(format!(
                "client certificate refused ({r}); present a valid certificate or HTTP Basic credentials"
            ))),
            _ => Err(EstError::AuthRequired(
                "present a TLS client certificate or HTTP Basic credentials".into(),
            )),
        },
        _ => Ok(id),
    }
}

/// Authenticates simplereenroll: the client certificate must be one this CA issued, valid now
/// and not revoked. Returns the identity and the current certificate.
async fn authenticate_reenroll(
    st: &ServerState,
    conn: &ConnectionInfo,
    label: &str,
) -> Result<(Identity, Certificate), EstError> {
    let (leaf, rest) = peer_chain(conn)?.ok_or_else(|| {
        EstError::ClientCertRequired(
            "simplereenroll requires the TLS client certificate being renewed (RFC 7030 §3.3.2)".into(),
        )
    })?;
    let anchors = st.authority.ca_certs(label);
    validate_client_cert(st, &leaf, &rest, &anchors)
        .await
        .map_err(|r| EstError::ClientCertRejected(format!("not a current certificate of this CA: {r}")))?;
    let id = Identity {
        client_cert_subject: Some(leaf.tbs_certificate().subject().to_string()),
        client_cert_serial: Some(serial_hex(&leaf)),
        basic_user: None,
    };
    Ok((id, leaf))
}

/// subjectAltName entries of a certificate, in the [`San`] forms CSRs can request.
fn cert_san(cert: &Certificate) -> Vec<San> {
    let Ok(Some((_, san))) = cert.tbs_certificate().get_extension::<SubjectAltName>() else {
        return Vec::new();
    };
    san.0
        .iter()
        .filter_map(|g| match g {
            GeneralName::DnsName(s) => Some(San::Dns(s.to_string())),
            GeneralName::UniformResourceIdentifier(s) => Some(San::Uri(s.to_string())),
            GeneralName::Rfc822Name(s) => Some(San::Email(s.to_string())),
            GeneralName::IpAddress(o) => match o.as_bytes().len() {
                4 => <[u8; 4]>::try_from(o.as_bytes()).ok().map(|b| San::Ip(b.into())),
                16 => <[u8; 16]>::try_from(o.as_bytes()).ok().map(|b| San::Ip(b.into())),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn sorted_san(mut v: Vec<San>) -> Vec<String> {
    let mut s: Vec<String> = v.drain(..).map(|x| format!("{x:?}")).collect();
    s.sort();
    s
}

/// RFC 7030 §4.2.2: subject and subjectAltName of a re-enrollment equal the current cert's.
fn check_same_names(csr: &Csr, current: &Certificate) -> Result<(), EstError> {
    let cur = current.tbs_certificate().subject();
    if csr.subject().to_der().ok() != cur.to_der().ok() {
        return Err(EstError::NameChanged(format!(
            "the CSR subject '{}' differs from the current certificate's '{cur}'",
            csr.subject()
        )));
    }
    if sorted_san(csr.requested_san()) != sorted_san(cert_san(current)) {
        return Err(EstError::NameChanged(
            "the CSR's subjectAltName differs from the current certificate's".into(),
        ));
    }
    Ok(())
}

/// Checks the CSR's challengePassword against this connection's exporter per `policy`.
fn check_binding(policy: BindingPolicy, csr: &Csr, conn: &ConnectionInfo) -> Result<(), EstError> {
    if policy == BindingPolicy::Ignore {
        return Ok(());
    }
    let Some(given) = csr.challenge_password() else {
        return match policy {
            BindingPolicy::Require => Err(EstError::BindingRequired),
            _ => Ok(()),
        };
    };
    let expected = conn.exporter.map(|e| challenge_password_for(&e)).ok_or(EstError::BindingUnavailable)?;
    let same: bool = subtle_eq(given.trim().as_bytes(), expected.as_bytes());
    if same {
        Ok(())
    } else {
        Err(EstError::BindingMismatch)
    }
}

fn subtle_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Key checks on a CSR whose key will be certified.
fn check_key(st: &ServerState, policy: &LabelPolicy, label: &str, csr: &Csr) -> Result<(), EstError> {
    let key = csr.public_key_der();
    if st.authority.ca_certs(label).iter().any(|c| spki_der(c) == key) {
        return Err(EstError::CaKeyReuse);
    }
    if !policy.allowed_key_algorithms.is_empty() {
        let alg = shared::crypto::PublicKey::from_spki_der(&key).ok().and_then(|k| k.algorithm());
        match alg {
            Some(a) if policy.allowed_key_algorithms.contains(&a) => {}
            Some(a) => return Err(EstError::KeyAlgorithm(a.to_string())),
            None => return Err(EstError::KeyAlgorithm("RSA or unknown".into())),
        }
    }
    Ok(())
}

/// simpleenroll, simplereenroll and serverkeygen.
async fn enroll(
    st: &ServerState,
    policy: &LabelPolicy,
    conn: &ConnectionInfo,
    label: &str,
    operation: Operation,
    req: Request,
) -> Result<Response, EstError> {
    let (identity, current) = match operation {
        Operation::Reenroll => {
            let (id, cur) = authenticate_reenroll(st, conn, label).await?;
            (id, Some(cur))
        }
        _ => (authenticate_enroll(st, policy, conn, req.headers()).await?, None),
    };
    let csr = read_csr(st, req).await?;
    if operation == Operation::ServerKeygen {
        if csr.attribute(DECRYPT_KEY_ID).is_some() || csr.attribute(ASYMM_DECRYPT_KEY_ID).is_some() {
            return Err(EstError::NotImplemented(
                "encrypting the server-generated key (DecryptKeyIdentifier / AsymmetricDecryptKeyIdentifier) \
                 is not implemented; send the CSR without these attributes to receive an unencrypted \
                 PKCS#8 key over this TLS connection"
                    .into(),
            ));
        }
        if !policy.allowed_key_algorithms.is_empty()
            && !policy.allowed_key_algorithms.contains(&Algorithm::Es256)
        {
            return Err(EstError::KeyAlgorithm(
                "ES256 (serverkeygen generates P-256 keys, which this label does not allow)".into(),
            ));
        }
    } else {
        check_key(st, policy, label, &csr)?;
    }
    check_binding(policy.binding, &csr, conn)?;
    if let Some(cur) = &current {
        check_same_names(&csr, cur)?;
    }
    let ctx = EnrollContext {
        label,
        operation,
        identity: &identity,
        csr: &csr,
        request_key: EnrollContext::request_key_for(label, operation, &csr),
    };
    match st.authority.authorize(&ctx).await {
        Decision::Approve => {}
        Decision::Pending { retry_after_secs } => {
            let (op, who) = (operation.as_str(), identity.describe());
            tracing::info!(label, op, %who, retry_after_secs, "EST request pending");
            let text = format!(
                "request accepted and pending approval; \
                 send the same request again in {retry_after_secs} seconds\n"
            );
            let headers = [
                (header::RETRY_AFTER, retry_after_secs.to_string()),
                (header::CONTENT_TYPE, "text/plain".to_string()),
            ];
            return Ok((StatusCode::ACCEPTED, headers, text).into_response());
        }
        Decision::Deny(reason) => return Err(EstError::Denied(reason)),
    }
    if operation == Operation::ServerKeygen {
        return serverkeygen(st, label, &csr, &identity).await;
    }
    let cert = st.authority.issue(label, &csr).await?;
    let (op, who, serial) = (operation.as_str(), identity.describe(), serial_hex(&cert));
    tracing::info!(label, op, %who, %serial, "certificate issued");
    let der = wire::certs_only(&[cert]).map_err(|e| EstError::Internal(e.to_string()))?;
    Ok(base64_response(wire::MEDIA_CERTS_ONLY, &der))
}

async fn serverkeygen(
    st: &ServerState,
    label: &str,
    csr: &Verified<Csr>,
    identity: &Identity,
) -> Result<Response, EstError> {
    let key = SoftwareKey::generate(Algorithm::Es256).map_err(|e| EstError::Internal(e.to_string()))?;
    let cert = st.authority.issue_for_key(label, csr, &key).await?;
    let (who, serial) = (identity.describe(), serial_hex(&cert));
    tracing::info!(label, %who, %serial, "certificate issued for a server-generated key");
    let certs = wire::certs_only(&[cert]).map_err(|e| EstError::Internal(e.to_string()))?;
    let pkcs8 = key.to_pkcs8_der().map_err(|e| EstError::Internal(e.to_string()))?;
    let mut rnd = [0u8; 12];
    getrandom::fill(&mut rnd).map_err(|e| EstError::Internal(e.to_string()))?;
    let boundary = format!("est-{}", hex::encode(rnd));
    let body = multipart_body(
        &boundary,
        &[
            (wire::MEDIA_PKCS8, wire::encode_body(&pkcs8)),
            (wire::MEDIA_CERTS_ONLY, wire::encode_body(&certs)),
        ],
    );
    let ct = format!("multipart/mixed; boundary={boundary}");
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, ct)], body).into_response())
}

/// A `multipart/mixed` body (RFC 2046) of base64 parts.
fn multipart_body(boundary: &str, parts: &[(&str, String)]) -> String {
    let mut out = String::new();
    for (ct, b64) in parts {
        out.push_str(&format!(
            "--{boundary}\r\nContent-Type: {ct}\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n"
        ));
    }
    out.push_str(&format!("--{boundary}--\r\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_label_and_operation() {
        assert_eq!(split_path("/.well-known/est/cacerts"), Some(("", "cacerts")));
        assert_eq!(
            split_path("/.well-known/est/arbitraryLabel1/simpleenroll"),
            Some(("arbitraryLabel1", "simpleenroll"))
        );
        assert_eq!(split_path("/.well-known/est/a/b/c"), None);
        assert_eq!(split_path("/.well-known/est//cacerts"), None);
    }

    #[test]
    fn every_error_maps_to_a_problem() {
        let e = EstError::AuthRequired("x".into());
        let r = e.into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], WWW_AUTHENTICATE_BASIC);
        assert_eq!(r.headers()[header::CONTENT_TYPE], MEDIA_PROBLEM);
    }

    #[test]
    fn password_hash_round_trip() {
        let h = hash_password("s3cret").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(&h, "s3cret"));
        assert!(!verify_password(&h, "wrong"));
        assert!(!verify_password("garbage", "s3cret"));
    }

    #[test]
    fn labels_must_not_be_operation_names() {
        let cfg = EstServerConfig::default()
            .with_label("cacerts", LabelPolicy::new(Profile::end_entity(Duration::from_secs(60))));
        assert!(cfg.check().is_err());
    }
}
