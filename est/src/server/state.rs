//! What every request handler shares: the configuration, the authority and the cache of
//! verified Basic credentials. Built once by [`router`](crate::server::router).

use super::config::EstServerConfig;
use super::credential_cache::CredentialCache;
use crate::authority::Authority;
use std::sync::Arc;

/// The router's state, handed to every handler.
pub(crate) struct ServerState {
    /// The checked configuration.
    pub(crate) config: EstServerConfig,
    /// Issues certificates and decides on requests.
    pub(crate) authority: Arc<dyn Authority>,
    /// Basic credentials that passed argon2 recently.
    pub(crate) verified_basic: CredentialCache,
}

impl ServerState {
    /// State with an empty credential cache of the default TTL and size.
    pub(crate) fn new(config: EstServerConfig, authority: Arc<dyn Authority>) -> Self {
        ServerState { config, authority, verified_basic: CredentialCache::default() }
    }
}
