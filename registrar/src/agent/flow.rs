//! The Identity Server's check order for `POST /agent/v1/credentials`, failing closed:
//! ACR (type, proof of possession, audience, time, jti) -> the CMW collection, parsed once
//! ([`Cmw`]) -> evidence signed by the proxy whose
//! `eat_nonce` binds an issued, unused server nonce and the ACR hash -> the TPM quote item, when
//! the policy has an `[attestation]` table (AK certificate, signature, the same binding as
//! qualifying data, the PCR policy) -> agent id and the proxy's policy -> the owner approval
//! for the model (or a stored grant, or a model 3 challenge) -> lifetime and formats -> issuance.

use super::caller::{cert_hash, proxy_facts};
use super::error::Refusal;
use super::grants::{self, Grant};
use super::model::{Approved, Caller, OwnerBound, ProxyFacts};
use super::policy::OwnerRule;
use super::service::AgentService;
use crate::state::Registrar;
use est::http::Reason;
use shared::agent::cmw::Cmw;
use shared::agent::evidence::{verify_eat, EvidenceClaims};
use shared::agent::oa::{OaBinding, OaCheck, OwnerApproval};
use shared::agent::tpm_quote::{appraise_quote, quote_nonce, AppraisedQuote};
use shared::agent::wire::{CredentialRequest, ProxyRef};
use shared::agent::{verify_acr, verify_oa, Acr, AgentError, AgentId, Model};
use shared::b64;
use shared::pki::{self, San};
use shared::signed::cose::CoseSigned;
use shared::Verified;

/// What to do after the checks.
#[derive(Debug)]
pub(crate) enum Next {
    /// Everything checked: issue.
    Issue(Box<Approved>),
    /// Model 3 without an answer yet: challenge the owner.
    Challenge(Box<Approved>),
}

/// Runs every check before issuance.
pub(crate) async fn check_request(
    reg: &Registrar,
    svc: &AgentService,
    caller: &Caller,
    req: &CredentialRequest,
    now: i64,
) -> Result<Next, Refusal> {
    let acr: Verified<Acr> = verify_acr(&req.acr, &svc.policy.issuance_uri(), now)?;
    if !svc.first_use_of_acr_jti(&acr.claims.jti, acr.claims.exp, now) {
        return Err(AgentError::Replay(acr.claims.jti.clone()).into());
    }
    let cmw = Cmw::from_value(&req.evidence)?;
    let proxy = proxy_of(reg, caller, req.proxy.as_ref(), &cmw).await?;
    let (evidence, tpm_quote) = check_evidence(svc, &proxy, &cmw, &acr, now)?;
    let agent_id = agent_id_for(svc, &acr)?;
    check_csr_san(&acr, &agent_id)?;
    if let Some(r) = grants::agent_revoked(reg.store().as_ref(), agent_id.as_str()).await? {
        return Err(revoked(format!("agent {agent_id} was revoked: {}", r.reason)));
    }
    let max_ttl = max_ttl(svc, &proxy.serial, &agent_id)?;
    let ap = Approved {
        agent_id,
        ttl: acr.claims.req.ttl.min(max_ttl),
        formats: acr.claims.req.formats.clone(),
        acr,
        proxy,
        caller: caller.name(),
        evidence,
        tpm_quote,
        owner: None,
    };
    bind_owner(reg, svc, caller, ap, req.oa.as_deref(), now).await
}

/// The owner step of [`check_request`] by the ACR's model: none (unless policy requires an
/// owner), the owner approval that came with the request, a live renewal grant, or (model 3
/// without either) a challenge to the owner.
async fn bind_owner(
    reg: &Registrar,
    svc: &AgentService,
    caller: &Caller,
    mut ap: Approved,
    oa: Option<&str>,
    now: i64,
) -> Result<Next, Refusal> {
    let model = ap.acr.claims.req.model;
    match (model, oa) {
        (Model::None, Some(_)) => {
            return Err(Refusal::bad_request("an owner approval needs a model other than none"))
        }
        (Model::None, None) if svc.policy.require_owner => {
            return Err(AgentError::Policy("this trust domain requires an owner binding".into()).into())
        }
        (Model::None, None) => {}
        (_, Some(oa)) => {
            let bound = check_oa(reg, svc, caller, &ap, oa, OaBinding::Acr(&ap.acr.hash), now).await?;
            apply(&mut ap, bound)?;
        }
        (m, None) => match renewal_grant(reg, svc, &ap, now).await? {
            Some(bound) => apply(&mut ap, bound)?,
            None if m == Model::ServerMediated => return Ok(Next::Challenge(Box::new(ap))),
            None => {
                return Err(AgentError::Binding(format!(
                    "model {m} needs an owner approval (no valid grant)"
                ))
                .into())
            }
        },
    }
    Ok(Next::Issue(Box::new(ap)))
}

