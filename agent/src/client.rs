//! The agent's side of the Agent API (`brski agent request`): a small HTTP/1.1 client over the
//! proxy's Unix socket (or loopback TCP), the ACR built and signed in this process with a key
//! generated here, submission, polling of pending (202) requests with a bounded wait, and the
//! files an agent keeps.
//!
//! The agent's private key never leaves this process except into the key file it writes with
//! mode 0600: the request carries the public key (`jwk`) and a signature made with it.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_TYPE, HOST, LOCATION, RETRY_AFTER};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;

use serde_json::Value;
use shared::agent::acr::{new_acr_claims, CREDENTIAL_REQUEST_MEDIA_TYPE};
use shared::agent::jwk::spki_thumbprint;
use shared::agent::jwt::unix_now;
use shared::agent::wire::{AgentApiRequest, NonceReply, Pending};
use shared::agent::{sign_acr, CredentialSpec, AGENT_API_HEADER};
use shared::keys::{Signer, SoftwareKey};
use shared::pki;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Largest answer read from the Agent API.
const MAX_REPLY: usize = 1024 * 1024;
/// Lifetime of an ACR made for immediate submission (the server allows 60 s).
pub const ACR_LIFETIME: i64 = 60;
/// Longest wait between two polls of a pending request.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(60);

/// Why an Agent API exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentClientError {
    /// The proxy cannot be reached.
    #[error("cannot reach the Identity Proxy at {endpoint}: {detail}")]
    Connect {
        /// Where.
        endpoint: String,
        /// Why.
        detail: String,
    },
    /// No answer in time.
    #[error("the Identity Proxy did not answer within {0:?}")]
    Timeout(Duration),
    /// HTTP failed.
    #[error("HTTP: {0}")]
    Http(String),
    /// The proxy or server refused the request.
    #[error("refused ({status}, {reason}): {detail}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The problem's `reason`.
        reason: String,
        /// The problem's `detail`.
        detail: String,
    },
    /// An answer of an unexpected shape, or a credential that does not fit the request.
    #[error("{0}")]
    Invalid(String),
    /// Still pending after the maximum wait.
    #[error("still pending after {0:?} (request {1}); the owner has not decided")]
    PendingTooLong(Duration, String),
    /// The agent's files could not be written or read.
    #[error("{0}")]
    Files(String),
}

/// Where the Agent API is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A Unix socket.
    Unix(PathBuf),
    /// Loopback TCP.
    Tcp(SocketAddr),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
            Endpoint::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

/// One answer of the Agent API.
#[derive(Debug, Clone)]
pub struct ApiReply {
    /// HTTP status.
    pub status: StatusCode,
    /// Retry-After in seconds, if sent.
    pub retry_after: Option<Duration>,
    /// Location, if sent.
    pub location: Option<String>,
    /// The body.
    pub body: Bytes,
}

impl ApiReply {
    fn json(&self) -> Result<Value, AgentClientError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| AgentClientError::Invalid(format!("the answer is not JSON: {e}")))
    }

    fn refused(&self) -> AgentClientError {
        let v: Value = serde_json::from_slice(&self.body).unwrap_or(Value::Null);
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        AgentClientError::Refused {
            status: self.status.as_u16(),
            reason: s("reason").unwrap_or_else(|| "unknown".into()),
            detail: s("detail")
                .or_else(|| s("title"))
                .unwrap_or_else(|| String::from_utf8_lossy(&self.body[..self.body.len().min(300)]).into()),
        }
    }
}

/// The trust domain's bundle (`GET /v1/bundle`) and an issued credential (the 200 answer):
/// the wire types of `docs/agent-api.md`.
pub use shared::agent::wire::{Bundle, Credential};

/// The answer to a submission or a poll.
#[derive(Debug, Clone)]
pub enum Submitted {
    /// Issued.
    Issued(Box<Credential>),
    /// An owner decision is pending: poll `location` after `retry_after`.
    Pending {
        /// The request id.
        id: String,
        /// Where to poll (an Agent API path).
        location: String,
        /// When to poll again.
        retry_after: Duration,
    },
}

