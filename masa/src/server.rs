//! The MASA's HTTP surface: `POST /.well-known/brski/requestvoucher`,
//! `POST /.well-known/brski/requestauditlog`, `GET /healthz`, `/readyz` and `/metrics` (brski_*), served over
//! TLS 1.3/1.2 by `est::http::serve` (which hands every request its connection's
//! [`ConnectionInfo`], including the registrar's client certificate chain).
//!
//! Handlers only move bytes: negotiate, read the body within the limit, call the checks in
//! `request` / `audit`, and map the outcome. Every refusal is logged, recorded in the store's
//! audit log, and answered with its RFC 8995 §5.6 status.

use crate::audit::{self, ACTION_AUDIT_LOG_REFUSED, ACTION_REFUSED};
use crate::error::MasaError;
use crate::media;
use crate::request::{check_voucher_request, Seen};
use crate::state::Masa;
use axum::body::Body;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use est::http::{BodyError, BodyLimits, ConnectionInfo, PeerChainError};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use shared::brski::{PATH_REQUEST_AUDIT_LOG, PATH_REQUEST_VOUCHER};
use shared::metrics::Metrics;
use std::sync::Arc;
use tokio::net::TcpListener;
use x509_cert::Certificate;

/// What the handlers share.
struct ServerState {
    masa: Arc<Masa>,
    metrics: Arc<Metrics>,
}

/// The MASA router. Serve it with [`serve`] (or `est::http::serve`) so that handlers see the
/// TLS connection.
pub fn router(masa: Arc<Masa>) -> Router {
    let metrics = Arc::new(Metrics::new("masa"));
    let ready = ready_check(masa.clone());
    let state = Arc::new(ServerState { masa, metrics: metrics.clone() });
    let router = Router::new()
        .route(PATH_REQUEST_VOUCHER, post(request_voucher))
        .route(PATH_REQUEST_AUDIT_LOG, post(request_audit_log))
        .with_state(state);
    est::http::observed(router, metrics, ready)
}

/// Ready when the store answers and the voucher-signing key signs.
fn ready_check(masa: Arc<Masa>) -> est::http::ReadyCheck {
    Arc::new(move || {
        let masa = masa.clone();
        Box::pin(async move {
            masa.store().schema_version().await.map_err(|e| format!("store: {e}"))?;
            masa.voucher_signer().sign(b"readyz").map_err(|e| format!("voucher key: {e}"))?;
            Ok(())
        })
    })
}

/// The rustls server configuration with the MASA's TLS certificate (TLS 1.3 and 1.2, client
/// certificates requested but optional).
pub(crate) fn tls_config(masa: &Masa) -> Result<Arc<rustls::ServerConfig>, MasaError> {
    let chain = masa
        .tls_chain()
        .iter()
        .map(|c| shared::pki::cert_to_der(c).map(CertificateDer::from))
        .collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::Pkcs8(masa.tls_key().to_pkcs8_der()?.to_vec().into());
    let cfg = est::http::server_tls_config(chain, key).map_err(|e| MasaError::Internal(e.to_string()))?;
    Ok(Arc::new(cfg))
}

/// Serves the MASA on `listener` until the task is dropped.
pub async fn serve(masa: Arc<Masa>, listener: TcpListener) -> Result<(), MasaError> {
    let tls = tls_config(&masa)?;
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    est::http::serve(listener, tls, router(masa))
        .await
        .map_err(|e| MasaError::Io { path: addr, detail: e.to_string() })
}

/// Binds the configured `listen` address; returns the listener (its local address is where
/// the MASA listens, also for port 0).
pub async fn bind(masa: &Masa) -> Result<TcpListener, MasaError> {
    let listen = masa.config().listen;
    TcpListener::bind(listen)
        .await
        .map_err(|e| MasaError::Io { path: listen.to_string(), detail: e.to_string() })
}

/// The facts of a request the handlers use, taken before the body is read.
struct Facts {
    content_type: Option<String>,
    accept: Option<String>,
    remote: Option<String>,
    /// The TLS client certificate chain (unvalidated; judged against ownership records).
    peer: Result<Vec<Certificate>, PeerChainError>,
}

