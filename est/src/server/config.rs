//! Server configuration: per-label policy (profile, key algorithms, who may enroll, channel
//! binding, serverkeygen) and request limits, checked before the router is built.

use crate::http::FailureLimits;
use crate::keypackage::SharedKey;
use shared::keys::Algorithm;
use shared::pki::Profile;
use std::collections::HashMap;
use std::time::Duration;
use x509_cert::Certificate;

/// Default request body limit (64 KiB: far above any CSR, base64 included).
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;
/// The EST operation names, which a label must not equal (RFC 7030 §3.2.2).
pub const OPERATIONS: [&str; 6] =
    ["cacerts", "simpleenroll", "simplereenroll", "fullcmc", "serverkeygen", "csrattrs"];

/// How a client must authenticate to enroll (simpleenroll, serverkeygen) under a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthRequirement {
    /// A TLS client certificate that chains to one of the label's anchors.
    ClientCert,
    /// HTTP Basic credentials of one of the label's users.
    Basic,
    /// Either of the two.
    Either,
    /// Both.
    Both,
}

/// What to do with the CSR's challengePassword (RFC 7030 §3.5 linking, RFC 9266 exporter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingPolicy {
    /// The CSR must carry base64 of this connection's `tls-exporter` (400 otherwise).
    Require,
    /// Checked when present (400 on mismatch), accepted when absent.
    Accept,
    /// Not checked.
    Ignore,
}

/// Policy of one CA label.
#[derive(Debug, Clone)]
pub struct LabelPolicy {
    /// Issuance profile for this label (hand [`EstServerConfig::profiles`] to the authority).
    pub profile: Profile,
    /// Key algorithms a CSR may carry (empty: every algorithm the CSR verifier supports).
    pub allowed_key_algorithms: Vec<Algorithm>,
    /// Trust anchors for TLS client certificates on simpleenroll/serverkeygen.
    pub client_cert_anchors: Vec<Certificate>,
    /// HTTP Basic users: user name -> argon2 PHC hash (see
    /// [`hash_password`](crate::server::hash_password)).
    pub basic_users: HashMap<String, String>,
    /// Which credentials an enrollment needs.
    pub auth: AuthRequirement,
    /// Channel-binding policy.
    pub binding: BindingPolicy,
    /// Whether `/serverkeygen` is offered (RFC 7030 recommends off by default).
    pub serverkeygen: bool,
    /// Shared AES keys a serverkeygen CSR may name in DecryptKeyIdentifier (RFC 7030 §4.4.1.1)
    /// to get the generated key back encrypted with that key (kekri). Empty: such requests
    /// are refused (400, unknown key identifier).
    pub serverkeygen_shared_keys: Vec<SharedKey>,
    /// Most subjectAltName entries a CSR may ask for (400 beyond; [`DEFAULT_MAX_SANS`]).
    pub max_sans: usize,
}

/// Default most subjectAltName entries per CSR: room for a device's names and addresses, far
/// from the thousand a hostile CSR asked to have copied into a certificate.
pub const DEFAULT_MAX_SANS: usize = 16;

impl LabelPolicy {
    /// A policy with `profile`, any key algorithm, no anchors or users, [`AuthRequirement::Either`],
    /// [`BindingPolicy::Accept`], serverkeygen off, no shared key-encryption keys and at most
    /// [`DEFAULT_MAX_SANS`] subjectAltName entries.
    pub fn new(profile: Profile) -> Self {
        LabelPolicy {
            profile,
            allowed_key_algorithms: Vec::new(),
            client_cert_anchors: Vec::new(),
            basic_users: HashMap::new(),
            auth: AuthRequirement::Either,
            binding: BindingPolicy::Accept,
            serverkeygen: false,
            serverkeygen_shared_keys: Vec::new(),
            max_sans: DEFAULT_MAX_SANS,
        }
    }
}

/// The EST server's configuration: label policies and request limits.
#[derive(Debug, Clone)]
pub struct EstServerConfig {
    /// Policies by label; `""` is the default label (`/.well-known/est/<op>`).
    pub labels: HashMap<String, LabelPolicy>,
    /// Largest request body accepted (413 above).
    pub body_limit: usize,
    /// Longest wait for a request body (408 after).
    pub body_timeout: Duration,
    /// Longest time one request may take in total, authority calls included (503 after).
    pub request_timeout: Duration,
    /// Failed HTTP Basic authentications allowed per client address and per user name (429
    /// with Retry-After past them, before any password hash runs).
    pub auth_failures: FailureLimits,
    /// Password checks (argon2) running at once: 0 means one per CPU. A request that waits
    /// longer than [`DEFAULT_WORK_WAIT`](crate::http::DEFAULT_WORK_WAIT) for one gets 503.
    pub password_checks: usize,
}

impl Default for EstServerConfig {
    fn default() -> Self {
        EstServerConfig {
            labels: HashMap::new(),
            body_limit: DEFAULT_BODY_LIMIT,
            body_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
            auth_failures: FailureLimits::default(),
            password_checks: 0,
        }
    }
}

impl EstServerConfig {
    /// Adds (or replaces) the policy of `label`.
    pub fn with_label(mut self, label: &str, policy: LabelPolicy) -> Self {
        self.labels.insert(label.to_string(), policy);
        self
    }

    /// The profile of every label, for [`crate::authority::LocalCa::new`].
    pub fn profiles(&self) -> HashMap<String, Profile> {
        self.labels.iter().map(|(k, v)| (k.clone(), v.profile.clone())).collect()
    }

    /// Checks the configuration: labels must be single path segments and no operation name.
    pub fn check(&self) -> Result<(), ConfigError> {
        for label in self.labels.keys() {
            if OPERATIONS.contains(&label.as_str()) {
                return Err(ConfigError(format!("label '{label}' equals an EST operation name")));
            }
            if label.contains('/') || label.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(ConfigError(format!("label '{label}' is not a single URI path segment")));
            }
        }
        if self.body_limit == 0 {
            return Err(ConfigError("body_limit must be positive".into()));
        }
        Ok(())
    }
}

/// A configuration the server refuses to start with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid EST server configuration: {0}")]
pub struct ConfigError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_must_not_be_operation_names() {
        let cfg = EstServerConfig::default()
            .with_label("cacerts", LabelPolicy::new(Profile::end_entity(Duration::from_secs(60))));
        assert!(cfg.check().is_err());
    }
}
