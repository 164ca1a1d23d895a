//! Issuance after every check passed: the X.509 agent certificate (one URI SAN, the
//! AgentOwnerBinding extension when owned) and the WIT over the same key, one audit record
//! per credential with every `jti`, and the owner grant stored for renewals.

use super::error::Refusal;
use super::grants::{self, Grant};
use super::model::{Approved, OwnerBound};
use super::service::AgentService;
use crate::state::Registrar;
use serde_json::{json, Value};
use shared::agent::binding::{
    generalized_time, owner_general_name, AgentOwnerBinding, BindingModel, APPROVAL_FORMAT_JWS,
};
use shared::agent::cert::{issue_agent_certificate, AgentCertRequest};
use shared::agent::jwt::new_jti;
use shared::agent::tpm_quote::AppraisedQuote;
use shared::agent::wire::Credential;
use shared::agent::wit::{sign_wit, Confirmation, OwnerClaim, WitClaims, WIT_MAX_LIFE};
use shared::agent::AgentError;
use shared::b64;
use shared::store::AuditEvent;
use std::time::Duration;

/// Issues the credential and returns the 200 body.
pub(crate) async fn issue(
    reg: &Registrar,
    svc: &AgentService,
    ap: &Approved,
    id: &str,
    now: i64,
) -> Result<Credential, Refusal> {
    let started = std::time::Instant::now();
    let want = |f: &str| ap.formats.iter().any(|x| x == f);
    let cert = if want("x509") { Some(certificate(reg, svc, ap)?) } else { None };
    let (wit, wit_jti) = if want("wit") {
        let (w, j) = wit(svc, ap, now)?;
        (Some(w), Some(j))
    } else {
        (None, None)
    };
    let not_after = cert
        .as_ref()
        .map(|c| c.tbs_certificate().validity().not_after.to_unix_duration().as_secs() as i64)
        .unwrap_or(now + ap.ttl.min(WIT_MAX_LIFE as u64) as i64);
    let event = audit_event(ap, cert.as_ref(), wit_jti.as_deref());
    match &cert {
        Some(c) => {
            let rec = shared::pki::issued_record(c, "agent").map_err(Refusal::internal)?;
            reg.store().record_certificate_audited(&rec, &event).await?;
        }
        None => {
            reg.store().append_audit(&event).await?;
        }
    }
    if let Some(o) = ap.owner.as_ref().filter(|o| o.new_grant) {
        grants::put(reg.store().as_ref(), &grant_of(ap, o)).await?;
    }
    reg.metrics().issued("agent-credential", started.elapsed().as_secs_f64());
    tracing::info!(agent = %ap.agent_id, caller = %ap.caller, model = %ap.acr.claims.req.model,
        owner = ap.owner.as_ref().map(|o| o.owner_id.as_str()).unwrap_or("-"), "agent credential issued");
    let x509 = cert.as_ref().map(shared::pki::cert_to_pem).transpose().map_err(Refusal::internal)?;
    Ok(Credential {
        id: id.to_string(),
        agent_id: ap.agent_id.as_str().to_string(),
        model: ap.acr.claims.req.model,
        owner: ap.owner.as_ref().map(|o| o.owner_id.clone()),
        x509,
        ca_pem: shared::pki::cert_to_pem(reg.domain_ca()).map_err(Refusal::internal)?,
        wit,
        not_after,
        grant_exp: ap.owner.as_ref().map(|o| o.grant_exp),
    })
}

fn certificate(
    reg: &Registrar,
    svc: &AgentService,
    ap: &Approved,
) -> Result<x509_cert::Certificate, Refusal> {
    let binding = ap.owner.as_ref().map(binding_of).transpose()?;
    let subject = svc.policy.subject_template.as_ref().map(|t| subject(t, ap));
    let req = AgentCertRequest {
        agent_id: &ap.agent_id,
        ttl: Duration::from_secs(ap.ttl),
        subject,
        server_auth: false,
        binding: binding.as_ref(),
    };
    Ok(issue_agent_certificate(reg.domain_ca_authority(), &ap.acr.spki_der, &req)?)
}

