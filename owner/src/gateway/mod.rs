//! Model 2 (owner-mediated): the owner gateway, an mTLS service for Identity Proxies.
//!
//! `POST /gateway/v1/credentials` takes the body of the server's `POST /agent/v1/credentials`
//! (`{acr, oa: null, evidence, proxy: {ldevid_sha256}}`) from a proxy whose TLS client
//! certificate is an LDevID of the trust domain. The gateway checks the ACR and its rules,
//! rate-limits per proxy (429 + Retry-After), bounds the requests in flight (503), optionally
//! waits for a person (202 + `Location: /gateway/v1/credentials/{id}`), then signs the OA with
//! its certificate in `x5c`, submits to the Identity Server with the same certificate as TLS
//! client certificate, and relays the answer.
//!
//! Modules: `problem` (refusals), `limit` (rate and queue), `pending` (the approval records on
//! disk), `check` (proxy identity, request and rules), `upstream` (OA and submission),
//! `state` (what the handlers share), `handlers` (HTTP).

pub(crate) mod check;
mod handlers;
pub(crate) mod limit;
pub(crate) mod pending;
pub(crate) mod problem;
mod state;
pub(crate) mod upstream;

use crate::{OwnerError, OwnerIdentity};
use shared::keys::Signer;
use shared::pki;
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpListener;
use x509_cert::Certificate;

pub use pending::{PendingDir, PendingRecord};
pub(crate) use state::Gateway;

/// Where proxies post requests.
pub const CREDENTIALS_PATH: &str = "/gateway/v1/credentials";

/// The gateway's settings (from `owner.toml` `[gateway]`, overridden by flags).
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// The Identity Server URL.
    pub server: String,
    /// The domain CA certificates (server trust, proxy LDevIDs).
    pub ca: Vec<Certificate>,
    /// The ACR audience, `wimse://<trust-domain>`.
    pub issuance_uri: String,
    /// Agent id patterns approved.
    pub agents: Vec<String>,
    /// Requests per second per proxy.
    pub rate_per_sec: u32,
    /// Requests in flight or waiting, at most.
    pub queue: usize,
    /// Wait for a person on every request.
    pub manual: bool,
    /// OA constraint `max_ttl`.
    pub max_ttl: Option<u64>,
    /// Grant lifetime in seconds.
    pub grant_secs: i64,
}

impl GatewayOptions {
    /// The options of `owner.toml`, with the server URL and CA file overridable.
    pub fn from_owner(
        owner: &OwnerIdentity,
        server: Option<&str>,
        ca: Option<&Path>,
    ) -> Result<Self, OwnerError> {
        let g = &owner.config.gateway;
        Ok(GatewayOptions {
            server: owner.server(server)?,
            ca: owner.domain_ca(ca)?,
            issuance_uri: owner.config.issuance_uri()?,
            agents: g.agents.clone(),
            rate_per_sec: g.rate_per_sec,
            queue: g.queue,
            manual: g.manual,
            max_ttl: g.max_ttl_secs,
            grant_secs: g.grant_secs,
        })
    }
}

/// The gateway's TLS server configuration: the owner certificate and key (proxies pin the
/// certificate's SHA-256), client certificates requested and judged by the handlers.
pub(crate) fn tls_config(owner: &OwnerIdentity) -> Result<Arc<rustls::ServerConfig>, OwnerError> {
    let der = pki::cert_to_der(&owner.cert)?;
    let key: Arc<dyn Signer> = owner.key.clone();
    let cfg = est::http::server_tls_config_with_signer(vec![der.into()], key)
        .map_err(|e| OwnerError::Tls(e.to_string()))?;
    Ok(Arc::new(cfg))
}

/// Serves the gateway on `listener` until the task is dropped.
pub async fn serve(
    owner: OwnerIdentity,
    opts: GatewayOptions,
    listener: TcpListener,
) -> Result<(), OwnerError> {
    let tls = tls_config(&owner)?;
    if opts.agents.is_empty() {
        tracing::warn!("[gateway] agents is empty: every request will be refused");
    }
    let router = handlers::routes(Arc::new(Gateway::new(owner, opts)));
    est::http::serve(listener, tls, router).await.map_err(|e| OwnerError::Tls(e.to_string()))
}
