//! The proxy's client for the Identity Server: mutual TLS with the LDevID as client
//! certificate, the registrar authenticated by the domain CA from the state directory, and a
//! pool of idle keep-alive connections reused between requests (HTTP/1.1, as the EST client
//! negotiates). Every step is bounded by the configured timeout.

use super::{Identity, ProxyError};
use est::client::{ClientError, EstClient, IdleRules, PooledClient, RawReply};
use est::tls::{client_config, ServerTrust};
use std::time::Duration;

/// Idle connections kept for reuse: one per request in flight under a busy host (an HTTP/1.1
/// connection carries one exchange at a time), for at most 20 s (the one pool's defaults).
const POOL: IdleRules = IdleRules { max_idle: 32, max_idle_age: Duration::from_secs(20) };

/// The Identity Server's agent endpoints.
pub(crate) mod paths {
    /// `GET` a nonce.
    pub(crate) const NONCE: &str = "/agent/v1/nonce";
    /// The owner gateway's credential requests (model 2).
    pub(crate) const GATEWAY_CREDENTIALS: &str = "/gateway/v1/credentials";
    /// `GET` the trust bundle.
    pub(crate) const BUNDLE: &str = "/agent/v1/bundle";
    /// `POST` a credential request; `GET {CREDENTIALS}/{id}` polls one.
    pub(crate) const CREDENTIALS: &str = "/agent/v1/credentials";
}

/// Why the server could not be asked.
#[derive(Debug, thiserror::Error)]
#[error("the Identity Server at {url} cannot be reached: {source}")]
pub struct UpstreamError {
    /// The server URL.
    pub url: String,
    /// The cause.
    pub source: ClientError,
}

/// A pool of mTLS connections to the registrar.
pub struct Upstream {
    url: String,
    trust: Option<[u8; 32]>,
    timeout: Duration,
    pool: PooledClient,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").field("url", &self.url).finish_non_exhaustive()
    }
}

fn est_client(
    url: &str,
    pin: Option<[u8; 32]>,
    identity: &Identity,
    timeout: Duration,
) -> Result<EstClient, ProxyError> {
    let trust = match pin {
        Some(p) => ServerTrust::PinnedSha256(p),
        None => ServerTrust::Explicit(identity.domain_ca.clone()),
    };
    let tls = client_config(&trust, Some((identity.chain.clone(), identity.key.clone())))
        .map_err(|e| ProxyError::Config(format!("TLS client for {url}: {e}")))?;
    EstClient::new(url, None, tls)
        .map(|c| c.with_timeout(timeout))
        .map_err(|e| ProxyError::Config(e.to_string()))
}

impl Upstream {
    /// A client for `url` (`https://host:port`) presenting `identity`, trusting the domain CA.
    pub fn new(url: &str, identity: &Identity, timeout: Duration) -> Result<Self, ProxyError> {
        Self::pinned(url, None, identity, timeout)
    }

    /// Like [`Upstream::new`]; with `pin`, the server's certificate must have that SHA-256
    /// (an owner gateway's self-signed organization certificate).
    pub fn pinned(
        url: &str,
        pin: Option<[u8; 32]>,
        identity: &Identity,
        timeout: Duration,
    ) -> Result<Self, ProxyError> {
        let client = est_client(url, pin, identity, timeout)?;
        Ok(Upstream { url: url.to_string(), trust: pin, timeout, pool: PooledClient::new(client, POOL) })
    }

    /// The server URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Presents `identity` from now on; idle connections made with the old one are dropped.
    pub fn set_identity(&self, identity: &Identity) -> Result<(), ProxyError> {
        self.pool.replace_client(est_client(&self.url, self.trust, identity, self.timeout)?);
        Ok(())
    }

    /// `GET path` on the server.
    pub async fn get(&self, path: &str) -> Result<RawReply, UpstreamError> {
        self.pool.get_raw(path, Some("application/json")).await.map_err(|source| self.error(source))
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(&self, path: &str, body: &[u8]) -> Result<RawReply, UpstreamError> {
        let json = Some("application/json");
        self.pool.post_raw(path, "application/json", json, body).await.map_err(|source| self.error(source))
    }

    fn error(&self, source: ClientError) -> UpstreamError {
        UpstreamError { url: self.url.clone(), source }
    }
}
