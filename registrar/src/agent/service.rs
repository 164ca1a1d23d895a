//! The agent issuance state a registrar keeps: the policy, the WIT signing key, the nonces,
//! the ACR `jti`s seen, and the pending model 3 requests.

use super::nonces::Nonces;
use super::pending::Pending;
use super::policy::AgentPolicy;
use shared::agent::jwk::spki_thumbprint;
use shared::agent::wire::Bundle;
use shared::agent::wit::{jwks, WitKey};
use shared::agent::AgentError;
use shared::keys::{Algorithm, Signer};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use x509_cert::Certificate;

/// The WIT signing key's file in the registrar's state directory.
pub(crate) const WIT_KEY_FILE: &str = "wit.key";

/// Agent issuance at one registrar.
pub struct AgentService {
    /// The policy.
    pub policy: AgentPolicy,
    wit_key: Box<dyn Signer>,
    wit_kid: String,
    /// Issued, unused nonces.
    pub nonces: Nonces,
    seen_jti: Mutex<HashMap<String, i64>>,
    /// Pending model 3 requests.
    pub pending: Pending,
    /// Callers already identified, by certificate.
    pub callers: super::callers::CallerCache,
}

impl std::fmt::Debug for AgentService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentService")
            .field("trust_domain", &self.policy.trust_domain)
            .finish_non_exhaustive()
    }
}

impl AgentService {
    /// Agent issuance under `policy`, signing WITs with `wit_key`.
    pub fn new(policy: AgentPolicy, wit_key: Box<dyn Signer>) -> Result<Self, AgentError> {
        let wit_kid = spki_thumbprint(&wit_key.public_key_der())?;
        Ok(AgentService {
            policy,
            wit_key,
            wit_kid,
            nonces: Nonces::default(),
            seen_jti: Mutex::new(HashMap::new()),
            pending: Pending::default(),
            callers: Default::default(),
        })
    }

    /// Loads the WIT key from `dir`, creating it (P-256, 0600) on first use.
    pub fn wit_key_in(dir: &Path) -> Result<Box<dyn Signer>, shared::keys::KeyError> {
        let path = dir.join(WIT_KEY_FILE);
        let key = if path.exists() {
            shared::keys::load_key_file(&path)?
        } else {
            shared::keys::generate_key_file(&path, Algorithm::Es256)?
        };
        Ok(Box::new(key))
    }

    /// The WIT key.
    pub fn wit_key(&self) -> &dyn Signer {
        self.wit_key.as_ref()
    }

    /// The WIT key's `kid`.
    pub fn wit_kid(&self) -> &str {
        &self.wit_kid
    }

    /// The WIT keys relying parties trust.
    pub fn wit_keys(&self) -> Vec<WitKey> {
        vec![WitKey { kid: self.wit_kid.clone(), spki_der: self.wit_key.public_key_der() }]
    }

    /// The trust bundle: trust domain, issuance URI, CA certificates (PEM), WIT keys (JWKS).
    pub fn bundle(&self, domain_ca: &Certificate) -> Result<Bundle, AgentError> {
        let ca_pem = shared::pki::cert_to_pem(domain_ca).map_err(|e| AgentError::Sign(e.to_string()))?;
        Ok(Bundle {
            trust_domain: self.policy.trust_domain.clone(),
            issuance_uri: self.policy.issuance_uri(),
            ca_pem,
            jwks: jwks(&self.wit_keys())?,
        })
    }

    /// Records an ACR `jti`; false if it was seen before (ACRs live at most 10 minutes, so
    /// remembering them until their `exp` is enough).
    pub fn first_use_of_acr_jti(&self, jti: &str, exp: i64, now: i64) -> bool {
        let mut seen = self.seen_jti.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() > 100_000 {
            seen.retain(|_, e| *e + shared::agent::jwt::SKEW_SECS >= now);
        }
        if seen.contains_key(jti) {
            return false;
        }
        seen.insert(jti.to_string(), exp);
        true
    }
}