/// A client of one proxy's Agent API. Connections are kept alive and reused (clones share them),
/// at most [`MAX_IDLE`] idle at a time; concurrent calls use separate connections.
#[derive(Debug, Clone)]
pub struct AgentApiClient {
    endpoint: Endpoint,
    timeout: Duration,
    idle: Arc<Mutex<Vec<Sender>>>,
}

/// Most idle kept-alive connections a client holds.
pub const MAX_IDLE: usize = 16;

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

impl AgentApiClient {
    /// A client for `endpoint`; each exchange must finish within `timeout`.
    pub fn new(endpoint: Endpoint, timeout: Duration) -> Self {
        AgentApiClient { endpoint, timeout, idle: Arc::new(Mutex::new(Vec::new())) }
    }

    /// An idle connection that is still open, if any.
    fn reuse(&self) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(s) = idle.pop() {
            if !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    /// Keeps `sender` for the next call.
    fn put_back(&self, sender: Sender) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if !sender.is_closed() && idle.len() < MAX_IDLE {
            idle.push(sender);
        }
    }

    async fn connect(&self) -> Result<Sender, AgentClientError> {
        let cerr = |e: &dyn std::fmt::Display| AgentClientError::Connect {
            endpoint: self.endpoint.to_string(),
            detail: e.to_string(),
        };
        match &self.endpoint {
            Endpoint::Unix(p) => {
                handshake(tokio::net::UnixStream::connect(p).await.map_err(|e| cerr(&e))?).await
            }
            Endpoint::Tcp(a) => {
                handshake(tokio::net::TcpStream::connect(a).await.map_err(|e| cerr(&e))?).await
            }
        }
    }

    /// Sends `req` on a kept-alive connection, or a new one; a request that a reused connection
    /// could not even start to send (the proxy closed it meanwhile) goes out on a new one.
    async fn send(
        &self,
        req: Request<Full<Bytes>>,
    ) -> Result<(Sender, hyper::Response<hyper::body::Incoming>), AgentClientError> {
        let http = |e: &dyn std::fmt::Display| AgentClientError::Http(e.to_string());
        let req = match self.reuse() {
            Some(sender) => match try_reused(sender, req).await {
                Ok(done) => return Ok(done),
                Err(Ok(back)) => back,
                Err(Err(e)) => return Err(http(&e)),
            },
            None => req,
        };
        let mut sender = self.connect().await?;
        sender.ready().await.map_err(|e| http(&e))?;
        let resp = sender.send_request(req).await.map_err(|e| http(&e))?;
        Ok((sender, resp))
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// One request (on a kept-alive connection when one is idle).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<ApiReply, AgentClientError> {
        tokio::time::timeout(self.timeout, self.exchange(method, path, body))
            .await
            .map_err(|_| AgentClientError::Timeout(self.timeout))?
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<ApiReply, AgentClientError> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, "localhost")
            .header(AGENT_API_HEADER, "true");
        let payload = match body {
            Some((ct, b)) => {
                req = req.header(CONTENT_TYPE, ct);
                Bytes::from(b)
            }
            None => Bytes::new(),
        };
        let req = req.body(Full::new(payload)).map_err(|e| AgentClientError::Http(e.to_string()))?;
        let (sender, resp) = self.send(req).await?;
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, MAX_REPLY)
            .collect()
            .await
            .map_err(|e| AgentClientError::Http(e.to_string()))?
            .to_bytes();
        self.put_back(sender);
        let header = |n| parts.headers.get(n).and_then(|v: &hyper::header::HeaderValue| v.to_str().ok());
        Ok(ApiReply {
            status: parts.status,
            retry_after: header(RETRY_AFTER)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs),
            location: header(LOCATION).map(str::to_string),
            body,
        })
    }

    /// `GET /v1/bundle`.
    pub async fn bundle(&self) -> Result<Bundle, AgentClientError> {
        let r = self.call(Method::GET, "/v1/bundle", None).await?;
        if r.status != StatusCode::OK {
            return Err(r.refused());
        }
        serde_json::from_value(r.json()?).map_err(|e| AgentClientError::Invalid(format!("bundle: {e}")))
    }

    /// `GET /v1/nonce`: the nonce (b64url).
    pub async fn nonce(&self) -> Result<String, AgentClientError> {
        let r = self.call(Method::GET, "/v1/nonce", None).await?;
        if r.status != StatusCode::OK {
            return Err(r.refused());
        }
        let reply: NonceReply = serde_json::from_value(r.json()?)
            .map_err(|e| AgentClientError::Invalid(format!("the nonce answer: {e}")))?;
        Ok(reply.nonce)
    }

    /// `POST /v1/credentials` with `{"acr", "oa"}`.
    pub async fn submit(&self, acr: &str, oa: Option<&str>) -> Result<Submitted, AgentClientError> {
        let body = AgentApiRequest { acr: acr.to_string(), oa: oa.map(str::to_string) };
        let body = serde_json::to_vec(&body).map_err(|e| AgentClientError::Invalid(e.to_string()))?;
        let r =
            self.call(Method::POST, "/v1/credentials", Some((CREDENTIAL_REQUEST_MEDIA_TYPE, body))).await?;
        submitted(r)
    }

    /// `GET` a pending request's `location`.
    pub async fn poll(&self, location: &str) -> Result<Submitted, AgentClientError> {
        if !location.starts_with("/v1/credentials/") {
            return Err(AgentClientError::Invalid(format!("unexpected Location '{location}'")));
        }
        submitted(self.call(Method::GET, location, None).await?)
    }

    /// Submits and, while the answer is 202, polls after each Retry-After (clamped to 1..60 s)
    /// until issued, refused, or `max_wait` has passed. `progress` is told about each wait.
    pub async fn obtain(
        &self,
        acr: &str,
        oa: Option<&str>,
        max_wait: Duration,
        progress: &mut dyn FnMut(&str, Duration, Duration),
    ) -> Result<Credential, AgentClientError> {
        let started = Instant::now();
        let mut answer = self.submit(acr, oa).await?;
        loop {
            match answer {
                Submitted::Issued(c) => return Ok(*c),
                Submitted::Pending { id, location, retry_after } => {
                    let wait = retry_after.clamp(Duration::from_secs(1), MAX_POLL_INTERVAL);
                    if started.elapsed() + wait > max_wait {
                        return Err(AgentClientError::PendingTooLong(max_wait, id));
                    }
                    progress(&id, wait, started.elapsed());
                    tokio::time::sleep(wait).await;
                    answer = self.poll(&location).await?;
                }
            }
        }
    }
}

