//! [`PooledClient`]: an [`EstClient`] with a pool of idle keep-alive connections, the one pool
//! every long-lived client of the house uses (the registrar's link to a MASA, the Identity
//! Proxy's link to the Identity Server), so a burst of requests reuses connections instead of
//! each paying a TLS handshake.
//!
//! The rules, in one place: a connection is reused only while it is open and younger than
//! [`PoolOptions::max_idle_age`] (servers close idle connections after a while; a fresh
//! handshake is cheaper than a failed exchange); at most [`PoolOptions::max_idle`] are kept;
//! a reused connection that fails (the server closed it meanwhile) is retried once on a new
//! connection, but a timeout is final (the server may be working on the request); replacing
//! the client (a renewed client certificate) drops every connection made with the old one.

use super::{ClientError, EstClient, EstConnection, RawReply};
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

/// How many idle connections are kept, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolOptions {
    /// Most idle connections kept; more are closed after their exchange.
    pub max_idle: usize,
    /// An idle connection older than this is closed rather than reused.
    pub max_idle_age: Duration,
}

impl Default for PoolOptions {
    /// 32 connections (one per request in flight under a busy host), 20 s (below the usual
    /// server idle timeouts).
    fn default() -> Self {
        PoolOptions { max_idle: 32, max_idle_age: Duration::from_secs(20) }
    }
}

/// An idle connection, the client generation that made it, and since when it is idle.
struct Idle {
    generation: u64,
    since: Instant,
    conn: EstConnection,
}

/// An [`EstClient`] whose connections are kept alive and reused (see the module doc).
pub struct PooledClient {
    client: RwLock<(u64, EstClient)>,
    idle: Mutex<Vec<Idle>>,
    options: PoolOptions,
}

impl std::fmt::Debug for PooledClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledClient").field("options", &self.options).finish_non_exhaustive()
    }
}

/// One request of a pooled exchange.
enum Call<'a> {
    Get { path: &'a str, accept: Option<&'a str> },
    Post { path: &'a str, content_type: &'a str, accept: Option<&'a str>, body: &'a [u8] },
}

impl PooledClient {
    /// A pool of `client`'s connections.
    pub fn new(client: EstClient, options: PoolOptions) -> Self {
        PooledClient { client: RwLock::new((0, client)), idle: Mutex::new(Vec::new()), options }
    }

    /// Uses `client` from now on (e.g. with a renewed client certificate): idle connections
    /// made with the old one are closed, and those in use are not kept after their exchange.
    pub fn replace_client(&self, client: EstClient) {
        let mut current = self.client.write().unwrap_or_else(PoisonError::into_inner);
        *current = (current.0 + 1, client);
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }

    /// The client new connections are made with.
    pub fn client(&self) -> EstClient {
        self.current().1
    }

    /// Idle connections kept for reuse (for tests and diagnostics).
    pub fn idle_connections(&self) -> usize {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).len()
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

    async fn call(&self, call: Call<'_>) -> Result<RawReply, ClientError> {
        let (generation, client) = self.current();
        if let Some(mut conn) = self.take_idle(generation) {
            match send(&mut conn, &call).await {
                Ok(reply) => {
                    self.keep(generation, conn);
                    return Ok(reply);
                }
                Err(e @ ClientError::Timeout(_)) => return Err(e),
                Err(e) => tracing::debug!(error = %e, "kept-alive connection failed; reconnecting"),
            }
        }
        let mut conn = client.connect().await?;
        let reply = send(&mut conn, &call).await?;
        self.keep(generation, conn);
        Ok(reply)
    }

    /// The most recently used idle connection of `generation` that is open and young enough.
    fn take_idle(&self, generation: u64) -> Option<EstConnection> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(i) = idle.pop() {
            if self.reusable(&i, generation) {
                return Some(i.conn);
            }
        }
        None
    }

    /// Keeps `conn` for reuse, unless it is closed, of an old generation, or enough are kept.
    fn keep(&self, generation: u64, conn: EstConnection) {
        if conn.is_closed() || generation != self.current().0 {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.retain(|i| self.reusable(i, generation));
        if idle.len() < self.options.max_idle {
            idle.push(Idle { generation, since: Instant::now(), conn });
        }
    }

    fn reusable(&self, i: &Idle, generation: u64) -> bool {
        i.generation == generation && !i.conn.is_closed() && i.since.elapsed() < self.options.max_idle_age
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
