//! Model 1 (agent-mediated): the owner reviews the ACR an agent shows it and signs an OA over
//! it, offline. The agent then sends `{acr, oa}` to its proxy.

use crate::config::trust_domain_of;
use crate::{OwnerError, OwnerIdentity};
use shared::agent::jwt::{new_jti, SKEW_SECS};
use shared::agent::oa::{oa_max_life, Constraints, DEFAULT_GRANT_SECS};
use shared::agent::{sign_oa, verify_acr, Acr, Model, OaClaims, OwnerKeyHeader};
use shared::Verified;

/// What the owner allows when signing.
#[derive(Debug, Clone, Default)]
pub struct SignOptions {
    /// The ACR audience (default: the configured `wimse://<trust_domain>`).
    pub audience: Option<String>,
    /// Grant lifetime in seconds (capped at 30 days; default 30 days).
    pub grant_secs: Option<i64>,
    /// Constraint `max_ttl`.
    pub max_ttl: Option<u64>,
    /// Constraint `formats`; the ACR may not ask for others.
    pub formats: Option<Vec<String>>,
    /// OA lifetime in seconds (at most, and by default, 600).
    pub valid_secs: Option<i64>,
}

/// Verifies an ACR for this owner: signature with its own `jwk`, audience, time (an offline
/// model 1 ACR may omit the nonce and live up to 10 minutes), model agent-mediated, owner = us,
/// an agent id, and formats within `formats`.
pub fn review(
    owner: &OwnerIdentity,
    acr_text: &str,
    opts: &SignOptions,
    now: i64,
) -> Result<Verified<Acr>, OwnerError> {
    let audience = match &opts.audience {
        Some(a) => a.clone(),
        None => owner.config.issuance_uri()?,
    };
    let acr = verify_acr(acr_text.trim(), &audience, now)?;
    let req = &acr.claims.req;
    if req.model != Model::AgentMediated {
        return Err(OwnerError::Refused(format!(
            "the ACR asks for model {}; `owner sign` approves agent-mediated requests only",
            req.model
        )));
    }
    if req.owner.as_deref() != Some(owner.config.id.as_str()) {
        return Err(OwnerError::Refused(format!(
            "the ACR names owner {}, not {}",
            req.owner.as_deref().unwrap_or("(none)"),
            owner.config.id
        )));
    }
    if acr.agent_id.is_none() {
        return Err(OwnerError::Refused("the ACR names no agent id (req.id): nothing to approve".into()));
    }
    if let Some(allowed) = &opts.formats {
        if let Some(f) = req.formats.iter().find(|f| !allowed.contains(f)) {
            return Err(OwnerError::Refused(format!("the ACR asks for format {f}, not in {allowed:?}")));
        }
    }
    Ok(acr)
}

/// A human summary of a verified ACR.
pub fn summary(acr: &Acr, now: i64) -> String {
    let c = &acr.claims;
    format!(
        "agent id:   {}\nowner:      {}\nmodel:      {}\nagent key:  {} (RFC 7638 thumbprint)\n\
         requested:  ttl {} s, formats {}\nACR:        jti {}, expires in {} s{}\nacr_hash:   {}\n",
        acr.agent_id.as_ref().map(|a| a.as_str()).unwrap_or("(server assigns)"),
        c.req.owner.as_deref().unwrap_or("(none)"),
        c.req.model,
        acr.jkt,
        c.req.ttl,
        c.req.formats.join(","),
        c.jti,
        c.exp - now,
        if c.nonce.is_none() { " (offline: no proxy nonce)" } else { "" },
        acr.hash,
    )
}

/// Signs the model 1 OA over a reviewed ACR: `sub` = the agent id, `aud` = the trust domain,
/// `acr_hash`, `agent_jkt`, a fresh `jti`, `exp` <= 10 min (and not before the ACR's).
pub fn sign(
    owner: &OwnerIdentity,
    acr: &Verified<Acr>,
    opts: &SignOptions,
    now: i64,
) -> Result<String, OwnerError> {
    let life = opts.valid_secs.unwrap_or(600).clamp(1, oa_max_life(Model::AgentMediated));
    let exp = now + life;
    if acr.claims.exp > exp + SKEW_SECS {
        return Err(OwnerError::Refused(format!(
            "the ACR lives until {} but an approval can end at {exp} at the latest",
            acr.claims.exp
        )));
    }
    let audience = match &opts.audience {
        Some(a) => a.clone(),
        None => owner.config.issuance_uri()?,
    };
    let grant = opts.grant_secs.unwrap_or(DEFAULT_GRANT_SECS).clamp(life, DEFAULT_GRANT_SECS);
    let claims = OaClaims {
        iss: owner.config.id.clone(),
        sub: acr.agent_id.as_ref().map(|a| a.as_str().to_string()).unwrap_or_default(),
        aud: trust_domain_of(&audience).to_string(),
        iat: now,
        exp,
        jti: new_jti()?,
        model: Model::AgentMediated,
        agent_jkt: acr.jkt.clone(),
        acr_hash: Some(acr.hash.clone()),
        chal_hash: None,
        nonce: None,
        grant_exp: Some(now + grant),
        constraints: constraints(opts.max_ttl, opts.formats.clone()),
        org: None,
    };
    Ok(sign_oa(&claims, owner.key.as_ref(), &OwnerKeyHeader::Kid(owner.config.kid.clone()))?)
}

/// OA constraints, or none when nothing is constrained.
pub fn constraints(max_ttl: Option<u64>, formats: Option<Vec<String>>) -> Option<Constraints> {
    (max_ttl.is_some() || formats.is_some()).then_some(Constraints { max_ttl, formats })
}
