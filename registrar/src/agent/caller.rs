//! Who is on the other end of the TLS connection: a proxy (an LDevID of this domain that is
//! not revoked) or an owner / owner gateway (a certificate whose key is a provisioned owner
//! key).

use super::error::Refusal;
use super::service::AgentService;
use crate::state::Registrar;
use est::http::Reason;
use est::server::ConnectionInfo;
use shared::b64;
use shared::crypto::sha256;
use shared::pki::{self, verify_chain};
use time::OffsetDateTime;
use x509_cert::Certificate;

/// An authenticated caller.
#[derive(Debug, Clone)]
pub enum Caller {
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
    pub fn hash(&self) -> &str {
        match self {
            Caller::Proxy(p) => &p.hash,
            Caller::Owner { hash, .. } => hash,
        }
    }

    /// A name for logs and audit records.
    pub fn name(&self) -> String {
        match self {
            Caller::Proxy(p) => format!("proxy:{}", p.serial),
            Caller::Owner { cert, .. } => format!("owner:{}", cert.tbs_certificate().subject()),
        }
    }
}

/// b64url SHA-256 of a certificate's DER.
pub fn cert_hash(cert: &Certificate) -> String {
    b64::encode_url(&sha256(&pki::cert_to_der(cert).unwrap_or_default()))
}

/// The parsed client chain of a connection.
pub fn client_chain(conn: &ConnectionInfo) -> Vec<Certificate> {
    conn.peer_certs.iter().filter_map(|c| pki::cert_from_der(c.as_ref()).ok()).collect()
}

/// Checks that `cert` (with intermediates) is a live LDevID of this domain.
pub async fn proxy_facts(reg: &Registrar, chain: &[Certificate]) -> Result<ProxyFacts, Refusal> {
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

/// Callers already identified, by SHA-256 of the client certificate's DER: a proxy's chain
/// check (a signature verification) and the owner lookup run once per certificate, not once per
/// request. Entries end with the certificate's notAfter; the policy does not change while the
/// server runs. Revocation is still checked on every request.
#[derive(Debug, Default)]
pub struct CallerCache {
    map: std::sync::Mutex<std::collections::HashMap<[u8; 32], (Caller, i64)>>,
}

/// Most certificates [`CallerCache`] remembers (it starts over when full).
const CALLER_CACHE_MAX: usize = 10_000;

impl CallerCache {
    fn get(&self, key: &[u8; 32], now: i64) -> Option<Caller> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key).filter(|(_, until)| now < *until).map(|(c, _)| c.clone())
    }

    fn put(&self, key: [u8; 32], caller: &Caller, until: i64) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= CALLER_CACHE_MAX {
            map.clear();
        }
        map.insert(key, (caller.clone(), until));
    }
}

/// Identifies the caller of a connection (from [`CallerCache`] when this certificate was seen
/// before); a proxy's LDevID is checked against the revocations on every call.
pub async fn identify(reg: &Registrar, svc: &AgentService, conn: &ConnectionInfo) -> Result<Caller, Refusal> {
    let raw = conn
        .peer_certs
        .first()
        .ok_or_else(|| Refusal::unauthorized("a TLS client certificate is required"))?;
    let key = sha256(raw.as_ref());
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let caller = match svc.callers.get(&key, now) {
        Some(c) => c,
        None => {
            let c = identify_uncached(reg, svc, &client_chain(conn))?;
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
