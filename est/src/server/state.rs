//! What every request handler shares: the configuration, the authority and the cache of
//! verified Basic credentials. Built once by [`router`](crate::server::router).

use super::config::EstServerConfig;
use super::credential_cache::CredentialCache;
use super::password::PasswordChecks;
use crate::authority::Authority;
use crate::http::{FailureLimiter, WorkBound, DEFAULT_WORK_WAIT};
use std::sync::Arc;

/// The router's state, handed to every handler.
pub(crate) struct ServerState {
    /// The checked configuration.
    pub(crate) config: EstServerConfig,
    /// Issues certificates and decides on requests.
    pub(crate) authority: Arc<dyn Authority>,
    /// Basic credentials that passed argon2 recently.
    pub(crate) verified_basic: CredentialCache,
    /// argon2 checks, bounded in number and memory.
    pub(crate) password_checks: PasswordChecks,
    /// Failed Basic authentications per address and user name.
    pub(crate) failures: FailureLimiter,
}

impl ServerState {
    /// State with an empty credential cache of the default TTL and size.
    pub(crate) fn new(config: EstServerConfig, authority: Arc<dyn Authority>) -> Self {
        let password_checks = PasswordChecks::new(match config.password_checks {
            0 => WorkBound::for_machine(),
            n => WorkBound::new(n, DEFAULT_WORK_WAIT),
        });
        let failures = FailureLimiter::new(config.auth_failures);
        ServerState {
            config,
            authority,
            verified_basic: CredentialCache::default(),
            password_checks,
            failures,
        }
    }
}
