//! The gateway's HTTP surface: `POST /gateway/v1/credentials`, `GET
//! /gateway/v1/credentials/{id}`, `GET /healthz`. Every refusal is a [`Refusal`].

use super::check::{check_request, proxy_identity, ProxyIdentity, Rules};
use super::problem::Refusal;
use super::state::{Gateway, Polled};
use super::upstream::submit;
use super::CREDENTIALS_PATH;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use est::http::{BodyLimits, ConnectionInfo, Reason};
use shared::agent::acr::CREDENTIAL_REQUEST_MEDIA_TYPE;
use shared::agent::jwt::unix_now;
use std::sync::Arc;
use std::time::Instant;

/// Largest request body.
pub(super) const MAX_BODY: usize = 64 * 1024;
/// Retry-After of a pending answer and of a full queue.
const RETRY_AFTER_SECS: u64 = 1;

/// The routes.
pub(super) fn routes(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route(CREDENTIALS_PATH, post(create))
        .route(&format!("{CREDENTIALS_PATH}/{{id}}"), get(poll))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(gw)
}

fn proxy_of(gw: &Gateway, req: &Request) -> Result<ProxyIdentity, Refusal> {
    let conn = req.extensions().get::<Arc<ConnectionInfo>>().cloned().unwrap_or_default();
    proxy_identity(&conn, &gw.opts.ca)
}

fn answer(r: Result<Response, Refusal>, what: &str) -> Response {
    r.unwrap_or_else(|p| {
        tracing::warn!(status = %p.status(), reason = p.reason.as_str(), detail = %p.detail, "{what} refused");
        p.into_response()
    })
}

async fn create(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    answer(create_inner(&gw, req).await, "gateway request")
}

async fn create_inner(gw: &Gateway, req: Request) -> Result<Response, Refusal> {
    let proxy = proxy_of(gw, &req)?;
    gw.limiter.take(&proxy.hash, Instant::now()).map_err(|secs| {
        Refusal::new(Reason::RateLimited, "this proxy sends requests too fast").retry_after(secs)
    })?;
    gw.sweep(unix_now());
    let slot = gw.slots.take().ok_or_else(|| {
        Refusal::new(Reason::QueueFull, "the gateway's queue is full").retry_after(RETRY_AFTER_SECS)
    })?;
    let body = read_body(req).await?;
    let now = unix_now();
    let rules =
        Rules { issuance_uri: &gw.opts.issuance_uri, owner: &gw.owner.config.id, agents: &gw.opts.agents };
    let checked = check_request(&body, &proxy, &rules, now)?;
    if gw.opts.manual {
        let id = gw.enqueue(checked, &proxy, slot, now)?;
        return Ok(pending(&id));
    }
    let relayed = submit(&gw.owner, &gw.opts, &checked, &proxy.hash).await?;
    drop(slot);
    Ok(relayed.into_response())
}

async fn read_body(req: Request) -> Result<Bytes, Refusal> {
    let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let base = shared::brski::media::essence(ct);
    if base != "application/json" && base != CREDENTIAL_REQUEST_MEDIA_TYPE {
        return Err(Refusal::new(
            Reason::UnsupportedMediaType,
            format!("Content-Type must be application/json or {CREDENTIAL_REQUEST_MEDIA_TYPE}"),
        ));
    }
    est::http::read_body(req.into_body(), BodyLimits::new(MAX_BODY))
        .await
        .map_err(|e| Refusal::new(Reason::from(&e), e.to_string()))
}

fn pending(id: &str) -> Response {
    let mut r = (StatusCode::ACCEPTED, Json(shared::agent::wire::Pending::new(id))).into_response();
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    if let Ok(v) = HeaderValue::from_str(&format!("{CREDENTIALS_PATH}/{id}")) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

async fn poll(State(gw): State<Arc<Gateway>>, Path(id): Path<String>, req: Request) -> Response {
    let r = async {
        let proxy = proxy_of(&gw, &req)?;
        drop(req);
        match gw.poll(&id, &proxy.hash, unix_now()).await? {
            Polled::Pending => Ok(pending(&id)),
            Polled::Done(Ok(relayed)) => Ok(relayed.into_response()),
            Polled::Done(Err(p)) => Err(p),
        }
    };
    answer(r.await, "gateway poll")
}
