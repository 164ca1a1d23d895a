//! Model 3 (server-mediated): the owner polls `GET /owner/v1/challenges` over mTLS with its
//! certificate, verifies each challenge against the domain CA, asks (a person, or a fixed
//! policy) and answers with an OA bound to the challenge (`chal_hash` + `nonce`) by
//! `POST /owner/v1/challenges/{id}` (`application/jwt`). Polling is the delivery.

use crate::config::trust_domain_of;
use crate::sign::constraints;
use crate::{OwnerError, OwnerIdentity};
use est::client::EstConnection;
use serde_json::Value;
use shared::agent::challenge::{verify_challenge, Challenge};
use shared::agent::jwt::{new_jti, unix_now};
use shared::agent::oa::DEFAULT_GRANT_SECS;
use shared::agent::{sign_oa, Model, OaClaims, OwnerKeyHeader};
use shared::signed::Trust;
use shared::Verified;
use std::collections::HashSet;
use std::time::{Duration, Instant};
use x509_cert::Certificate;

/// The challenge list path.
pub(crate) const CHALLENGES_PATH: &str = "/owner/v1/challenges";
/// The shortest and longest polling interval of `--watch`.
pub(crate) const INTERVAL_BOUNDS: (Duration, Duration) =
    (Duration::from_millis(200), Duration::from_secs(300));
/// Lifetime of a model 3 OA (bounded again by the challenge's `exp`).
const OA_LIFE: i64 = 120;

/// How to respond.
#[derive(Debug, Clone)]
pub struct RespondOptions {
    /// The Identity Server URL.
    pub server: String,
    /// The domain CA certificates.
    pub ca: Vec<Certificate>,
    /// Keep polling.
    pub watch: bool,
    /// Polling interval (clamped to [`INTERVAL_BOUNDS`]).
    pub interval: Duration,
    /// Stop watching after this long (None: until interrupted).
    pub max_duration: Option<Duration>,
    /// Grant lifetime in seconds (capped at 30 days).
    pub grant_secs: i64,
    /// Constraint `max_ttl`.
    pub max_ttl: Option<u64>,
}

/// What to do with a verified challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Sign and post an OA.
    Approve,
    /// Do not answer; the request fails when the challenge expires.
    Deny,
    /// Undecided (e.g. nobody answered the prompt): leave it.
    Skip,
}

/// What happened to one challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The pending request id.
    pub id: String,
    /// The agent id (from the challenge; empty if it did not verify).
    pub agent_id: String,
    /// The result.
    pub result: OutcomeKind,
}

/// The result of one challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutcomeKind {
    /// The server accepted the OA.
    Approved,
    /// Denied here (not answered).
    Denied,
    /// Left undecided.
    Skipped,
    /// The challenge did not verify, or the server refused the answer (status, detail).
    Failed(Option<u16>, String),
}

/// Who decides, and who hears about the outcomes.
pub trait Decider {
    /// Decides on a verified challenge.
    fn decide(&mut self, challenge: &Challenge) -> Decision;
    /// Hears about an outcome as soon as it is known.
    fn report(&mut self, _outcome: &Outcome) {}
}

/// A fixed decision for every challenge.
impl Decider for Decision {
    fn decide(&mut self, _challenge: &Challenge) -> Decision {
        *self
    }
}

/// A human summary of a verified challenge.
pub fn summary(id: &str, ch: &Challenge) -> String {
    let c = &ch.claims;
    format!(
        "challenge {id}\n  {}\n  agent id:     {}\n  agent key:    {}\n  proxy:        {}\n  \
         attestation:  {}\n  requested:    ttl {} s, formats {}\n  expires in:   {} s\n",
        c.binding_message,
        c.sub,
        c.agent_jkt,
        c.proxy,
        c.attestation.status,
        c.requested.ttl,
        c.requested.formats.join(","),
        c.exp - unix_now(),
    )
}

/// A responder's connection and memory of challenges already handled.
pub struct Responder<'a> {
    owner: &'a OwnerIdentity,
    opts: &'a RespondOptions,
    conn: Option<EstConnection>,
    handled: HashSet<String>,
}

impl<'a> Responder<'a> {
    /// A responder for `owner`.
    pub fn new(owner: &'a OwnerIdentity, opts: &'a RespondOptions) -> Self {
        Responder { owner, opts, conn: None, handled: HashSet::new() }
    }

    async fn conn(&mut self) -> Result<&mut EstConnection, OwnerError> {
        if self.conn.as_ref().is_none_or(|c| c.is_closed()) {
            self.conn = Some(self.owner.connect(&self.opts.server, &self.opts.ca).await?);
        }
        Ok(self.conn.as_mut().expect("connected above"))
    }

    /// The pending challenges addressed to this owner: `(id, compact challenge)`.
    pub async fn list(&mut self) -> Result<Vec<(String, String)>, OwnerError> {
        let r = self.conn().await?.get_raw(CHALLENGES_PATH, Some("application/json")).await;
        let r = r.inspect_err(|_| self.conn = None)?;
        if r.status != 200 {
            return Err(OwnerError::Server { status: r.status.as_u16(), detail: r.detail() });
        }
        let v: Value = serde_json::from_slice(&r.body)
            .map_err(|e| OwnerError::Server { status: 200, detail: format!("challenge list: {e}") })?;
        let list = v.get("challenges").and_then(Value::as_array).cloned().unwrap_or_default();
        Ok(list
            .iter()
            .filter_map(|c| {
                Some((c.get("id")?.as_str()?.to_string(), c.get("challenge")?.as_str()?.to_string()))
            })
            .collect())
    }

