//! The Agent API's routes (`docs/agent-api.md`), served by the listeners of `listen.rs`
//! (a Unix socket, and loopback TCP only when asked).
//!
//! | Method, path | What the proxy does |
//! |---|---|
//! | `GET /v1/nonce` | a server nonce: one kept from a batch the proxy fetched (`?count=16`), else a new batch |
//! | `POST /v1/credentials` | checks the body (media type, 64 KiB, `{"acr","oa"}`) and the ACR's proof of possession, adds evidence about the caller, forwards, relays 200 / 202 (`Location: /v1/credentials/{id}`) / 4xx |
//! | `GET /v1/credentials/{id}` | polls a pending request, for the caller (uid) that made it |
//! | `GET /v1/bundle` | the server's trust bundle, cached for five minutes |
//!
//! Every request must carry `Agent-Identity-Api: true` (otherwise 400, so a browser or an
//! SSRF-able HTTP client cannot be made to talk to the API). Every error is an RFC 9457
//! problem with a stable `reason`. One log line per request names the caller (uid, pid), the
//! request and the outcome.

use super::evidence::Caller;
use super::peer::Peer;
use super::upstream::paths;
use super::{Proxy, BUNDLE_TTL};
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, HeaderValue, Request, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use bytes::Bytes;
use est::client::RawReply;
use est::http::{BodyLimits, Problem, Reason, MEDIA_PROBLEM};
use serde_json::Value;
use shared::agent::acr::CREDENTIAL_REQUEST_MEDIA_TYPE;
use shared::agent::jwt::unix_now;
use shared::agent::wire::{AgentApiRequest, Bundle, CredentialRequest, NonceReply, Pending, ProxyRef};
use shared::agent::{verify_acr, AgentError, Model, AGENT_API_HEADER};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest request body.
pub(crate) const MAX_REQUEST: usize = 64 * 1024;
/// Longest wait for a request's body.
pub(crate) const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Retry-After sent on 202 when the server gave none.
const DEFAULT_RETRY_AFTER: u64 = 5;

/// An Agent API refusal: a stable reason (which fixes the status, the same as the Identity
/// Server's and the owner gateway's for the same refusal) and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// Stable reason code (its status is [`Reason::status`]).
    pub reason: Reason,
    /// What a person can act on.
    pub detail: String,
}

impl ApiError {
    /// A refusal.
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        ApiError { reason, detail: detail.into() }
    }

    /// The HTTP status of this refusal.
    pub fn status(&self) -> StatusCode {
        self.reason.status()
    }

    fn upstream(detail: impl std::fmt::Display) -> Self {
        Self::new(Reason::Upstream, detail.to_string())
    }
}

/// Agent-object refusals take the reason of the one table in `est::http`.
impl From<AgentError> for ApiError {
    fn from(e: AgentError) -> Self {
        ApiError::new(Reason::from(&e), e.to_string())
    }
}

/// The one mapping from an Agent API refusal to HTTP.
impl From<&ApiError> for Problem {
    fn from(e: &ApiError) -> Self {
        Problem::agent(e.reason, e.detail.clone())
    }
}

/// The outcome reason of a response, for the request log line.
#[derive(Debug, Clone)]
pub(super) struct Outcome(pub(super) String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = Problem::from(&self).into_response();
        r.extensions_mut().insert(Outcome(self.reason.as_str().to_string()));
        r
    }
}

/// The Agent API router. Each request must carry a [`Peer`] extension (the connection
/// handlers add it). `/metrics`, `/healthz` and `/readyz` need no Agent API header.
pub(crate) fn router(proxy: Arc<Proxy>) -> Router {
    let api = Router::new()
        .route("/v1/nonce", get(nonce))
        .route("/v1/credentials", post(credentials))
        .route("/v1/credentials/{id}", get(poll))
        .route("/v1/bundle", get(bundle))
        .fallback(|| async { ApiError::new(Reason::NotFound, "no such Agent API resource") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(Reason::MethodNotAllowed, "method not allowed here")
        })
        .layer(middleware::from_fn(require_api_header))
        .with_state(proxy.clone());
    est::http::observed(api, proxy.metrics().clone(), ready_check(proxy))
}

