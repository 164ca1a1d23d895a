//! The agent routes on the registrar's TLS port (docs/agent-api.md): nonce, bundle,
//! credentials (issue, 202 for model 3, poll), and the owner's challenge endpoints.

use super::caller::identify;
use super::error::Refusal;
use super::flow::{apply, check_oa, check_request, Next};
use super::issue::issue;
use super::model::{Approved, Caller};
use super::pending::{Entry, State};
use super::service::AgentService;
use crate::state::Registrar;
use axum::extract::{Path, Request, State as AxState};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use est::http::{BodyLimits, ConnectionInfo, Reason};
use serde_json::{json, Value};
use shared::agent::challenge::{sign_challenge, AttestationStatus, ChallengeClaims, Requested};
use shared::agent::jwt::{new_jti, random, unix_now};
use shared::agent::oa::OaBinding;
use shared::agent::wire::{Answered, ChallengeItem, Challenges, CredentialRequest, NonceReply, Pending};
use shared::b64;
use shared::store::AuditEvent;
use std::sync::Arc;

/// Largest request body.
pub(super) const MAX_BODY: usize = 64 * 1024;
/// Retry-After for pending requests.
pub(super) const RETRY_AFTER_SECS: u64 = 1;

/// The agent routes (only mounted when the registrar has an agent policy).
pub(crate) fn routes(reg: Arc<Registrar>) -> Router {
    Router::new()
        .route("/agent/v1/nonce", get(nonce))
        .route("/agent/v1/bundle", get(bundle))
        .route("/agent/v1/credentials", post(credentials))
        .route("/agent/v1/credentials/{id}", get(poll))
        .route("/owner/v1/challenges", get(challenges))
        .route("/owner/v1/challenges/{id}", post(answer))
        .with_state(reg)
}

fn svc(reg: &Registrar) -> Result<&AgentService, Refusal> {
    reg.agent().ok_or_else(|| Refusal::new(Reason::NotFound, "agent issuance is not configured"))
}

fn conn(req: &Request) -> Arc<ConnectionInfo> {
    req.extensions().get::<Arc<ConnectionInfo>>().cloned().unwrap_or_default()
}

async fn caller(reg: &Registrar, conn: Arc<ConnectionInfo>) -> Result<Caller, Refusal> {
    identify(reg, svc(reg)?, &conn).await
}

fn answer_of(reg: &Registrar, r: Result<Response, Refusal>, what: &str) -> Response {
    r.unwrap_or_else(|e| {
        let (status, reason) = (e.status(), e.reason.as_str());
        reg.metrics().refusal(reason);
        if status.is_server_error() {
            tracing::error!(%status, reason, detail = %e.detail, "{what} failed");
        } else {
            tracing::warn!(%status, reason, detail = %e.detail, "{what} refused");
        }
        e.into_response()
    })
}

/// Most nonces one `GET /agent/v1/nonce?count=N` hands out (a proxy keeps a few ready).
pub(super) const MAX_NONCE_BATCH: usize = 32;

async fn nonce(AxState(reg): AxState<Arc<Registrar>>, req: Request) -> Response {
    let c = conn(&req);
    let count = nonce_count(req.uri().query());
    drop(req);
    let r = async {
        let count = count?;
        match caller(&reg, c.clone()).await? {
            Caller::Proxy(_) => {}
            Caller::Owner { .. } => return Err(Refusal::unauthorized("nonces are for proxies")),
        }
        let now = unix_now();
        let mut batch = Vec::with_capacity(count);
        for _ in 0..count {
            batch.push(svc(&reg)?.nonces.issue(now)?);
        }
        let (first, exp) = batch[0];
        let nonces = (count > 1).then(|| batch.iter().map(|(n, _)| b64::encode_url(n)).collect());
        Ok(Json(NonceReply { nonce: b64::encode_url(&first), exp, nonces }).into_response())
    };
    answer_of(&reg, r.await, "agent nonce")
}

/// `count=N` (1 to [`MAX_NONCE_BATCH`]) of the nonce request; 1 without a query.
fn nonce_count(query: Option<&str>) -> Result<usize, Refusal> {
    let Some(q) = query else { return Ok(1) };
    let bad = || Refusal::new(Reason::Malformed, format!("the only query is count=1..{MAX_NONCE_BATCH}"));
    let n: usize = q.strip_prefix("count=").and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    if (1..=MAX_NONCE_BATCH).contains(&n) {
        Ok(n)
    } else {
        Err(bad())
    }
}

async fn bundle(AxState(reg): AxState<Arc<Registrar>>, req: Request) -> Response {
    let c = conn(&req);
    drop(req);
    let r = async {
        caller(&reg, c.clone()).await?;
        Ok(Json(svc(&reg)?.bundle(reg.domain_ca())?).into_response())
    };
    answer_of(&reg, r.await, "agent bundle")
}

