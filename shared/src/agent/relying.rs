//! Relying-party checks: what a RADIUS server or a service in another organization calls to
//! accept an agent credential. Path validation to the trust domain's CA (or the WIT key), the
//! agent id's trust domain, and, for a dual-identity credential, the owner approval
//! re-verified offline with an owner key the relying party itself trusts.

use super::binding::{AgentOwnerBinding, APPROVAL_FORMAT_JWS, ID_AGENT_OWNER_BINDING};
use super::jwk::{spki_from_jwk, spki_thumbprint, thumbprint};
use super::jwt::ct_eq;
use super::oa::{verify_oa_signature, verify_oa_with_anchors, OaClaims, OwnerAnchors};
use super::wit::{verify_wit, WitKey};
use super::{AgentError, AgentId, Model};
use crate::pki::{certificate_san, spki_der, verify_chain, San};
use crate::Verified;
use der::Encode;
use time::OffsetDateTime;
use x509_cert::Certificate;

/// What a relying party trusts.
#[derive(Debug, Clone)]
pub struct RelyingTrust {
    /// The trust domain's CA certificates (for X.509 credentials).
    pub domain_anchors: Vec<Certificate>,
    /// The trust domain's WIT keys (for WITs).
    pub wit_keys: Vec<WitKey>,
    /// Owner keys this relying party accepts.
    pub owner_anchors: OwnerAnchors,
    /// The trust domain agent ids must belong to (None: any, e.g. for display tools).
    pub trust_domain: Option<String>,
    /// Verification time.
    pub at: OffsetDateTime,
}

/// The owner a credential is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerInfo {
    /// Owner id.
    pub id: String,
    /// How the owner approved.
    pub model: Model,
    /// When the owner's grant ends.
    pub grant_not_after: i64,
}

/// An accepted agent credential.
#[derive(Debug, Clone)]
pub struct AgentIdentity {
    /// The agent id.
    pub agent_id: AgentId,
    /// The owner, for a dual-identity credential.
    pub owner: Option<OwnerInfo>,
    /// Expiry (Unix seconds).
    pub not_after: i64,
    /// RFC 7638 thumbprint of the agent's key.
    pub key_thumbprint: String,
}

/// Verifies an X.509 agent certificate (`chain[0]`, intermediates after it).
pub fn verify_agent_certificate(
    chain: &[Certificate],
    trust: &RelyingTrust,
) -> Result<Verified<AgentIdentity>, AgentError> {
    let leaf = chain.first().ok_or_else(|| AgentError::malformed("agent certificate", "empty chain"))?;
    let path = verify_chain(leaf, &chain[1..], &trust.domain_anchors, trust.at)
        .map_err(|e| AgentError::Chain(e.to_string()))?;
    let agent_id = single_uri_san(leaf)?;
    check_domain(&agent_id, trust)?;
    let key_thumbprint = spki_thumbprint(&spki_der(leaf))?;
    let owner = match binding_of(leaf)? {
        Some(b) => Some(check_binding(&b, &agent_id, &key_thumbprint, trust)?),
        None => None,
    };
    let not_after = leaf.tbs_certificate().validity().not_after.to_unix_duration().as_secs() as i64;
    Ok(Verified::new(AgentIdentity { agent_id, owner, not_after, key_thumbprint }, path))
}

fn single_uri_san(cert: &Certificate) -> Result<AgentId, AgentError> {
    let uris: Vec<String> = certificate_san(cert)
        .into_iter()
        .filter_map(|s| if let San::Uri(u) = s { Some(u) } else { None })
        .collect();
    match uris.as_slice() {
        [one] => AgentId::parse(one),
        _ => Err(AgentError::Policy(format!(
            "an agent certificate has exactly one URI SAN, this one has {}",
            uris.len()
        ))),
    }
}

fn check_domain(id: &AgentId, trust: &RelyingTrust) -> Result<(), AgentError> {
    match &trust.trust_domain {
        Some(td) if td != id.trust_domain() => {
            Err(AgentError::Policy(format!("agent id {id} is not in trust domain {td}")))
        }
        _ => Ok(()),
    }
}

