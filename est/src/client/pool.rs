//! [`PooledClient`]: an [`EstClient`] with a pool of idle keep-alive connections, the one pool
//! every long-lived client of the house uses (the registrar's link to a MASA, the Identity
//! Proxy's link to the Identity Server), so a burst of requests reuses connections instead of
//! each paying a TLS handshake.
//!
//! Which idle connection may be reused is [`shared::idle`]'s rule; here: a reused connection
//! that fails (the server closed it meanwhile) is retried once on a new connection, but a
//! timeout is final (the server may be working on the request); replacing the client (a
//! renewed client certificate) starts a new generation, which drops every connection made
//! with the old one.

use super::{ClientError, EstClient, EstConnection, RawReply};
use shared::idle::{IdleRules, IdleSet};
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::Instant;

/// An [`EstClient`] whose connections are kept alive and reused (see the module doc).
pub struct PooledClient {
    client: RwLock<(u64, EstClient)>,
    idle: Mutex<IdleSet<EstConnection>>,
}

impl std::fmt::Debug for PooledClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledClient").field("idle", &self.idle).finish_non_exhaustive()
    }
}

/// One request of a pooled exchange.
enum Call<'a> {
    Get { path: &'a str, accept: Option<&'a str> },
    Post { path: &'a str, content_type: &'a str, accept: Option<&'a str>, body: &'a [u8] },
}

fn open(c: &EstConnection) -> bool {
    !c.is_closed()
}

impl PooledClient {
    /// A pool of `client`'s connections under `rules`.
    pub fn new(client: EstClient, rules: IdleRules) -> Self {
        PooledClient { client: RwLock::new((0, client)), idle: Mutex::new(IdleSet::new(rules)) }
    }

    /// Uses `client` from now on (e.g. with a renewed client certificate): idle connections
    /// made with the old one are closed, and those in use are not kept after their exchange.
    pub fn replace_client(&self, client: EstClient) {
        let mut current = self.client.write().unwrap_or_else(PoisonError::into_inner);
        let generation = self.idle().renew();
        *current = (generation, client);
    }

    /// The client new connections are made with.
    pub fn client(&self) -> EstClient {
        self.current().1
    }

    /// Idle connections kept for reuse (for tests and diagnostics).
    pub fn idle_connections(&self) -> usize {
        self.idle().len()
    }

    /// `GET path`, with an optional `accept`.
    pub async fn get_raw(&self, path: &str, accept: Option<&str>) -> Result<RawReply, ClientError> {
        self.call(Call::Get { path, accept }).await
    }

    /// `POST path` with `body` as is, `content_type` and an optional `accept`.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        accept: Option<&str>,
        body: &[u8],
    ) -> Result<RawReply, ClientError> {
        self.call(Call::Post { path, content_type, accept, body }).await
    }

    fn current(&self) -> (u64, EstClient) {
        self.client.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, IdleSet<EstConnection>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn call(&self, call: Call<'_>) -> Result<RawReply, ClientError> {
        let (generation, client) = self.current();
        let reused = self.idle().take(Instant::now(), open);
        if let Some(mut conn) = reused {
            match send(&mut conn, &call).await {
                Ok(reply) => {
                    self.idle().keep(conn, generation, Instant::now(), open);
                    return Ok(reply);
                }
                Err(e @ ClientError::Timeout(_)) => return Err(e),
                Err(e) => tracing::debug!(error = %e, "kept-alive connection failed; reconnecting"),
            }
        }
        let mut conn = client.connect().await?;
        let reply = send(&mut conn, &call).await?;
        self.idle().keep(conn, generation, Instant::now(), open);
        Ok(reply)
    }
}

async fn send(conn: &mut EstConnection, call: &Call<'_>) -> Result<RawReply, ClientError> {
    match *call {
        Call::Get { path, accept } => conn.get_raw(path, accept).await,
        Call::Post { path, content_type, accept, body } => {
            conn.post_raw(path, content_type, accept, body.to_vec()).await
        }
    }
}
