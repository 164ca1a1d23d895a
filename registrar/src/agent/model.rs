//! The agent issuance data the other files share, without behaviour beyond naming: who called
//! ([`Caller`], [`ProxyFacts`]) and a request that passed every check ([`Approved`], with its
//! [`OwnerBound`]). Kept apart so that `caller`, `issue`, `pending` and `service` depend on
//! this file, not on each other.

use shared::agent::evidence::EvidenceClaims;
use shared::agent::oa::Constraints;
use shared::agent::tpm_quote::AppraisedQuote;
use shared::agent::{Acr, AgentId, Model};
use shared::Verified;
use x509_cert::Certificate;

/// An authenticated caller.
#[derive(Debug, Clone)]
pub(crate) enum Caller {
    /// An Identity Proxy with its LDevID.
    Proxy(ProxyFacts),
    /// An owner or owner gateway.
    Owner {
        /// Its certificate.
        cert: Certificate,
        /// Its key (DER SubjectPublicKeyInfo).
        spki: Vec<u8>,
        /// b64url SHA-256 of the certificate.
        hash: String,
    },
}

/// What the server knows about a proxy.
#[derive(Debug, Clone)]
pub struct ProxyFacts {
    /// Its LDevID.
    pub cert: Certificate,
    /// The LDevID's serialNumber.
    pub serial: String,
    /// b64url SHA-256 of the LDevID.
    pub hash: String,
}

impl Caller {
    /// The certificate hash that owns pending requests.
    pub(crate) fn hash(&self) -> &str {
        match self {
            Caller::Proxy(p) => &p.hash,
            Caller::Owner { hash, .. } => hash,
        }
    }

    /// A name for logs and audit records.
    pub(crate) fn name(&self) -> String {
        match self {
            Caller::Proxy(p) => format!("proxy:{}", p.serial),
            Caller::Owner { cert, .. } => format!("owner:{}", cert.tbs_certificate().subject()),
        }
    }
}

/// A request that passed every check.
#[derive(Debug, Clone)]
pub struct Approved {
    /// The agent id.
    pub agent_id: AgentId,
    /// The ACR as `verify_acr` returned it: the proof that its proof of possession, audience,
    /// time and type were checked travels with it into issuance (the certificate and the WIT
    /// are made for its key).
    pub acr: Verified<Acr>,
    /// Lifetime to issue (seconds).
    pub ttl: u64,
    /// Formats to issue.
    pub formats: Vec<String>,
    /// The proxy.
    pub proxy: ProxyFacts,
    /// Who called (for the audit record).
    pub caller: String,
    /// The appraised evidence.
    pub evidence: EvidenceClaims,
    /// The appraised TPM quote, when the evidence carried one and the policy appraises quotes.
    pub tpm_quote: Option<AppraisedQuote>,
    /// The owner binding, if any.
    pub owner: Option<OwnerBound>,
}

/// A verified owner binding.
#[derive(Debug, Clone)]
pub struct OwnerBound {
    /// Owner id.
    pub owner_id: String,
    /// Owner key id.
    pub kid: String,
    /// Owner key (DER SubjectPublicKeyInfo).
    pub spki: Vec<u8>,
    /// Model.
    pub model: Model,
    /// The compact OA.
    pub oa_text: String,
    /// The OA's iat.
    pub approved_at: i64,
    /// The grant's end.
    pub grant_exp: i64,
    /// Model 2: gateway certificate hash.
    pub org_hash: Option<String>,
    /// Model 3: challenge hash.
    pub chal_hash: Option<String>,
    /// Organization (subject template).
    pub organization: Option<String>,
    /// Unit (subject template).
    pub unit: Option<String>,
    /// The owner's constraints.
    pub constraints: Option<Constraints>,
    /// A fresh approval (stored as a grant) rather than a renewal under a stored grant.
    pub new_grant: bool,
    /// The OA's `jti` (a fresh approval only).
    pub oa_jti: Option<String>,
}
