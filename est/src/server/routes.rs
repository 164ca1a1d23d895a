//! The EST router: `/.well-known/est[/<label>]/<operation>` split into label and operation,
//! method checks, the request timeout, logging, and dispatch to the handlers.

use super::config::{ConfigError, EstServerConfig};
use super::error::EstError;
use super::handlers::{cacerts, csrattrs, enroll};
use super::state::ServerState;
use crate::authority::{Authority, Operation};
use crate::http::ConnectionInfo;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use std::sync::Arc;

/// The EST router: `/.well-known/est[/<label>]/{cacerts,csrattrs,simpleenroll,simplereenroll,
/// serverkeygen,fullcmc}`; every other path answers a 404 problem. Serve it with
/// [`serve`](crate::server::serve) so handlers see the TLS connection (without it: no client certificate, no channel binding).
pub fn router(config: EstServerConfig, authority: Arc<dyn Authority>) -> Result<Router, ConfigError> {
    config.check()?;
    let state = Arc::new(ServerState::new(config, authority));
    Ok(Router::new()
        .route("/.well-known/est/{*rest}", any(handle))
        .fallback(|req: Request| async move {
            let e = EstError::NotFound(req.uri().path().to_string());
            tracing::info!(path = %req.uri().path(), status = 404, "EST request refused: {e}");
            e.into_response()
        })
        .with_state(state))
}

/// An EST operation, as named in the path.
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

/// Every `/.well-known/est/...` request: dispatch under the request timeout, then log the
/// outcome and answer it (errors as RFC 9457 problems).
async fn handle(State(st): State<Arc<ServerState>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let conn = req.extensions().get::<Arc<ConnectionInfo>>().cloned().unwrap_or_default();
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

/// Label, operation and method checks, then the operation's handler.
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
        Op::CaCerts => cacerts::cacerts(st, label),
        Op::CsrAttrs => csrattrs::csrattrs(st, policy, label),
        Op::FullCmc => Err(EstError::NotImplemented("Full CMC is not implemented; use simpleenroll".into())),
        Op::Enroll => enroll::enroll(st, policy, conn, label, Operation::Enroll, req).await,
        Op::Reenroll => enroll::enroll(st, policy, conn, label, Operation::Reenroll, req).await,
        Op::ServerKeygen => {
            if !policy.serverkeygen {
                return Err(EstError::NotImplemented(
                    "server-side key generation is not offered for this label".into(),
                ));
            }
            enroll::enroll(st, policy, conn, label, Operation::ServerKeygen, req).await
        }
    }
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
}