async fn read_json<T: serde::de::DeserializeOwned>(req: Request, media: &[&str]) -> Result<T, Refusal> {
    let ct =
        req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let base = shared::brski::media::essence(&ct);
    if !media.contains(&base.as_str()) {
        return Err(Refusal::new(
            Reason::UnsupportedMediaType,
            format!("Content-Type must be {}", media.join(" or ")),
        ));
    }
    let body = read_body(req).await?;
    serde_json::from_slice(&body).map_err(|e| Refusal::bad_request(format!("request body: {e}")))
}

/// Reads the body within the agent surface's limits (the one reader; the one reason table).
async fn read_body(req: Request) -> Result<Bytes, Refusal> {
    est::http::read_body(req.into_body(), BodyLimits::new(MAX_BODY))
        .await
        .map_err(|e| Refusal::new(Reason::from(&e), e.to_string()))
}

async fn credentials(AxState(reg): AxState<Arc<Registrar>>, req: Request) -> Response {
    let who = caller(&reg, conn(&req)).await;
    let r = async {
        let who = who?;
        let body: CredentialRequest =
            read_json(req, &["application/json", shared::agent::acr::CREDENTIAL_REQUEST_MEDIA_TYPE]).await?;
        let outcome = create(&reg, &who, &body).await;
        if let Err(e) = &outcome {
            audit_refusal(&reg, &who, &body, e).await;
        }
        outcome
    };
    answer_of(&reg, r.await, "agent credential request")
}

async fn create(reg: &Arc<Registrar>, who: &Caller, body: &CredentialRequest) -> Result<Response, Refusal> {
    let svc = svc(reg)?;
    let now = unix_now();
    let id = b64::encode_url(&random::<16>()?);
    match check_request(reg, svc, who, body, now).await? {
        Next::Issue(ap) => Ok(Json(issue(reg, svc, &ap, &id, now).await?).into_response()),
        Next::Challenge(ap) => {
            let r = challenge(reg, svc, who, *ap, id, now);
            reg.refresh_pending_gauge().await;
            r
        }
    }
}

/// Creates the model 3 challenge and answers 202.
fn challenge(
    reg: &Registrar,
    svc: &AgentService,
    who: &Caller,
    ap: Approved,
    id: String,
    now: i64,
) -> Result<Response, Refusal> {
    let owner_id = ap.acr.claims.req.owner.clone().unwrap_or_default();
    let nonce = b64::encode_url(&random::<32>()?);
    let claims = ChallengeClaims {
        iss: svc.policy.issuance_uri(),
        aud: owner_id.clone(),
        sub: ap.agent_id.as_str().to_string(),
        iat: now,
        exp: now + svc.policy.challenge_ttl,
        jti: new_jti()?,
        nonce: nonce.clone(),
        acr_hash: ap.acr.hash.clone(),
        agent_jkt: ap.acr.jkt.clone(),
        proxy: ap.proxy.hash.clone(),
        attestation: AttestationStatus { status: "affirming".into() },
        requested: Requested { ttl: ap.ttl, formats: ap.formats.clone() },
        binding_message: format!(
            "{} on proxy {} asks to be owned by {owner_id}",
            ap.agent_id, ap.proxy.serial
        ),
        response_uri: format!("/owner/v1/challenges/{id}"),
    };
    let kid = shared::brski::domain_id(reg.certificate());
    let text = sign_challenge(&claims, reg.key().as_ref(), reg.chain(), &kid)?;
    let entry = Entry {
        requester: who.hash().to_string(),
        owner_id: owner_id.clone(),
        chal_hash: shared::agent::jwt::jwt_hash(&text),
        challenge: text,
        nonce,
        exp: claims.exp,
        answered: false,
        state: State::Waiting(Box::new(ap)),
    };
    let webhook =
        svc.policy.owners.iter().find(|o| o.anchor.owner == owner_id).and_then(|o| o.webhook.clone());
    let push = json!({"id": id, "challenge": entry.challenge, "response_uri": claims.response_uri});
    svc.pending.insert(id.clone(), entry, now)?;
    tracing::info!(%id, owner = %owner_id, webhook = webhook.is_some(), "owner challenge created; the proxy polls");
    if let Some(w) = webhook {
        tokio::spawn(super::webhook::deliver(w, push));
    }
    Ok(pending_response(&id))
}