async fn handshake<S>(
    stream: S,
) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, AgentClientError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| AgentClientError::Http(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

fn submitted(r: ApiReply) -> Result<Submitted, AgentClientError> {
    match r.status {
        StatusCode::OK => {
            let c: Credential = serde_json::from_value(r.json()?)
                .map_err(|e| AgentClientError::Invalid(format!("credential: {e}")))?;
            Ok(Submitted::Issued(Box::new(c)))
        }
        StatusCode::ACCEPTED => {
            let Pending { id, .. } = serde_json::from_value(r.json()?)
                .map_err(|e| AgentClientError::Invalid(format!("pending answer: {e}")))?;
            let location = r.location.clone().unwrap_or_else(|| format!("/v1/credentials/{id}"));
            Ok(Submitted::Pending {
                id,
                location,
                retry_after: r.retry_after.unwrap_or(Duration::from_secs(5)),
            })
        }
        _ => Err(r.refused()),
    }
}

/// Builds and signs an ACR with `key` for audience `aud`, valid `lifetime` seconds.
pub fn build_acr(
    key: &dyn Signer,
    aud: &str,
    nonce: Option<String>,
    spec: CredentialSpec,
    lifetime: i64,
) -> Result<String, AgentClientError> {
    let iss = spec.id.clone().unwrap_or_else(|| "local-agent".into());
    let claims = new_acr_claims(&iss, aud, nonce, spec, unix_now(), lifetime)
        .map_err(|e| AgentClientError::Invalid(e.to_string()))?;
    sign_acr(&claims, key).map_err(|e| AgentClientError::Invalid(e.to_string()))
}

/// Checks that an issued credential is for `key` (the certificate's key and the WIT's
/// `cnf.jwk`) and carries the formats asked for.
pub fn check_credential(
    c: &Credential,
    key: &dyn Signer,
    formats: &[String],
) -> Result<(), AgentClientError> {
    let bad = |d: String| AgentClientError::Invalid(format!("the issued credential {d}"));
    let spki = key.public_key_der();
    if formats.iter().any(|f| f == "x509") && c.x509.is_none() {
        return Err(bad("has no certificate".into()));
    }
    if formats.iter().any(|f| f == "wit") && c.wit.is_none() {
        return Err(bad("has no WIT".into()));
    }
    if let Some(pem) = &c.x509 {
        let certs = pki::certs_from_pem(pem.as_bytes()).map_err(|e| bad(format!("certificate: {e}")))?;
        let leaf = certs.first().ok_or_else(|| bad("certificate is empty".into()))?;
        if pki::spki_der(leaf) != spki {
            return Err(bad("certificate is not for this agent's key".into()));
        }
    }
    if let Some(wit) = &c.wit {
        let jkt = spki_thumbprint(&spki).map_err(|e| bad(e.to_string()))?;
        let claims = wit
            .split('.')
            .nth(1)
            .and_then(|p| shared::b64::decode_url(p).ok())
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .ok_or_else(|| bad("WIT cannot be read".into()))?;
        let cnf = claims
            .pointer("/cnf/jwk")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("WIT has no cnf.jwk".into()))?;
        if shared::agent::jwk::thumbprint(cnf).ok().as_deref() != Some(jkt.as_str()) {
            return Err(bad("WIT is not for this agent's key".into()));
        }
    }
    Ok(())
}

