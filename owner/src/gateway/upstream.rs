//! The gateway's approval and its submission: the model 2 OA (`x5c` = the gateway
//! certificate, `org` = {gateway certificate hash, proxy LDevID hash}, exp <= 60 s), posted
//! with the request to the Identity Server over mTLS with the gateway certificate; the
//! server's answer is relayed as it is.

use super::check::GatewayRequest;
use super::problem::Refusal;
use super::GatewayOptions;
use crate::config::trust_domain_of;
use crate::OwnerIdentity;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use shared::agent::jwt::{new_jti, unix_now};
use shared::agent::oa::{oa_max_life, OrgBinding, DEFAULT_GRANT_SECS};
use shared::agent::wire::CredentialRequest;
use shared::agent::{sign_oa, Model, OaClaims, OwnerKeyHeader};

/// The server's endpoint.
pub(crate) const SERVER_PATH: &str = "/agent/v1/credentials";

/// The Identity Server's answer, kept to relay (again, when a proxy polls).
#[derive(Debug, Clone)]
pub(crate) struct Relayed {
    /// Status.
    pub status: u16,
    /// Content-Type.
    pub content_type: String,
    /// Retry-After seconds.
    pub retry_after: Option<u64>,
    /// Body.
    pub body: Vec<u8>,
}

impl IntoResponse for Relayed {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_GATEWAY);
        let mut r = (status, self.body).into_response();
        let h = r.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&self.content_type) {
            h.insert(header::CONTENT_TYPE, v);
        }
        if let Some(s) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

/// The model 2 OA for a checked request from proxy `via`.
pub(crate) fn approval(
    owner: &OwnerIdentity,
    opts: &GatewayOptions,
    req: &GatewayRequest,
    via: &str,
    now: i64,
) -> Result<String, Refusal> {
    let acr = &req.acr;
    let claims = OaClaims {
        iss: owner.config.id.clone(),
        sub: acr.agent_id.as_ref().map(|a| a.as_str().to_string()).unwrap_or_default(),
        aud: trust_domain_of(&opts.issuance_uri).to_string(),
        iat: now,
        exp: now + oa_max_life(Model::OwnerMediated),
        jti: new_jti()?,
        model: Model::OwnerMediated,
        agent_jkt: acr.jkt.clone(),
        acr_hash: Some(acr.hash.clone()),
        chal_hash: None,
        nonce: None,
        grant_exp: Some(now + opts.grant_secs.clamp(60, DEFAULT_GRANT_SECS)),
        constraints: crate::sign::constraints(opts.max_ttl, None),
        org: Some(OrgBinding { cred: owner.cert_hash(), via: via.to_string() }),
    };
    Ok(sign_oa(&claims, owner.key.as_ref(), &OwnerKeyHeader::X5c(vec![owner.cert.clone()]))?)
}

/// Signs the OA, submits the request to the Identity Server and returns its answer.
pub(crate) async fn submit(
    owner: &OwnerIdentity,
    opts: &GatewayOptions,
    req: &GatewayRequest,
    via: &str,
) -> Result<Relayed, Refusal> {
    let oa = approval(owner, opts, req, via, unix_now())?;
    let body = CredentialRequest { oa: Some(oa), ..req.body.clone() };
    let bytes = serde_json::to_vec(&body).map_err(Refusal::internal)?;
    let mut conn = owner.connect(&opts.server, &opts.ca).await.map_err(Refusal::upstream)?;
    let r = conn.post_raw(SERVER_PATH, "application/json", None, bytes).await.map_err(Refusal::upstream)?;
    tracing::info!(status = %r.status, agent = ?req.acr.agent_id, "submitted to the Identity Server");
    Ok(Relayed {
        status: r.status.as_u16(),
        content_type: r.content_type.clone(),
        retry_after: r.retry_after.map(|d| d.as_secs()),
        body: r.body.to_vec(),
    })
}