/// The longest lifetime policy allows this proxy for this agent id (refused when the proxy
/// may not request it at all).
fn max_ttl(svc: &AgentService, proxy_serial: &str, agent_id: &AgentId) -> Result<u64, Refusal> {
    let rule = svc.policy.proxy_rule(proxy_serial, agent_id).ok_or_else(|| {
        Refusal::from(AgentError::Policy(format!("proxy {proxy_serial} may not request agent id {agent_id}")))
    })?;
    Ok(rule.max_ttl_secs.unwrap_or(svc.policy.max_ttl).min(svc.policy.max_ttl))
}

fn revoked(detail: String) -> Refusal {
    Refusal::new(Reason::Revoked, detail)
}

/// The proxy behind the request: the caller itself, or (model 2, through a gateway) the
/// LDevID that signed the evidence, which must match `proxy.ldevid_sha256`.
async fn proxy_of(
    reg: &Registrar,
    caller: &Caller,
    claimed: Option<&ProxyRef>,
    cmw: &Cmw,
) -> Result<ProxyFacts, Refusal> {
    let claimed = claimed.map(|p| p.ldevid_sha256.as_str());
    let facts = match caller {
        Caller::Proxy(p) => p.clone(),
        Caller::Owner { .. } => {
            let cose = CoseSigned::parse(cmw.eat()).map_err(|e| AgentError::Evidence(e.to_string()))?;
            let chain = cose.certificates().map_err(|e| AgentError::Evidence(e.to_string()))?;
            proxy_facts(reg, &chain).await.map_err(|r| Refusal::from(AgentError::Evidence(r.detail)))?
        }
    };
    if claimed.is_some_and(|c| c != facts.hash) {
        return Err(AgentError::Evidence("proxy.ldevid_sha256 is not the proxy's LDevID".into()).into());
    }
    if matches!(caller, Caller::Owner { .. }) && claimed.is_none() {
        return Err(Refusal::bad_request("a request through a gateway names proxy.ldevid_sha256"));
    }
    Ok(facts)
}

/// The EAT (signed by the proxy, binding an issued nonce and the ACR hash, the nonce consumed)
/// and, when the policy appraises TPM quotes, the quote item.
fn check_evidence(
    svc: &AgentService,
    proxy: &ProxyFacts,
    cmw: &Cmw,
    acr: &Acr,
    now: i64,
) -> Result<(EvidenceClaims, Option<AppraisedQuote>), Refusal> {
    let claims: Verified<EvidenceClaims> = verify_eat(cmw.eat(), &proxy.cert)?;
    let acr_hash = b64::decode_url(&acr.hash).map_err(Refusal::internal)?;
    let nonce = match &acr.claims.nonce {
        Some(n) => {
            b64::decode_url(n).map_err(|_| AgentError::Nonce("the ACR nonce is not base64url".into()))?
        }
        None => claims.nonces.iter().find(|n| **n != acr_hash).cloned().unwrap_or_default(),
    };
    if !claims.binds(&nonce, &acr_hash) {
        return Err(
            AgentError::Evidence("eat_nonce does not bind this request's nonce and acr_hash".into()).into()
        );
    }
    if !svc.nonces.consume(&nonce, now) {
        return Err(AgentError::Nonce("not issued by this server, expired, or already used".into()).into());
    }
    let quote = check_tpm_quote(svc, proxy, cmw, &nonce, &acr_hash, now)?;
    Ok((claims.into_inner(), quote))
}

/// The TPM quote item: appraised when the policy has an `[attestation]` table (a quote that
/// fails is a refusal; none at all is one when `require_quote`), ignored (and logged) otherwise.
fn check_tpm_quote(
    svc: &AgentService,
    proxy: &ProxyFacts,
    cmw: &Cmw,
    nonce: &[u8],
    acr_hash: &[u8],
    now: i64,
) -> Result<Option<AppraisedQuote>, Refusal> {
    let Some(att) = &svc.policy.attestation else {
        if cmw.has_tpm_item() {
            tracing::info!(proxy = %proxy.serial,
                "evidence carries a TPM quote; not appraised (the agent policy has no [attestation])");
        }
        return Ok(None);
    };
    let Some(quote) = cmw.tpm_quote()? else {
        if att.require_quote {
            return Err(AgentError::Evidence("TPM quote required by policy".into()).into());
        }
        return Ok(None);
    };
    let at = time::OffsetDateTime::from_unix_timestamp(now).map_err(Refusal::internal)?;
    let expected = quote_nonce(nonce, acr_hash);
    let appraised = appraise_quote(quote, &att.anchors, &proxy.serial, &expected, &att.policy, at)?;
    Ok(Some(appraised.into_inner()))
}

