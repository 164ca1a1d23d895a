//! Who is on the other end of the TLS connection: a proxy (an LDevID of this domain that is
//! not revoked) or an owner / owner gateway (a certificate whose key is a provisioned owner
//! key).

use super::error::Refusal;
use super::model::{Caller, ProxyFacts};
use super::service::AgentService;
use crate::state::Registrar;
use est::http::ConnectionInfo;
use est::http::Reason;
use shared::b64;
use shared::crypto::sha256;
use shared::pki::{self, verify_chain};
use time::OffsetDateTime;
use x509_cert::Certificate;

/// b64url SHA-256 of a certificate's DER.
pub(crate) fn cert_hash(cert: &Certificate) -> String {
    b64::encode_url(&sha256(&pki::cert_to_der(cert).unwrap_or_default()))
}

/// The parsed client chain of a connection (the one rule of every server: whole or refused).
pub(crate) fn client_chain(conn: &ConnectionInfo) -> Result<Vec<Certificate>, Refusal> {
    conn.peer_chain().map_err(|e| Refusal::unauthorized(e.to_string()))
}

/// Checks that `cert` (with intermediates) is a live LDevID of this domain.
pub(crate) async fn proxy_facts(reg: &Registrar, chain: &[Certificate]) -> Result<ProxyFacts, Refusal> {
    let facts = verified_proxy(reg, chain)?;
    check_not_revoked(reg, &facts.cert).await?;
    Ok(facts)
}

/// The chain and name checks of [`proxy_facts`] (what may be cached per certificate).
fn verified_proxy(reg: &Registrar, chain: &[Certificate]) -> Result<ProxyFacts, Refusal> {
    let leaf = chain.first().ok_or_else(|| Refusal::unauthorized("a TLS client certificate is required"))?;
    verify_chain(leaf, &chain[1..], std::slice::from_ref(reg.domain_ca()), OffsetDateTime::now_utc())
        .map_err(|e| {
            Refusal::unauthorized(format!("the client certificate is not an LDevID of this domain: {e}"))
        })?;
    if leaf == reg.certificate() {
        return Err(Refusal::unauthorized("the registrar's own certificate is not a proxy"));
    }
    let serial = pki::serial_number(leaf)
        .ok_or_else(|| Refusal::unauthorized("the LDevID subject has no serialNumber"))?;
    Ok(ProxyFacts { cert: leaf.clone(), serial, hash: cert_hash(leaf) })
}

/// A revoked LDevID is refused on every request, also on a connection that was accepted
/// before the revocation.
async fn check_not_revoked(reg: &Registrar, leaf: &Certificate) -> Result<(), Refusal> {
    let serial_hex = hex::encode(leaf.tbs_certificate().serial_number().as_bytes());
    if reg.store().revocation(&serial_hex).await?.is_some() {
        return Err(Refusal::new(Reason::Revoked, "the proxy's LDevID is revoked"));
    }
    Ok(())
}

/// Identifies the caller of a connection (from [`CallerCache`] when this certificate was seen
/// before); a proxy's LDevID is checked against the revocations on every call.
pub(crate) async fn identify(
    reg: &Registrar,
    svc: &AgentService,
    conn: &ConnectionInfo,
) -> Result<Caller, Refusal> {
    let raw = conn
        .peer_certs
        .first()
        .ok_or_else(|| Refusal::unauthorized("a TLS client certificate is required"))?;
    let key = sha256(raw.as_ref());
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let caller = match svc.callers.get(&key, now) {
        Some(c) => c,
        None => {
            let c = identify_uncached(reg, svc, &client_chain(conn)?)?;
            let leaf = match &c {
                Caller::Proxy(p) => &p.cert,
                Caller::Owner { cert, .. } => cert,
            };
            let until = leaf.tbs_certificate().validity().not_after.to_unix_duration().as_secs();
            svc.callers.put(key, &c, i64::try_from(until).unwrap_or(i64::MAX));
            c
        }
    };
    if let Caller::Proxy(p) = &caller {
        check_not_revoked(reg, &p.cert).await?;
    }
    Ok(caller)
}

fn identify_uncached(reg: &Registrar, svc: &AgentService, chain: &[Certificate]) -> Result<Caller, Refusal> {
    let leaf = chain.first().ok_or_else(|| Refusal::unauthorized("a TLS client certificate is required"))?;
    let spki = pki::spki_der(leaf);
    if !svc.policy.owners_with_key(&spki).is_empty() {
        return Ok(Caller::Owner { cert: leaf.clone(), spki, hash: cert_hash(leaf) });
    }
    Ok(Caller::Proxy(verified_proxy(reg, chain)?))
}