/// Splits a request into its facts and its body.
fn split(req: Request) -> (Facts, Body) {
    let conn = req.extensions().get::<Arc<ConnectionInfo>>().cloned();
    let (parts, body) = req.into_parts();
    let header = |name| {
        parts.headers.get(name).map(|v: &HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let facts = Facts {
        content_type: header(header::CONTENT_TYPE),
        accept: header(header::ACCEPT),
        remote: conn.as_ref().and_then(|c| c.remote).map(|r| r.to_string()),
        peer: conn.as_ref().map_or(Ok(Vec::new()), |c| c.peer_chain()),
    };
    (facts, body)
}

async fn request_voucher(State(st): State<Arc<ServerState>>, req: Request) -> Response {
    let (facts, body) = split(req);
    let mut seen = Seen::default();
    let started = std::time::Instant::now();
    let work = async {
        let format = media::request_format(facts.content_type.as_deref())?;
        let body = read_body(body, st.masa.config().body_limit).await?;
        let answer = media::voucher_format(facts.accept.as_deref())?;
        let peer = facts.peer.as_deref().map_err(|e| MasaError::ClientCertRejected(e.to_string()))?;
        let approved = check_voucher_request(&st.masa, &body, format, peer, &mut seen).await?;
        let actor = seen.registrar.clone().unwrap_or_default();
        let bytes = crate::voucher::issue(&st.masa, &approved, answer, &actor).await?;
        tracing::info!(serial = %approved.serial, assertion = %approved.assertion, format = %answer, "voucher issued");
        st.metrics.issued("voucher", started.elapsed().as_secs_f64());
        Ok::<_, MasaError>((answer, bytes))
    };
    match with_timeout(&st, work).await {
        Ok((format, bytes)) => {
            (StatusCode::OK, [(header::CONTENT_TYPE, format.media_type())], bytes).into_response()
        }
        Err(e) => refuse(&st, ACTION_REFUSED, &seen, &facts, e).await,
    }
}

async fn request_audit_log(State(st): State<Arc<ServerState>>, req: Request) -> Response {
    let (facts, body) = split(req);
    let mut seen = Seen::default();
    let work = async {
        let format = media::request_format(facts.content_type.as_deref())?;
        let body = read_body(body, st.masa.config().body_limit).await?;
        let log = audit::check_audit_log_request(&st.masa, &body, format, &mut seen).await?;
        tracing::info!(serial = ?seen.serial, events = log.events.len(), "audit log served");
        Ok::<_, MasaError>(log.to_json())
    };
    match with_timeout(&st, work).await {
        Ok(json) => (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => refuse(&st, ACTION_AUDIT_LOG_REFUSED, &seen, &facts, e).await,
    }
}

/// Runs a handler's work under the configured request timeout.
async fn with_timeout<T>(
    st: &ServerState,
    work: impl std::future::Future<Output = Result<T, MasaError>>,
) -> Result<T, MasaError> {
    tokio::time::timeout(st.masa.config().request_timeout(), work).await.unwrap_or(Err(MasaError::Timeout))
}

/// Logs, audits and answers a refusal.
async fn refuse(st: &ServerState, action: &str, seen: &Seen, facts: &Facts, e: MasaError) -> Response {
    let remote = facts.remote.clone();
    let status = e.status().as_u16();
    let serial = seen.serial.as_deref().unwrap_or("-");
    if status >= 500 {
        tracing::error!(status, serial, ?remote, reason = %e, "{action}");
    } else {
        tracing::warn!(status, serial, ?remote, reason = %e, "{action}");
    }
    st.metrics.refusal(e.code());
    audit::record_refusal(&st.masa, action, seen, remote, &e).await;
    e.to_response(media::wants_problem_json(facts.accept.as_deref()))
}

/// Reads the body within `limit` and the default timeout (the one reader of every server), as
/// a [`MasaError`].
async fn read_body(body: Body, limit: usize) -> Result<Bytes, MasaError> {
    est::http::read_body(body, BodyLimits::new(limit)).await.map_err(|e| match e {
        BodyError::TooLarge(n) => MasaError::PayloadTooLarge(n),
        BodyError::Timeout(t) => MasaError::BodyTimeout(t.as_secs()),
        BodyError::Read(r) => MasaError::BodyRead(r),
    })
}
