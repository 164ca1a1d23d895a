//! The agent's HTTP/1.1 client of the proxy's Agent API (`docs/agent-api.md`) over its Unix
//! socket or loopback TCP: [`AgentApiClient`] with kept-alive connections (the house's pool
//! rules, [`shared::idle`]), submission, and polling of pending (202) requests with a bounded
//! wait.

use crate::error::AgentClientError;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_TYPE, HOST, LOCATION, RETRY_AFTER};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use shared::idle::{IdleRules, IdleSet};

use serde_json::Value;
use shared::agent::acr::CREDENTIAL_REQUEST_MEDIA_TYPE;
use shared::agent::wire::{AgentApiRequest, NonceReply, Pending};
use shared::agent::AGENT_API_HEADER;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Largest answer read from the Agent API.
const MAX_REPLY: usize = 1024 * 1024;
/// Longest wait between two polls of a pending request.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(60);

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

/// A client of one proxy's Agent API. Connections are kept alive and reused (clones share them)
/// by the house's pool rules ([`shared::idle`]) with [`IDLE_RULES`]; concurrent calls use
/// separate connections.
#[derive(Debug, Clone)]
pub struct AgentApiClient {
    endpoint: Endpoint,
    timeout: Duration,
    idle: Arc<Mutex<IdleSet<Sender>>>,
}

/// Most idle kept-alive connections a client holds, and for how long: below the Agent API's
/// 10 s header timeout, after which the proxy closes an idle connection.
pub const IDLE_RULES: IdleRules = IdleRules { max_idle: 16, max_idle_age: Duration::from_secs(5) };

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

fn open(s: &Sender) -> bool {
    !s.is_closed()
}

impl AgentApiClient {
    /// A client for `endpoint`; each exchange must finish within `timeout`.
    pub fn new(endpoint: Endpoint, timeout: Duration) -> Self {
        AgentApiClient { endpoint, timeout, idle: Arc::new(Mutex::new(IdleSet::new(IDLE_RULES))) }
    }

    /// An idle connection that is still open and young enough, if any.
    fn reuse(&self) -> Option<Sender> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).take(Instant::now(), open)
    }

    /// Keeps `sender` for the next call.
    fn put_back(&self, sender: Sender) {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).keep(sender, 0, Instant::now(), open);
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
