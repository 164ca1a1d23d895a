//! The dual-identity X.509 agent certificate: exactly one URI SAN (the agent id), an empty
//! subject (SAN critical) or a CN / template, digitalSignature, clientAuth (+ serverAuth on
//! request), and the owner in the non-critical AgentOwnerBinding extension.

use super::binding::AgentOwnerBinding;
use super::{AgentError, AgentId};
use crate::pki::{parse_name, CertificateAuthority, KeyUsageBit, Profile, San, SubjectRule};
use const_oid::db::rfc5280::{ID_KP_CLIENT_AUTH, ID_KP_SERVER_AUTH};
use der::Decode;
use spki::SubjectPublicKeyInfoOwned;
use std::time::Duration;
use x509_cert::name::Name;
use x509_cert::Certificate;

/// Default agent certificate lifetime.
pub const DEFAULT_AGENT_CERT_SECS: u64 = 3600;
/// Largest agent certificate lifetime.
pub const MAX_AGENT_CERT_SECS: u64 = 24 * 3600;

/// What goes into an agent certificate besides the key.
#[derive(Debug, Clone)]
pub struct AgentCertRequest<'a> {
    /// The agent id (the only URI SAN).
    pub agent_id: &'a AgentId,
    /// Lifetime (capped at [`MAX_AGENT_CERT_SECS`]).
    pub ttl: Duration,
    /// RFC 4514 subject, e.g. `CN=build agent,O=Example,OU=CI` (None: empty subject).
    pub subject: Option<String>,
    /// Add serverAuth to the EKU.
    pub server_auth: bool,
    /// The owner binding, if any.
    pub binding: Option<&'a AgentOwnerBinding>,
}

/// Issues an agent certificate for `spki_der` from the domain CA.
pub fn issue_agent_certificate(
    ca: &CertificateAuthority,
    spki_der: &[u8],
    req: &AgentCertRequest,
) -> Result<Certificate, AgentError> {
    let ttl = req.ttl.min(Duration::from_secs(MAX_AGENT_CERT_SECS));
    let mut eku = vec![ID_KP_CLIENT_AUTH];
    if req.server_auth {
        eku.push(ID_KP_SERVER_AUTH);
    }
    let subject = match &req.subject {
        Some(s) => parse_name(s).map_err(|e| AgentError::Policy(format!("subject template: {e}")))?,
        None => Name::default(),
    };
    let profile = Profile {
        key_usage: vec![KeyUsageBit::DigitalSignature],
        extended_key_usage: eku,
        subject: SubjectRule::FromCsr,
        copy_csr_san: false,
        extra_extensions: req.binding.map(AgentOwnerBinding::to_extension).transpose()?.into_iter().collect(),
        ..Profile::end_entity(ttl)
    };
    let spki =
        SubjectPublicKeyInfoOwned::from_der(spki_der).map_err(|e| AgentError::malformed("public key", e))?;
    let san = [San::Uri(req.agent_id.as_str().to_string())];
    ca.issue_for_key(spki, subject, &san, &profile).map_err(|e| AgentError::Sign(e.to_string()))
}