    /// Verifies a listed challenge: server signature and path to the domain CA, time, `aud` =
    /// this owner, and `response_uri` = where it was listed.
    pub fn check(&self, id: &str, text: &str, now: i64) -> Result<Verified<Challenge>, OwnerError> {
        let ch = verify_challenge(text, &Trust::now(self.opts.ca.clone()), now)?;
        if ch.claims.aud != self.owner.config.id {
            return Err(OwnerError::Refused(format!("the challenge is for {}, not for us", ch.claims.aud)));
        }
        if ch.claims.response_uri != format!("{CHALLENGES_PATH}/{id}") {
            return Err(OwnerError::Refused(format!(
                "the challenge's response_uri {} is not where it was listed",
                ch.claims.response_uri
            )));
        }
        Ok(ch)
    }

    /// The model 3 OA answering `ch`.
    pub fn approval(&self, ch: &Challenge, now: i64) -> Result<String, OwnerError> {
        let c = &ch.claims;
        let exp = (now + OA_LIFE).min(c.exp);
        let grant = self.opts.grant_secs.clamp(exp - now, DEFAULT_GRANT_SECS);
        let claims = OaClaims {
            iss: self.owner.config.id.clone(),
            sub: c.sub.clone(),
            aud: self.owner.config.trust_domain.clone().unwrap_or_else(|| trust_domain_of(&c.iss).into()),
            iat: now,
            exp,
            jti: new_jti()?,
            model: Model::ServerMediated,
            agent_jkt: c.agent_jkt.clone(),
            acr_hash: None,
            chal_hash: Some(ch.hash.clone()),
            nonce: Some(c.nonce.clone()),
            grant_exp: Some(now + grant),
            constraints: constraints(self.opts.max_ttl, None),
            org: None,
        };
        let kid = OwnerKeyHeader::Kid(self.owner.config.kid.clone());
        Ok(sign_oa(&claims, self.owner.key.as_ref(), &kid)?)
    }

    /// Posts an OA to `/owner/v1/challenges/{id}`; returns the status and the detail.
    pub async fn answer(&mut self, id: &str, oa: &str) -> Result<(u16, String), OwnerError> {
        let path = format!("{CHALLENGES_PATH}/{id}");
        let r = self.conn().await?.post_raw(&path, "application/jwt", None, oa.as_bytes().to_vec()).await;
        let r = r.inspect_err(|_| self.conn = None)?;
        Ok((r.status.as_u16(), r.detail()))
    }

    /// One poll: every challenge not handled before is verified, decided and answered.
    pub async fn round(&mut self, decider: &mut dyn Decider) -> Result<Vec<Outcome>, OwnerError> {
        let mut out = Vec::new();
        for (id, text) in self.list().await? {
            if !self.handled.insert(id.clone()) {
                continue;
            }
            let o = self.handle(&id, &text, decider).await;
            decider.report(&o);
            out.push(o);
        }
        Ok(out)
    }

    async fn handle(&mut self, id: &str, text: &str, decider: &mut dyn Decider) -> Outcome {
        let failed = |agent_id: &str, status, e: String| Outcome {
            id: id.into(),
            agent_id: agent_id.into(),
            result: OutcomeKind::Failed(status, e),
        };
        let ch = match self.check(id, text, unix_now()) {
            Ok(ch) => ch,
            Err(e) => return failed("", None, e.to_string()),
        };
        let agent_id = ch.claims.sub.clone();
        let result = match decider.decide(&ch) {
            Decision::Deny => OutcomeKind::Denied,
            Decision::Skip => OutcomeKind::Skipped,
            Decision::Approve => {
                let sent = match self.approval(&ch, unix_now()) {
                    Ok(oa) => self.answer(id, &oa).await,
                    Err(e) => Err(e),
                };
                match sent {
                    Ok((200, _)) => OutcomeKind::Approved,
                    Ok((status, detail)) => OutcomeKind::Failed(Some(status), detail),
                    Err(e) => OutcomeKind::Failed(None, e.to_string()),
                }
            }
        };
        Outcome { id: id.into(), agent_id, result }
    }
}

/// Polls once (or, with `watch`, until `max_duration`), deciding with `decider`. Every
/// request has a timeout; in watch mode a failed poll is logged and retried.
pub async fn respond(
    owner: &OwnerIdentity,
    opts: &RespondOptions,
    decider: &mut dyn Decider,
) -> Result<Vec<Outcome>, OwnerError> {
    let mut r = Responder::new(owner, opts);
    if !opts.watch {
        return r.round(decider).await;
    }
    let interval = opts.interval.clamp(INTERVAL_BOUNDS.0, INTERVAL_BOUNDS.1);
    let started = Instant::now();
    let mut all = Vec::new();
    loop {
        match r.round(decider).await {
            Ok(o) => all.extend(o),
            Err(e) => tracing::warn!(error = %e, "polling the owner challenges failed; retrying"),
        }
        if opts.max_duration.is_some_and(|m| started.elapsed() + interval > m) {
            return Ok(all);
        }
        tokio::time::sleep(interval).await;
    }
}
