//! What the gateway checks before it approves: the proxy's TLS identity (an LDevID of the
//! trust domain), that `proxy.ldevid_sha256` names that LDevID, the ACR (proof of possession,
//! audience, time, model owner-mediated, owner = this gateway) and the gateway's rules.

use super::problem::Refusal;
use crate::identity::cert_hash;
use est::http::ConnectionInfo;
use est::http::Reason;
use shared::agent::wire::CredentialRequest;
use shared::agent::{id_matches, verify_acr, Acr, Model};
use shared::pki::verify_chain;
use shared::Verified;
use x509_cert::Certificate;

/// The proxy on the TLS connection.
#[derive(Debug, Clone)]
pub(crate) struct ProxyIdentity {
    /// b64url SHA-256 of its LDevID.
    pub hash: String,
    /// The LDevID's subject (for people).
    pub subject: String,
}

/// The proxy's LDevID must chain to the domain CA.
pub(crate) fn proxy_identity(conn: &ConnectionInfo, ca: &[Certificate]) -> Result<ProxyIdentity, Refusal> {
    let chain = conn.peer_chain().map_err(|e| Refusal::unauthorized(e.to_string()))?;
    let leaf = chain
        .first()
        .ok_or_else(|| Refusal::unauthorized("a TLS client certificate (LDevID) is required"))?;
    verify_chain(leaf, &chain[1..], ca, time::OffsetDateTime::now_utc()).map_err(|e| {
        Refusal::unauthorized(format!("the client certificate is not an LDevID of the trust domain: {e}"))
    })?;
    Ok(ProxyIdentity { hash: cert_hash(leaf), subject: leaf.tbs_certificate().subject().to_string() })
}

/// A checked request body.
#[derive(Debug, Clone)]
pub(crate) struct GatewayRequest {
    /// The body as received (`oa` is null; the gateway's OA goes in when it submits).
    pub body: CredentialRequest,
    /// The verified ACR.
    pub acr: Verified<Acr>,
}

/// Checks the body against the proxy and the gateway's rules.
pub(crate) fn check_request(
    body: &[u8],
    proxy: &ProxyIdentity,
    rules: &Rules<'_>,
    now: i64,
) -> Result<GatewayRequest, Refusal> {
    let body: CredentialRequest =
        serde_json::from_slice(body).map_err(|e| Refusal::bad_request(format!("request body: {e}")))?;
    if body.oa.is_some() {
        return Err(Refusal::bad_request("the gateway signs the owner approval: send \"oa\": null"));
    }
    let claimed = body.proxy.as_ref().map(|p| p.ldevid_sha256.as_str());
    if claimed != Some(proxy.hash.as_str()) {
        return Err(Refusal::new(
            Reason::Evidence,
            "proxy.ldevid_sha256 is not the LDevID on this TLS connection",
        ));
    }
    let acr = verify_acr(&body.acr, rules.issuance_uri, now)?;
    rules.check(&acr)?;
    Ok(GatewayRequest { body, acr })
}

/// The gateway's rules.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules<'a> {
    /// The ACR audience.
    pub issuance_uri: &'a str,
    /// The gateway's owner id.
    pub owner: &'a str,
    /// Agent id patterns it approves.
    pub agents: &'a [String],
}

impl Rules<'_> {
    /// Model owner-mediated, owner = this gateway, an agent id matching a pattern.
    pub(crate) fn check(&self, acr: &Acr) -> Result<(), Refusal> {
        let req = &acr.claims.req;
        if req.model != Model::OwnerMediated {
            return Err(Refusal::policy(format!(
                "this gateway approves owner-mediated requests, not {}",
                req.model
            )));
        }
        if req.owner.as_deref() != Some(self.owner) {
            return Err(Refusal::policy(format!(
                "the request names owner {}, this gateway is {}",
                req.owner.as_deref().unwrap_or("(none)"),
                self.owner
            )));
        }
        let id =
            acr.agent_id.as_ref().ok_or_else(|| Refusal::policy("the gateway needs an agent id (req.id)"))?;
        if !self.agents.iter().any(|p| id_matches(p, id)) {
            return Err(Refusal::policy(format!("this gateway does not approve agent id {id}")));
        }
        Ok(())
    }
}