/// The AgentOwnerBinding extension of a certificate, if present.
pub fn binding_of(cert: &Certificate) -> Result<Option<AgentOwnerBinding>, AgentError> {
    let exts = cert.tbs_certificate().extensions().map(|e| e.to_vec()).unwrap_or_default();
    let found: Vec<_> = exts.iter().filter(|e| e.extn_id == ID_AGENT_OWNER_BINDING).collect();
    match found.as_slice() {
        [] => Ok(None),
        [one] => AgentOwnerBinding::from_der_value(one.extn_value.as_bytes()).map(Some),
        _ => Err(AgentError::malformed("agent certificate", "more than one AgentOwnerBinding")),
    }
}

fn check_binding(
    b: &AgentOwnerBinding,
    agent_id: &AgentId,
    key_thumbprint: &str,
    trust: &RelyingTrust,
) -> Result<OwnerInfo, AgentError> {
    if b.approval_format != APPROVAL_FORMAT_JWS {
        return Err(AgentError::Policy(format!("approval format {} is not supported", b.approval_format)));
    }
    let owner_id = b
        .owner_id_text()
        .ok_or_else(|| AgentError::malformed("AgentOwnerBinding", "ownerId is not a URI"))?;
    let owner_spki = b.owner_key.to_der().map_err(|e| AgentError::malformed("AgentOwnerBinding", e))?;
    if !trust.owner_anchors.contains(&owner_id, &owner_spki) {
        return Err(AgentError::UnknownOwner(format!(
            "the owner key of {owner_id} is not one of this relying party's owner anchors"
        )));
    }
    let approval = std::str::from_utf8(b.approval.as_bytes())
        .map_err(|_| AgentError::malformed("AgentOwnerBinding", "approval is not a compact JWS"))?;
    let oa = verify_oa_signature(approval, &owner_spki)?;
    check_oa_binds(&oa, &owner_id, b.model.model(), agent_id, key_thumbprint)?;
    let grant = b.grant_not_after.to_unix_duration().as_secs() as i64;
    Ok(OwnerInfo { id: owner_id, model: b.model.model(), grant_not_after: grant })
}

fn check_oa_binds(
    oa: &OaClaims,
    owner_id: &str,
    model: Model,
    agent_id: &AgentId,
    jkt: &str,
) -> Result<(), AgentError> {
    if oa.iss != owner_id {
        return Err(AgentError::Binding(format!("OA issuer {} is not the bound owner {owner_id}", oa.iss)));
    }
    if oa.model != model {
        return Err(AgentError::Binding(format!(
            "OA model {} differs from the bound model {model}",
            oa.model
        )));
    }
    if oa.sub != agent_id.as_str() {
        return Err(AgentError::Binding(format!("OA sub {} is not the agent id {agent_id}", oa.sub)));
    }
    if oa.aud != agent_id.trust_domain() {
        return Err(AgentError::Binding(format!(
            "OA aud {} is not the trust domain {}",
            oa.aud,
            agent_id.trust_domain()
        )));
    }
    if !ct_eq(&oa.agent_jkt, jkt) {
        return Err(AgentError::Binding("OA agent_jkt is not the thumbprint of the credential's key".into()));
    }
    Ok(())
}

/// Verifies a WIT as a credential: the WIT itself, the trust domain, and its owner claim.
pub fn verify_wit_credential(wit: &str, trust: &RelyingTrust) -> Result<Verified<AgentIdentity>, AgentError> {
    let now = trust.at.unix_timestamp();
    let claims = verify_wit(wit, &trust.wit_keys, now)?;
    let agent_id = AgentId::parse(&claims.sub)?;
    check_domain(&agent_id, trust)?;
    spki_from_jwk(&claims.cnf.jwk)?;
    let key_thumbprint = thumbprint(&claims.cnf.jwk)?;
    let owner = match &claims.owner {
        Some(o) => {
            let (oa, _) = verify_oa_with_anchors(&o.oa, &trust.owner_anchors)?;
            if !ct_eq(&o.jkt, &key_thumbprint) {
                return Err(AgentError::Binding("owner jkt is not the thumbprint of cnf.jwk".into()));
            }
            check_oa_binds(&oa, &o.id, o.model, &agent_id, &key_thumbprint)?;
            Some(OwnerInfo { id: o.id.clone(), model: o.model, grant_not_after: o.grant_exp })
        }
        None => None,
    };
    let identity = AgentIdentity { agent_id, owner, not_after: claims.exp, key_thumbprint };
    Ok(Verified::new(identity, Vec::new()))
}