/// Ready while the LDevID is valid (the server would refuse the proxy otherwise).
fn ready_check(proxy: Arc<Proxy>) -> est::http::ReadyCheck {
    Arc::new(move || {
        let proxy = proxy.clone();
        Box::pin(async move {
            let (_, not_after) = proxy.identity().validity();
            if not_after <= unix_now() {
                return Err("the LDevID has expired; the proxy is bootstrapping again".into());
            }
            Ok(())
        })
    })
}

/// 400 unless the request carries `Agent-Identity-Api: true`.
async fn require_api_header(req: Request<Body>, next: Next) -> Response {
    let ok = req
        .headers()
        .get(AGENT_API_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if !ok {
        return ApiError::new(
            Reason::MissingApiHeader,
            format!("every Agent API request must carry the header '{AGENT_API_HEADER}: true'"),
        )
        .into_response();
    }
    next.run(req).await
}

/// Turns a server reply into an Agent API response: 200 and 4xx as they are (JSON or problem
/// bodies only), 202 with `Location` rewritten to this API, 5xx as 502.
fn relay(proxy: &Proxy, reply: RawReply, peer: &Peer, what: &str, via_gateway: bool) -> Response {
    let status = reply.status.as_u16();
    let json_body =
        reply.content_type.starts_with("application/json") || reply.content_type.starts_with(MEDIA_PROBLEM);
    if status >= 500 {
        return ApiError::upstream(format!("the Identity Server failed ({status}): {}", reply.detail()))
            .into_response();
    }
    if !json_body {
        return ApiError::upstream(format!(
            "the Identity Server answered {status} with '{}' instead of JSON",
            reply.content_type
        ))
        .into_response();
    }
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let mut outcome = what.to_string();
    if reply.status == StatusCode::ACCEPTED {
        let id = serde_json::from_slice::<Pending>(&reply.body).ok().map(|p| p.id).filter(|id| valid_id(id));
        let Some(id) = id else {
            return ApiError::upstream("the Identity Server answered 202 without a usable request id")
                .into_response();
        };
        proxy.remember_pending(&id, peer.uid, via_gateway);
        let secs = reply.retry_after.map(|d| d.as_secs().max(1)).unwrap_or(DEFAULT_RETRY_AFTER);
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        if let Ok(v) = HeaderValue::from_str(&format!("/v1/credentials/{id}")) {
            headers.insert(header::LOCATION, v);
        }
        outcome = format!("pending {id}");
    } else if status >= 400 {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA_PROBLEM));
        let reason = serde_json::from_slice::<Value>(&reply.body)
            .ok()
            .and_then(|v| v.get("reason").and_then(Value::as_str).map(str::to_string));
        outcome = format!("refused by the server: {}", reason.unwrap_or_else(|| status.to_string()));
    }
    let mut r = (reply.status, headers, reply.body).into_response();
    r.extensions_mut().insert(Outcome(outcome));
    r
}

/// A request id we put into a URL path: letters, digits, `-` and `_`, at most 128.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

async fn nonce(State(proxy): State<Arc<Proxy>>, Extension(peer): Extension<Peer>) -> Response {
    match proxy.server_nonce().await {
        Ok(Ok((nonce, exp))) => {
            let mut r = axum::Json(NonceReply { nonce, exp, nonces: None }).into_response();
            r.extensions_mut().insert(Outcome("nonce".into()));
            r
        }
        Ok(Err(refused)) => relay(&proxy, refused, &peer, "nonce", false),
        Err(e) => e.into_response(),
    }
}

/// Server nonces are fetched this many at a time ...
const NONCE_BATCH: usize = 16;
/// ... and handed out while they have at least this many seconds left (the server gives 60),
/// so an agent has time to sign and submit.
const NONCE_MIN_LIFE: i64 = 45;