/// Fills the subject template: `{name}`, `{org}`, `{unit}`; RDNs whose value is missing are
/// dropped.
fn subject(template: &str, ap: &Approved) -> String {
    let name = ap.agent_id.path().rsplit('/').next().unwrap_or_default().to_string();
    let org = ap.owner.as_ref().and_then(|o| o.organization.clone());
    let unit = ap.owner.as_ref().and_then(|o| o.unit.clone());
    template
        .split(',')
        .filter_map(|rdn| {
            let mut out = rdn.to_string();
            for (k, v) in [("{name}", Some(name.clone())), ("{org}", org.clone()), ("{unit}", unit.clone())] {
                if out.contains(k) {
                    out = out.replace(k, &escape(v.as_deref()?));
                }
            }
            Some(out)
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn escape(v: &str) -> String {
    v.chars().flat_map(|c| if ",+\"\\<>;=".contains(c) { vec!['\\', c] } else { vec![c] }).collect()
}

fn binding_of(o: &OwnerBound) -> Result<AgentOwnerBinding, Refusal> {
    use der::Decode;
    let bad = |e: &dyn std::fmt::Display| Refusal::internal(e.to_string());
    Ok(AgentOwnerBinding {
        version: 1,
        model: BindingModel::from_model(o.model)
            .ok_or_else(|| Refusal::internal("owner binding without a model"))?,
        owner_id: owner_general_name(&o.owner_id)?,
        owner_key: spki::SubjectPublicKeyInfoOwned::from_der(&o.spki).map_err(|e| bad(&e))?,
        approved_at: generalized_time(o.approved_at)?,
        grant_not_after: generalized_time(o.grant_exp)?,
        approval_format: APPROVAL_FORMAT_JWS,
        approval: der::asn1::OctetString::new(o.oa_text.as_bytes().to_vec()).map_err(|e| bad(&e))?,
        org_credential_hash: hash_octets(o.org_hash.as_deref())?,
        challenge_hash: hash_octets(o.chal_hash.as_deref())?,
    })
}

fn hash_octets(h: Option<&str>) -> Result<Option<der::asn1::OctetString>, Refusal> {
    h.map(|h| {
        let raw = b64::decode_url(h).map_err(Refusal::internal)?;
        der::asn1::OctetString::new(raw).map_err(|e| Refusal::internal(e.to_string()))
    })
    .transpose()
}

fn wit(svc: &AgentService, ap: &Approved, now: i64) -> Result<(String, String), AgentError> {
    let jti = new_jti()?;
    let claims = WitClaims {
        iss: svc.policy.issuance_uri(),
        sub: ap.agent_id.as_str().to_string(),
        iat: now,
        nbf: now,
        exp: now + (ap.ttl as i64).min(WIT_MAX_LIFE),
        jti: jti.clone(),
        cnf: Confirmation { jwk: ap.acr.jwk.clone() },
        owner: ap.owner.as_ref().map(|o| OwnerClaim {
            id: o.owner_id.clone(),
            jkt: ap.acr.jkt.clone(),
            model: o.model,
            grant_exp: o.grant_exp,
            oa: o.oa_text.clone(),
        }),
    };
    Ok((sign_wit(&claims, svc.wit_key(), svc.wit_kid())?, jti))
}

fn audit_event(ap: &Approved, cert: Option<&x509_cert::Certificate>, wit_jti: Option<&str>) -> AuditEvent {
    let callers: Vec<Value> = ap
        .evidence
        .submods
        .iter()
        .map(|s| json!({"agent": s.agent_id, "uid": s.uid, "pid": s.pid, "exe": s.exe_sha256.as_deref().map(hex::encode)}))
        .collect();
    AuditEvent {
        actor: ap.caller.clone(),
        action: "agent.credential.issued".into(),
        subject: ap.agent_id.as_str().to_string(),
        detail: json!({
            "acr_jti": ap.acr.claims.jti,
            "wit_jti": wit_jti,
            "oa_jti": ap.owner.as_ref().and_then(|o| o.oa_jti.clone()),
            "cert_serial": cert.map(|c| hex::encode(c.tbs_certificate().serial_number().as_bytes())),
            "model": ap.acr.claims.req.model,
            "owner": ap.owner.as_ref().map(|o| o.owner_id.clone()),
            "renewal": ap.owner.as_ref().is_some_and(|o| !o.new_grant),
            "proxy": ap.proxy.serial,
            "jkt": ap.acr.jkt,
            "ttl": ap.ttl,
            "callers": callers,
            "tpm_quote": ap.tpm_quote.as_ref().map(quote_detail),
        }),
        at: time::OffsetDateTime::now_utc(),
    }
}

/// The audit view of an appraised quote: the device, the quoted PCRs (hex) and the TPM clock.
fn quote_detail(q: &AppraisedQuote) -> Value {
    let pcrs: serde_json::Map<String, Value> =
        q.pcrs.iter().map(|(i, v)| (i.to_string(), Value::String(hex::encode(v)))).collect();
    json!({
        "device_serial": q.device_serial,
        "pcrs": pcrs,
        "clock": q.clock,
        "reset_count": q.reset_count,
        "restart_count": q.restart_count,
    })
}

fn grant_of(ap: &Approved, o: &OwnerBound) -> Grant {
    Grant {
        agent_id: ap.agent_id.as_str().to_string(),
        jkt: ap.acr.jkt.clone(),
        owner: o.owner_id.clone(),
        owner_kid: o.kid.clone(),
        owner_spki: b64::encode_url(&o.spki),
        model: o.model,
        oa: o.oa_text.clone(),
        approved_at: o.approved_at,
        grant_exp: o.grant_exp,
        org_hash: o.org_hash.clone(),
        chal_hash: o.chal_hash.clone(),
        constraints: o.constraints.clone(),
        revoked: false,
    }
}
