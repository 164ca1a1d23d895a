//! The proxy's client for the Identity Server: mutual TLS with the LDevID as client
//! certificate, the registrar authenticated by the domain CA from the state directory, and a
//! pool of idle keep-alive connections reused between requests (HTTP/1.1, as the EST client
//! negotiates). Every step is bounded by the configured timeout.

use super::{Identity, ProxyError};
use est::client::{ClientError, EstClient, EstConnection, RawReply};
use est::tls::{client_config, ServerTrust};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

/// Idle connections kept for reuse: one per request in flight under a busy host (an HTTP/1.1
/// connection carries one exchange at a time), so bursts of agents reuse connections instead of
/// each paying a TLS handshake. Idle connections the server closed are skipped.
const MAX_IDLE: usize = 32;

/// The Identity Server's agent endpoints.
pub mod paths {
    /// `GET` a nonce.
    pub const NONCE: &str = "/agent/v1/nonce";
    /// The owner gateway's credential requests (model 2).
    pub const GATEWAY_CREDENTIALS: &str = "/gateway/v1/credentials";
    /// `GET` the trust bundle.
    pub const BUNDLE: &str = "/agent/v1/bundle";
    /// `POST` a credential request; `GET {CREDENTIALS}/{id}` polls one.
    pub const CREDENTIALS: &str = "/agent/v1/credentials";
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

enum Call<'a> {
    Get(&'a str),
    Post(&'a str, &'a [u8]),
}

/// A pool of mTLS connections to the registrar.
pub struct Upstream {
    url: String,
    trust: Option<[u8; 32]>,
    timeout: Duration,
    client: RwLock<(u64, EstClient)>,
    generation: AtomicU64,
    idle: Mutex<Vec<(u64, EstConnection)>>,
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
        Ok(Upstream {
            url: url.to_string(),
            trust: pin,
            timeout,
            client: RwLock::new((0, client)),
            generation: AtomicU64::new(0),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// The server URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Presents `identity` from now on; idle connections made with the old one are dropped.
    pub fn set_identity(&self, identity: &Identity) -> Result<(), ProxyError> {
        let client = est_client(&self.url, self.trust, identity, self.timeout)?;
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        match self.client.write() {
            Ok(mut g) => *g = (generation, client),
            Err(p) => *p.into_inner() = (generation, client),
        }
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
        Ok(())
    }

    fn current(&self) -> (u64, EstClient) {
        match self.client.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn take_idle(&self, generation: u64) -> Option<EstConnection> {
        let mut idle = self.idle.lock().ok()?;
        idle.retain(|(g, c)| *g == generation && !c.is_closed());
        idle.pop().map(|(_, c)| c)
    }

    fn put_idle(&self, generation: u64, conn: EstConnection) {
        if generation != self.generation.load(Ordering::SeqCst) {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < MAX_IDLE {
                idle.push((generation, conn));
            }
        }
    }

    /// `GET path` on the server.
    pub async fn get(&self, path: &str) -> Result<RawReply, UpstreamError> {
        self.call(Call::Get(path)).await
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(&self, path: &str, body: &[u8]) -> Result<RawReply, UpstreamError> {
        self.call(Call::Post(path, body)).await
    }

    async fn call(&self, call: Call<'_>) -> Result<RawReply, UpstreamError> {
        let (generation, client) = self.current();
        let err = |source| UpstreamError { url: self.url.clone(), source };
        // A reused connection may have been closed by the server while idle: one retry on a
        // fresh connection. Errors on a fresh connection are final.
        // A timeout is final too: the server may be working on the request.
        if let Some(mut conn) = self.take_idle(generation) {
            match send(&mut conn, &call).await {
                Ok(reply) => {
                    self.put_idle(generation, conn);
                    return Ok(reply);
                }
                Err(e @ ClientError::Timeout(_)) => return Err(err(e)),
                Err(e) => tracing::debug!(error = %e, "idle connection to the server failed; reconnecting"),
            }
        }
        let mut conn = client.connect().await.map_err(err)?;
        let reply = send(&mut conn, &call).await.map_err(err)?;
        self.put_idle(generation, conn);
        Ok(reply)
    }
}

async fn send(conn: &mut EstConnection, call: &Call<'_>) -> Result<RawReply, ClientError> {
    match call {
        Call::Get(path) => conn.get_raw(path, Some("application/json")).await,
        Call::Post(path, body) => {
            conn.post_raw(path, "application/json", Some("application/json"), body.to_vec()).await
        }
    }
}