fn agent_id_for(svc: &AgentService, acr: &Acr) -> Result<AgentId, Refusal> {
    let id = match &acr.agent_id {
        Some(id) => id.clone(),
        None => {
            let r = shared::agent::jwt::random::<16>()?;
            AgentId::parse(&format!("{}/agent/{}", svc.policy.issuance_uri(), hex::encode(r)))?
        }
    };
    if id.trust_domain() != svc.policy.trust_domain {
        return Err(AgentError::Policy(format!(
            "agent id {id} is outside trust domain {}",
            svc.policy.trust_domain
        ))
        .into());
    }
    Ok(id)
}

/// A CSR in the ACR may only ask for the agent id as its one URI SAN.
fn check_csr_san(acr: &Acr, id: &AgentId) -> Result<(), Refusal> {
    let Some(csr) = &acr.claims.csr else { return Ok(()) };
    let der = b64::decode_url(csr).map_err(|e| AgentError::malformed("ACR csr", e))?;
    let csr = pki::Csr::verify_der(&der).map_err(|e| AgentError::malformed("ACR csr", e))?;
    let uris: Vec<String> = csr
        .requested_san()
        .into_iter()
        .filter_map(|s| if let San::Uri(u) = s { Some(u) } else { None })
        .collect();
    if uris.len() > 1 || uris.iter().any(|u| u != id.as_str()) {
        return Err(Refusal::new(
            Reason::SecondUriSan,
            format!("an agent credential carries exactly one URI SAN ({id}); the CSR asks for {uris:?}"),
        ));
    }
    Ok(())
}

/// Checks an OA for the request (models 1 and 2 with `OaBinding::Acr`, model 3 with the
/// challenge binding) and the owner's policy.
pub(crate) async fn check_oa(
    reg: &Registrar,
    svc: &AgentService,
    caller: &Caller,
    ap: &Approved,
    oa_text: &str,
    binding: OaBinding<'_>,
    now: i64,
) -> Result<OwnerBound, Refusal> {
    let model = ap.acr.claims.req.model;
    let owner = ap.acr.claims.req.owner.clone().unwrap_or_default();
    if let Some(r) = grants::owner_revoked(reg.store().as_ref(), &owner).await? {
        return Err(revoked(format!("owner {owner} was revoked: {}", r.reason)));
    }
    let check = OaCheck {
        audience: &svc.policy.trust_domain,
        now,
        agent_id: ap.agent_id.as_str(),
        agent_jkt: &ap.acr.jkt,
        model,
        owner: &owner,
        binding,
    };
    let oa: OwnerApproval = verify_oa(oa_text, &svc.policy.owner_anchors(), &check)?.into_inner();
    let expires =
        time::OffsetDateTime::from_unix_timestamp(oa.claims.exp + 3600).map_err(Refusal::internal)?;
    if !reg.store().consume_once("agent.oa.jti", oa.claims.jti.as_bytes(), expires).await? {
        return Err(AgentError::Replay(oa.claims.jti.clone()).into());
    }
    let rule = owner_rule(svc, &owner, &oa, &ap.agent_id, model)?;
    if model == Model::AgentMediated && ap.acr.claims.exp > oa.claims.exp + shared::agent::jwt::SKEW_SECS {
        return Err(AgentError::Time("the ACR outlives its owner approval".into()).into());
    }
    let org_hash = if model == Model::OwnerMediated { Some(check_gateway(caller, ap, &oa)?) } else { None };
    Ok(OwnerBound {
        owner_id: owner,
        kid: oa.owner_key.kid.clone(),
        spki: oa.owner_key.spki_der.clone(),
        model,
        oa_text: oa.text.clone(),
        approved_at: oa.claims.iat,
        grant_exp: oa.claims.grant_until(svc.policy.grant_cap),
        org_hash,
        chal_hash: oa.claims.chal_hash.clone(),
        organization: rule.organization.clone(),
        unit: rule.unit.clone(),
        constraints: oa.claims.constraints.clone(),
        new_grant: true,
        oa_jti: Some(oa.claims.jti.clone()),
    })
}

