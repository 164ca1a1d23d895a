//! Why an agent-issuance object (ACR, OA, challenge, WIT, WPT, evidence, agent certificate)
//! was refused. Each variant has a stable `reason` code for problem bodies and audit records.

/// A refusal of an agent-issuance object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    /// The object cannot be parsed.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// Which object.
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The JOSE `typ` (or CWT profile) is not the one expected here.
    #[error("wrong type: expected {expected}, got {got}")]
    WrongType {
        /// The type this endpoint accepts.
        expected: &'static str,
        /// The type found.
        got: String,
    },
    /// The signature does not verify with the key it must be made with.
    #[error("signature of the {0} does not verify")]
    Signature(&'static str),
    /// The audience is not this trust domain.
    #[error("audience {got:?} is not {expected:?}")]
    Audience {
        /// The expected audience.
        expected: String,
        /// The audience found.
        got: String,
    },
    /// Outside its validity window (expired, not yet valid, or lives longer than allowed).
    #[error("{0}")]
    Time(String),
    /// A nonce is missing, unknown, expired or already used.
    #[error("nonce: {0}")]
    Nonce(String),
    /// A `jti` was seen before.
    #[error("jti {0} was already used")]
    Replay(String),
    /// Two things that must name the same key do not (CSR vs jwk, OA agent_jkt vs ACR key...).
    #[error("key mismatch: {0}")]
    KeyMismatch(String),
    /// An owner approval does not bind what it must (acr_hash, chal_hash, sub, model, org).
    #[error("owner approval does not bind this request: {0}")]
    Binding(String),
    /// The owner's key is not a provisioned owner anchor.
    #[error("owner key not provisioned: {0}")]
    UnknownOwner(String),
    /// A certificate path does not validate.
    #[error("certificate path: {0}")]
    Chain(String),
    /// A well-formed request that policy refuses.
    #[error("policy: {0}")]
    Policy(String),
    /// Evidence does not bind this request or is not signed by the proxy.
    #[error("evidence: {0}")]
    Evidence(String),
    /// Signing failed.
    #[error("signing failed: {0}")]
    Sign(String),
}

impl AgentError {
    /// A short stable code for problem bodies, metrics and audit records.
    pub fn reason(&self) -> &'static str {
        match self {
            AgentError::Malformed { .. } => "malformed",
            AgentError::WrongType { .. } => "wrong-type",
            AgentError::Signature(_) => "bad-signature",
            AgentError::Audience { .. } => "wrong-audience",
            AgentError::Time(_) => "time",
            AgentError::Nonce(_) => "nonce",
            AgentError::Replay(_) => "replay",
            AgentError::KeyMismatch(_) => "key-mismatch",
            AgentError::Binding(_) => "owner-binding",
            AgentError::UnknownOwner(_) => "unknown-owner",
            AgentError::Chain(_) => "chain",
            AgentError::Policy(_) => "policy",
            AgentError::Evidence(_) => "evidence",
            AgentError::Sign(_) => "sign",
        }
    }

    /// A [`AgentError::Malformed`] naming `what`.
    pub fn malformed(what: &'static str, detail: impl std::fmt::Display) -> Self {
        AgentError::Malformed { what, detail: detail.to_string() }
    }
}
