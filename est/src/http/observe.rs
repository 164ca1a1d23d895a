//! Operations endpoints and per-request observation shared by every brski server: a request
//! id per request (taken from `X-Request-Id` or made up, echoed back, on the tracing span),
//! Prometheus counters and latency by route template, `GET /metrics`, `GET /healthz`
//! (the process answers) and `GET /readyz` (its dependencies work: database, CA key).

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use shared::metrics::{Metrics, METRICS_CONTENT_TYPE};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

/// The request id header.
pub const REQUEST_ID: &str = "x-request-id";

/// A readiness check: resolves to `Err(why)` when the server should not get traffic.
pub type ReadyCheck = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// Adds `/metrics`, `/healthz` and `/readyz` to `router` and observes every request.
pub fn observed(router: Router, metrics: Arc<Metrics>, ready: ReadyCheck) -> Router {
    let ops = Router::new()
        .route("/metrics", get(render))
        .with_state(metrics.clone())
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(move || readyz(ready.clone())));
    router.merge(ops).layer(axum::middleware::from_fn_with_state(metrics, observe))
}

async fn render(State(m): State<Arc<Metrics>>) -> Response {
    ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], m.render()).into_response()
}

async fn readyz(ready: ReadyCheck) -> Response {
    match tokio::time::timeout(std::time::Duration::from_secs(5), ready()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready\n").into_response(),
        Ok(Err(why)) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")).into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "not ready: the check timed out\n").into_response(),
    }
}

/// The route label: the matched template, with EST's catch-all resolved to its operation.
fn route_of(req: &Request) -> String {
    let path = req.uri().path();
    if let Some(rest) = path.strip_prefix("/.well-known/est") {
        let op = rest.rsplit('/').next().unwrap_or_default();
        if crate::server::OPERATIONS.contains(&op) {
            return format!("/.well-known/est/{op}");
        }
    }
    req.extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into())
}

fn request_id(req: &Request) -> String {
    let given = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).filter(|v| {
        !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    });
    match given {
        Some(v) => v.to_string(),
        None => {
            let mut b = [0u8; 8];
            let _ = getrandom::fill(&mut b);
            hex::encode(b)
        }
    }
}

async fn observe(State(m): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = route_of(&req);
    let method = req.method().to_string();
    let id = request_id(&req);
    let span = tracing::info_span!("request", id = %id, method = %method, route = %route);
    let mut resp = next.run(req).instrument(span).await;
    m.request(&route, &method, resp.status().as_u16(), start.elapsed().as_secs_f64());
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    resp
}