/// Where an agent keeps its credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentFiles {
    /// The private key (PKCS#8 PEM, 0600).
    pub key: PathBuf,
    /// The agent certificate (PEM).
    pub cert: PathBuf,
    /// The domain CA (PEM).
    pub ca: PathBuf,
    /// The WIT.
    pub wit: PathBuf,
    /// The whole answer (JSON).
    pub credential: PathBuf,
    /// The trust bundle (JSON), for relying parties (`brski verify ... --bundle`).
    pub bundle: PathBuf,
}

impl AgentFiles {
    /// `agent.key`, `agent.pem`, `ca.pem`, `agent.wit`, `credential.json`, `bundle.json` in
    /// `dir`; the key may live elsewhere.
    pub fn in_dir(dir: &Path, key: Option<&Path>) -> Self {
        AgentFiles {
            key: key.map(Path::to_path_buf).unwrap_or_else(|| dir.join("agent.key")),
            cert: dir.join("agent.pem"),
            ca: dir.join("ca.pem"),
            wit: dir.join("agent.wit"),
            credential: dir.join("credential.json"),
            bundle: dir.join("bundle.json"),
        }
    }
}

/// Writes a new key file (0600); refuses to replace an existing key.
pub fn save_new_key(path: &Path, key: &SoftwareKey) -> Result<(), AgentClientError> {
    if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).map_err(|e| AgentClientError::Files(format!("{}: {e}", d.display())))?;
    }
    shared::keys::write_key_file(path, key).map_err(|e| AgentClientError::Files(e.to_string()))
}

/// Replaces `path` atomically with `text`.
fn put_file(path: &Path, text: &str) -> Result<(), AgentClientError> {
    let err = |e: std::io::Error| AgentClientError::Files(format!("{}: {e}", path.display()));
    if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).map_err(err)?;
    }
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Writes the trust bundle as JSON.
pub fn save_bundle(files: &AgentFiles, b: &Bundle) -> Result<PathBuf, AgentClientError> {
    let json = serde_json::to_string_pretty(b).map_err(|e| AgentClientError::Files(e.to_string()))?;
    put_file(&files.bundle, &json)?;
    Ok(files.bundle.clone())
}