impl Proxy {
    /// A server nonce (b64url) and its expiry: one left from an earlier batch, else a new batch
    /// of [`NONCE_BATCH`] from the server (one round trip serves many requests). The server's
    /// refusal comes back as `Ok(Err(reply))` to be relayed.
    pub(crate) async fn server_nonce(&self) -> Result<Result<(String, i64), RawReply>, ApiError> {
        let now = unix_now();
        if let Some(n) = self.pooled_nonce(now) {
            return Ok(Ok(n));
        }
        let path = format!("{}?count={NONCE_BATCH}", paths::NONCE);
        let reply = self.upstream().get(&path).await.map_err(ApiError::upstream)?;
        if reply.status != StatusCode::OK {
            return Ok(Err(reply));
        }
        let bad = || ApiError::upstream("the server's nonce answer has no base64url nonce");
        let v: NonceReply = serde_json::from_slice(&reply.body).map_err(|_| bad())?;
        let exp = v.exp;
        let mut batch: Vec<String> = v.nonces.unwrap_or_else(|| vec![v.nonce]);
        batch.retain(|n| shared::b64::decode_url(n).is_ok_and(|b| b.len() == 32));
        let first = batch.pop().ok_or_else(bad)?;
        let mut pool = self.nonces.lock().unwrap_or_else(|p| p.into_inner());
        pool.extend(batch.into_iter().map(|n| (n, exp)));
        Ok(Ok((first, exp)))
    }

    fn pooled_nonce(&self, now: i64) -> Option<(String, i64)> {
        let mut pool = self.nonces.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((n, exp)) = pool.pop_front() {
            if exp - now >= NONCE_MIN_LIFE {
                return Some((n, exp));
            }
        }
        None
    }
}

async fn bundle(State(proxy): State<Arc<Proxy>>) -> Response {
    match proxy.bundle().await {
        Ok(b) => {
            let mut r = axum::Json(b.as_ref()).into_response();
            r.extensions_mut().insert(Outcome("bundle".into()));
            r
        }
        Err(e) => e.into_response(),
    }
}

impl Proxy {
    /// The server's trust bundle (`{"trust_domain", "issuance_uri", "ca_pem", "jwks"}`),
    /// fetched at most every [`BUNDLE_TTL`].
    pub async fn bundle(&self) -> Result<Arc<Bundle>, ApiError> {
        let mut cached = self.bundle.lock().await;
        if let Some((at, b)) = cached.as_ref() {
            if at.elapsed() < BUNDLE_TTL {
                return Ok(b.clone());
            }
        }
        let reply = self.upstream().get(paths::BUNDLE).await.map_err(ApiError::upstream)?;
        if reply.status != StatusCode::OK {
            return Err(ApiError::upstream(format!(
                "the Identity Server refused the bundle ({}): {}",
                reply.status.as_u16(),
                reply.detail()
            )));
        }
        let v: Bundle = serde_json::from_slice(&reply.body).map_err(|e| {
            ApiError::upstream(format!(
                "the bundle is not {{\"trust_domain\", \"issuance_uri\", \"ca_pem\", \"jwks\"}}: {e}"
            ))
        })?;
        let b = Arc::new(v);
        *cached = Some((Instant::now(), b.clone()));
        Ok(b)
    }
}

/// Reads the body within the Agent API's limits (the one reader of every server, so an
/// oversize body is drained and answered 413, and the one reason table).
async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    est::http::read_body(body, BodyLimits::new(MAX_REQUEST).with_timeout(BODY_TIMEOUT))
        .await
        .map_err(|e| ApiError::new(Reason::from(&e), e.to_string()))
}

fn media_type(headers: &HeaderMap) -> String {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    shared::brski::media::essence(ct)
}