fn pending_response(id: &str) -> Response {
    let mut r = (StatusCode::ACCEPTED, Json(Pending::new(id))).into_response();
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    if let Ok(v) = HeaderValue::from_str(&format!("/agent/v1/credentials/{id}")) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

async fn poll(AxState(reg): AxState<Arc<Registrar>>, Path(id): Path<String>, req: Request) -> Response {
    let c = conn(&req);
    drop(req);
    let r = async {
        let who = caller(&reg, c.clone()).await?;
        let e =
            svc(&reg)?.pending.get(&id).ok_or_else(|| Refusal::new(Reason::NotFound, "no such request"))?;
        if e.requester != who.hash() {
            return Err(Refusal::new(Reason::NotYours, "another client created this request"));
        }
        match e.state {
            State::Done(Ok(v)) => Ok(Json(v).into_response()),
            State::Done(Err(r)) => Err(r),
            State::Waiting(_) if e.exp < unix_now() => {
                Err(Refusal::new(Reason::Time, "the owner did not answer the challenge in time"))
            }
            State::Waiting(_) => Ok(pending_response(&id)),
        }
    };
    answer_of(&reg, r.await, "agent credential poll")
}

async fn challenges(AxState(reg): AxState<Arc<Registrar>>, req: Request) -> Response {
    let c = conn(&req);
    drop(req);
    let r = async {
        let svc = svc(&reg)?;
        let Caller::Owner { spki, .. } = caller(&reg, c.clone()).await? else {
            return Err(Refusal::unauthorized("authenticate with a provisioned owner key"));
        };
        let owners: Vec<String> =
            svc.policy.owners_with_key(&spki).iter().map(|o| o.anchor.owner.clone()).collect();
        let challenges = svc
            .pending
            .for_owners(&owners, unix_now())
            .into_iter()
            .map(|(id, challenge)| ChallengeItem { id, challenge })
            .collect();
        Ok(Json(Challenges { challenges }).into_response())
    };
    answer_of(&reg, r.await, "owner challenge list")
}

async fn answer(AxState(reg): AxState<Arc<Registrar>>, Path(id): Path<String>, req: Request) -> Response {
    let r = async {
        let svc = svc(&reg)?;
        let who = caller(&reg, conn(&req)).await?;
        let Caller::Owner { spki, .. } = &who else {
            return Err(Refusal::unauthorized("authenticate with a provisioned owner key"));
        };
        let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
        if !ct.to_ascii_lowercase().starts_with("application/jwt") {
            return Err(Refusal::new(Reason::UnsupportedMediaType, "Content-Type must be application/jwt"));
        }
        let spki = spki.clone();
        let oa = String::from_utf8(read_body(req).await?.to_vec())
            .map_err(|_| Refusal::bad_request("the OA is not text"))?;
        let now = unix_now();
        let entry = svc.pending.claim_answer(&id, now)?;
        match answer_entry(&reg, svc, &who, &spki, &entry, oa.trim(), &id, now).await {
            Ok(()) => {
                reg.refresh_pending_gauge().await;
                Ok(Json(Answered::approved()).into_response())
            }
            Err(e) => {
                svc.pending.reopen(&id);
                Err(e)
            }
        }
    };
    answer_of(&reg, r.await, "owner challenge answer")
}

#[allow(clippy::too_many_arguments)]
async fn answer_entry(
    reg: &Registrar,
    svc: &AgentService,
    who: &Caller,
    spki: &[u8],
    entry: &Entry,
    oa: &str,
    id: &str,
    now: i64,
) -> Result<(), Refusal> {
    let State::Waiting(ap) = &entry.state else {
        return Err(Refusal::new(Reason::Answered, "the challenge was already answered"));
    };
    let mut ap = (**ap).clone();
    let binding = OaBinding::Challenge { chal_hash: &entry.chal_hash, nonce: &entry.nonce };
    let bound = check_oa(reg, svc, who, &ap, oa, binding, now).await?;
    if bound.spki != spki {
        return Err(shared::agent::AgentError::Binding(
            "the OA is not signed by the authenticated owner's key".into(),
        )
        .into());
    }
    apply(&mut ap, bound)?;
    let outcome = issue(reg, svc, &ap, id, now).await;
    svc.pending.finish(id, outcome.clone());
    outcome.map(|_| ())
}

/// Audits a refused request with its ACR `jti` (read unverified, for the record only).
async fn audit_refusal(reg: &Registrar, who: &Caller, body: &CredentialRequest, e: &Refusal) {
    let claims = shared::agent::jwt::Jwt::parse(&body.acr, "ACR", shared::agent::acr::ACR_TYP)
        .map(|j| j.unverified_claims().clone())
        .unwrap_or_default();
    let subject = claims.get("req").and_then(|r| r.get("id")).and_then(Value::as_str).unwrap_or("unknown");
    let event = AuditEvent {
        actor: who.name(),
        action: "agent.credential.refused".into(),
        subject: subject.to_string(),
        detail: json!({"acr_jti": claims.get("jti"), "status": e.status().as_u16(), "reason": e.reason.as_str(), "detail": e.detail}),
        at: time::OffsetDateTime::now_utc(),
    };
    if let Err(err) = reg.store().append_audit(&event).await {
        tracing::error!(error = %err, "cannot audit a refused agent request");
    }
}