/// Writes the credential files (each replaced atomically; the key file is not touched).
pub fn save_credential(files: &AgentFiles, c: &Credential) -> Result<Vec<PathBuf>, AgentClientError> {
    let mut written = Vec::new();
    let mut put = |path: &Path, text: &str| -> Result<(), AgentClientError> {
        put_file(path, text)?;
        written.push(path.to_path_buf());
        Ok(())
    };
    if let Some(x) = &c.x509 {
        put(&files.cert, x)?;
    }
    put(&files.ca, &c.ca_pem)?;
    if let Some(w) = &c.wit {
        put(&files.wit, &format!("{w}\n"))?;
    }
    let json = serde_json::to_string_pretty(c).map_err(|e| AgentClientError::Files(e.to_string()))?;
    put(&files.credential, &json)?;
    Ok(written)
}

/// When to renew a credential received at `received` (Unix seconds) that expires at
/// `not_after`: at half its remaining life.
pub fn renew_at(received: i64, not_after: i64) -> i64 {
    received + (not_after - received).max(0) / 2
}

/// Sends `req` on a kept-alive connection once it can take a request (after a response, the
/// connection's task may still be finishing that message). `Err(Ok(req))` hands the request
/// back when the connection closed before it was sent; `Err(Err(e))` is a failure after.
async fn try_reused(
    mut sender: Sender,
    req: Request<Full<Bytes>>,
) -> Result<(Sender, hyper::Response<hyper::body::Incoming>), Result<Request<Full<Bytes>>, hyper::Error>> {
    if sender.ready().await.is_err() {
        return Err(Ok(req));
    }
    match sender.try_send_request(req).await {
        Ok(resp) => Ok((sender, resp)),
        Err(mut e) => match e.take_message() {
            Some(req) => Err(Ok(req)),
            None => Err(Err(e.into_error())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::keys::Algorithm;

    #[test]
    fn renewal_is_at_half_the_remaining_life() {
        assert_eq!(renew_at(1000, 4600), 2800);
        assert_eq!(renew_at(1000, 900), 1000);
    }

    #[test]
    fn a_credential_for_another_key_or_missing_a_format_is_refused() {
        let (mine, other) = (
            SoftwareKey::generate(Algorithm::Es256).unwrap(),
            SoftwareKey::generate(Algorithm::Es256).unwrap(),
        );
        let jwk = shared::agent::jwk::jwk_from_spki(&other.public_key_der()).unwrap();
        let payload = serde_json::json!({"cnf": {"jwk": jwk}});
        let wit = format!("e30.{}.c2ln", shared::b64::encode_url(payload.to_string().as_bytes()));
        let c = Credential {
            id: "r".into(),
            agent_id: "wimse://td/agent/a".into(),
            model: shared::agent::Model::None,
            owner: None,
            x509: None,
            ca_pem: "CA".into(),
            wit: Some(wit),
            not_after: 0,
            grant_exp: None,
        };
        assert!(check_credential(&c, &other, &["wit".into()]).is_ok());
        let err = check_credential(&c, &mine, &["wit".into()]).unwrap_err();
        assert!(err.to_string().contains("not for this agent's key"), "{err}");
        let err = check_credential(&c, &other, &["x509".into()]).unwrap_err();
        assert!(err.to_string().contains("has no certificate"), "{err}");
    }

    #[tokio::test]
    async fn files_are_written_and_an_existing_key_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let files = AgentFiles::in_dir(dir.path(), None);
        let key = SoftwareKey::generate(Algorithm::EdDsa).unwrap();
        save_new_key(&files.key, &key).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&files.key).unwrap().permissions().mode() & 0o777, 0o600);
        let again = SoftwareKey::generate(Algorithm::EdDsa).unwrap();
        assert!(save_new_key(&files.key, &again).is_err());
        let c = Credential {
            id: "r".into(),
            agent_id: "wimse://td/agent/a".into(),
            model: shared::agent::Model::None,
            owner: None,
            x509: Some("PEM".into()),
            ca_pem: "CA".into(),
            wit: Some("w.i.t".into()),
            not_after: 0,
            grant_exp: None,
        };
        let written = save_credential(&files, &c).unwrap();
        assert_eq!(written.len(), 4);
        assert_eq!(std::fs::read_to_string(&files.wit).unwrap(), "w.i.t\n");
        let client =
            AgentApiClient::new(Endpoint::Unix(dir.path().join("nope.sock")), Duration::from_secs(1));
        assert!(matches!(client.bundle().await, Err(AgentClientError::Connect { .. })));
    }
}