async fn credentials(
    State(proxy): State<Arc<Proxy>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match forward_request(&proxy, &peer, &headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn forward_request(
    proxy: &Proxy,
    peer: &Peer,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let mt = media_type(headers);
    if mt != CREDENTIAL_REQUEST_MEDIA_TYPE {
        return Err(ApiError::new(
            Reason::UnsupportedMediaType,
            format!("Content-Type must be {CREDENTIAL_REQUEST_MEDIA_TYPE}, got '{mt}'"),
        ));
    }
    let bytes = read_body(body).await?;
    let req: AgentApiRequest = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(Reason::Malformed, format!("the body must be {{\"acr\", \"oa\"}}: {e}"))
    })?;
    let bundle = proxy.bundle().await?;
    let audience = bundle.issuance_uri.as_str();
    // The proof of possession is checked here too: the proxy signs evidence only for a
    // request whose signer holds the key it names.
    let acr = verify_acr(&req.acr, audience, unix_now())?;
    let server_nonce = match &acr.claims.nonce {
        Some(n) => shared::b64::decode_url(n)
            .map_err(|_| AgentError::Nonce("the ACR nonce is not base64url".into()))?,
        None => fresh_nonce(proxy).await?,
    };
    let acr_hash = shared::b64::decode_url(&acr.hash).map_err(|e| ApiError::upstream(e.to_string()))?;
    let agent_id =
        acr.agent_id.as_ref().map(|a| a.as_str().to_string()).unwrap_or_else(|| acr.claims.iss.clone());
    let exe = match peer.pid {
        Some(pid) => proxy.exe.executable(pid).await,
        None => None,
    };
    let caller = Caller { peer: *peer, exe };
    let identity = proxy.identity();
    let cmw = proxy.evidence(&identity, &server_nonce, &acr_hash, &agent_id, &caller, unix_now()).await?;
    let forward = CredentialRequest {
        acr: acr.text.clone(),
        oa: req.oa,
        evidence: cmw,
        proxy: Some(ProxyRef { ldevid_sha256: identity.ldevid_sha256.clone() }),
    };
    tracing::debug!(agent = %agent_id, model = %acr.claims.req.model, caller = %peer.describe(), "forwarding a credential request");
    let (upstream, path, via_gateway) = if acr.claims.req.model == Model::OwnerMediated {
        let gw = proxy.gateway().ok_or_else(|| {
            AgentError::Policy(
                "model owner-mediated needs an owner gateway; none is configured (--gateway)".into(),
            )
        })?;
        (gw, paths::GATEWAY_CREDENTIALS, true)
    } else {
        (proxy.upstream(), paths::CREDENTIALS, false)
    };
    let reply = upstream
        .post_json(path, &serde_json::to_vec(&forward).map_err(ApiError::upstream)?)
        .await
        .map_err(ApiError::upstream)?;
    Ok(relay(proxy, reply, peer, &format!("issued to {agent_id}"), via_gateway))
}

/// A fresh server nonce (for an offline model 1 ACR that carries none).
async fn fresh_nonce(proxy: &Proxy) -> Result<Vec<u8>, ApiError> {
    match proxy.server_nonce().await? {
        Ok((n, _)) => shared::b64::decode_url(&n).map_err(|_| ApiError::upstream("bad nonce")),
        Err(reply) => Err(ApiError::upstream(format!("the server refused a nonce: {}", reply.detail()))),
    }
}

async fn poll(
    State(proxy): State<Arc<Proxy>>,
    Extension(peer): Extension<Peer>,
    UrlPath(id): UrlPath<String>,
) -> Response {
    if !valid_id(&id) {
        return ApiError::new(Reason::NotFound, "no such request").into_response();
    }
    let via_gateway = match proxy.pending_owner(&id) {
        None => {
            return ApiError::new(
                Reason::NotFound,
                format!(
                "this proxy has no pending request {id} (expired, or the proxy restarted): submit a new one"
            ),
            )
            .into_response()
        }
        Some((uid, _)) if uid != peer.uid => {
            return ApiError::new(Reason::NotYours, format!("request {id} belongs to another caller"))
                .into_response()
        }
        Some((_, via_gateway)) => via_gateway,
    };
    let (upstream, base) = match (via_gateway, proxy.gateway()) {
        (true, Some(gw)) => (gw, paths::GATEWAY_CREDENTIALS),
        _ => (proxy.upstream(), paths::CREDENTIALS),
    };
    let path = format!("{base}/{id}");
    match upstream.get(&path).await {
        Ok(reply) => {
            if reply.status != StatusCode::ACCEPTED && reply.status.as_u16() < 500 {
                proxy.forget_pending(&id);
            }
            relay(&proxy, reply, &peer, &format!("issued ({id})"), via_gateway)
        }
        Err(e) => ApiError::upstream(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_for_urls_are_plain() {
        assert!(valid_id("AbC-d_9"));
        for bad in ["", "../x", "a/b", "a?b", "a%2f", &"x".repeat(129)] {
            assert!(!valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn problems_carry_status_reason_and_media_type() {
        // The same status as the Identity Server's and the gateway's (403, not the old 400).
        let r = ApiError::from(AgentError::Nonce("used".into())).into_response();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let r = ApiError::from(AgentError::Signature("ACR")).into_response();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(r.headers()[header::CONTENT_TYPE], MEDIA_PROBLEM);
        let r = ApiError::from(AgentError::Policy("no".into())).into_response();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
}