/// The owner's policy entry for the OA's key, if it may own `agent_id` under `model`.
fn owner_rule<'a>(
    svc: &'a AgentService,
    owner: &str,
    oa: &OwnerApproval,
    agent_id: &AgentId,
    model: Model,
) -> Result<&'a OwnerRule, Refusal> {
    let rule = svc
        .policy
        .owner_rule(owner, &oa.owner_key.spki_der)
        .ok_or_else(|| AgentError::UnknownOwner(format!("owner {owner} is not provisioned")))?;
    if !rule.models.contains(&model) || !rule.agents.iter().any(|p| shared::agent::id_matches(p, agent_id)) {
        return Err(
            AgentError::Policy(format!("owner {owner} may not own {agent_id} under model {model}")).into()
        );
    }
    Ok(rule)
}

/// Model 2: the gateway on the TLS connection is the OA's signer, and `org` names it and the
/// proxy.
fn check_gateway(caller: &Caller, ap: &Approved, oa: &OwnerApproval) -> Result<String, Refusal> {
    let Caller::Owner { cert, spki, hash } = caller else {
        return Err(AgentError::Binding(
            "an owner-mediated request must come from the owner's gateway".into(),
        )
        .into());
    };
    if *spki != oa.owner_key.spki_der || oa.x5c.first().is_some_and(|c| c != cert) {
        return Err(AgentError::Binding("the gateway's TLS identity is not the OA issuer".into()).into());
    }
    let org = oa.claims.org.as_ref().ok_or_else(|| AgentError::Binding("model 2 OA without org".into()))?;
    if org.cred != *hash || org.cred != cert_hash(cert) {
        return Err(AgentError::Binding("org.cred is not the gateway's certificate".into()).into());
    }
    if org.via != ap.proxy.hash {
        return Err(AgentError::Binding("org.via is not the proxy's LDevID".into()).into());
    }
    Ok(hash.clone())
}

/// A renewal: a stored, unrevoked, unexpired grant for this agent id, key, owner and model.
async fn renewal_grant(
    reg: &Registrar,
    svc: &AgentService,
    ap: &Approved,
    now: i64,
) -> Result<Option<OwnerBound>, Refusal> {
    let Some(g): Option<Grant> = grants::get(reg.store().as_ref(), ap.agent_id.as_str(), &ap.acr.jkt).await?
    else {
        return Ok(None);
    };
    let owner = ap.acr.claims.req.owner.as_deref().unwrap_or_default();
    if g.revoked {
        return Err(revoked(format!("the owner grant for {} was revoked", ap.agent_id)));
    }
    if let Some(r) = grants::owner_revoked(reg.store().as_ref(), &g.owner).await? {
        return Err(revoked(format!("owner {} was revoked: {}", g.owner, r.reason)));
    }
    if g.owner != owner || g.model != ap.acr.claims.req.model || g.grant_exp <= now {
        return Ok(None);
    }
    let rule = svc.policy.owners.iter().find(|o| o.anchor.owner == g.owner && o.anchor.kid == g.owner_kid);
    Ok(Some(OwnerBound {
        owner_id: g.owner.clone(),
        kid: g.owner_kid.clone(),
        spki: b64::decode_url(&g.owner_spki).map_err(Refusal::internal)?,
        model: g.model,
        oa_text: g.oa.clone(),
        approved_at: g.approved_at,
        grant_exp: g.grant_exp,
        org_hash: g.org_hash.clone(),
        chal_hash: g.chal_hash.clone(),
        organization: rule.and_then(|r| r.organization.clone()),
        unit: rule.and_then(|r| r.unit.clone()),
        constraints: g.constraints.clone(),
        new_grant: false,
        oa_jti: None,
    }))
}

/// Applies the owner's constraints to the lifetime and formats, and records the binding.
pub(crate) fn apply(ap: &mut Approved, bound: OwnerBound) -> Result<(), Refusal> {
    if let Some(c) = &bound.constraints {
        if let Some(max) = c.max_ttl {
            ap.ttl = ap.ttl.min(max);
        }
        if let Some(allowed) = &c.formats {
            if ap.formats.iter().any(|f| !allowed.contains(f)) {
                return Err(AgentError::Policy(format!("the owner allows only formats {allowed:?}")).into());
            }
        }
    }
    ap.owner = Some(bound);
    Ok(())
}
