//! RFC 9457 problem details: the one [`Problem`] type of every brski server and its one
//! [`IntoResponse`].
//!
//! **The `type` URI scheme.** Every problem `type` is a tag URI (RFC 4151)
//! `tag:brski.dev,2026:problem/<area>/<slug>`: `<area>` is the surface that answers
//! ([`Area`]: `est`, `masa`, `brski`, `agent`) and `<slug>` the stable code of the problem
//! (for the agent surface, the `reason` member). A tag URI names the problem without
//! promising a page to dereference (RFC 9457 §3.1.1 asks that an `http(s)` type resolve to
//! documentation; nothing is served at brski.dev), and the house already names its EAT
//! profile the same way (`tag:brski.dev,2026:agent-proxy-evidence-v1`). Before this module
//! there were five schemes (`urn:brski:est:problem:`, `urn:brski:masa:problem:`,
//! `https://brski.dev/problems/`, `https://brski.dev/problems/agent/`, `about:blank`).

use super::reason::Reason;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use shared::agent::AgentError;
use std::borrow::Cow;

/// RFC 9457 §6.1 media type of every problem body. The only place the string is written:
/// servers, clients and tests that check a `Content-Type` use this constant.
pub const MEDIA_PROBLEM: &str = "application/problem+json";

/// The common start of every problem `type` URI (see the module doc for the scheme).
pub const PROBLEM_TYPE_PREFIX: &str = "tag:brski.dev,2026:problem/";

/// The surface a problem comes from: the middle segment of its `type` URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Area {
    /// EST (RFC 7030) requests, on `brski est serve` or the registrar.
    Est,
    /// MASA requests (RFC 8995 §5.5-§5.8).
    Masa,
    /// BRSKI requests to the registrar (RFC 8995 §5.2-§5.9).
    Brski,
    /// Agent issuance (`docs/agent-api.md`): Identity Server, Identity Proxy, owner gateway.
    Agent,
}

impl Area {
    /// The URI segment of this area.
    pub fn as_str(self) -> &'static str {
        match self {
            Area::Est => "est",
            Area::Masa => "masa",
            Area::Brski => "brski",
            Area::Agent => "agent",
        }
    }
}

/// One RFC 9457 problem: the standard members (`type`, `title`, `status`, `detail`), the
/// `reason` extension member of the agent surface, and the response headers some statuses
/// need (`WWW-Authenticate` with 401, `Allow` with 405, `Retry-After` with 202/429/503,
/// `Connection: close` after an RFC 8995 §5.3 proximity failure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    status: StatusCode,
    area: Area,
    slug: &'static str,
    title: Cow<'static, str>,
    detail: String,
    reason: Option<Reason>,
    retry_after: Option<u64>,
    www_authenticate: Option<&'static str>,
    allow: Option<&'static str>,
    close: bool,
}

impl Problem {
    /// A problem of `area` with code `slug`, answered with `status`; its title is the
    /// status's reason phrase until [`Problem::with_title`] names a better one.
    pub fn new(area: Area, slug: &'static str, status: StatusCode, detail: impl Into<String>) -> Self {
        Problem {
            status,
            area,
            slug,
            title: Cow::Borrowed(status.canonical_reason().unwrap_or("Error")),
            detail: detail.into(),
            reason: None,
            retry_after: None,
            www_authenticate: None,
            allow: None,
            close: false,
        }
    }

    /// An agent-surface problem: status from [`Reason::status`], the `reason` member set, and
    /// the type `.../agent/<reason>`. The same refusal answers the same at every agent server.
    pub fn agent(reason: Reason, detail: impl Into<String>) -> Self {
        let mut p = Problem::new(Area::Agent, reason.as_str(), reason.status(), detail);
        p.reason = Some(reason);
        p
    }

    /// Replaces the title (a short, fixed summary of the problem type).
    pub fn with_title(mut self, title: &'static str) -> Self {
        self.title = Cow::Borrowed(title);
        self
    }

    /// Adds `Retry-After: secs` (at least 1).
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }

    /// Adds a `WWW-Authenticate` challenge (RFC 9110 §11.6.1, with 401).
    pub fn with_www_authenticate(mut self, challenge: &'static str) -> Self {
        self.www_authenticate = Some(challenge);
        self
    }

    /// Adds `Allow` (RFC 9110 §10.2.1, with 405).
    pub fn with_allow(mut self, methods: &'static str) -> Self {
        self.allow = Some(methods);
        self
    }

    /// Adds `Connection: close`: the server will not read another request on this connection.
    pub fn with_connection_close(mut self) -> Self {
        self.close = true;
        self
    }

    /// The HTTP status (also the `status` member).
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The `type` URI: [`PROBLEM_TYPE_PREFIX`]`<area>/<slug>`.
    pub fn type_uri(&self) -> String {
        format!("{PROBLEM_TYPE_PREFIX}{}/{}", self.area.as_str(), self.slug)
    }

    /// The stable code: the last segment of the `type` URI.
    pub fn slug(&self) -> &'static str {
        self.slug
    }

    /// The `title` member.
    pub fn title(&self) -> &str {
        &self.title
    }

    /// The `detail` member: a sentence a person can act on.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The `reason` member (agent surface only).
    pub fn reason(&self) -> Option<Reason> {
        self.reason
    }

    /// The `Retry-After` seconds, if any.
    pub fn retry_after(&self) -> Option<u64> {
        self.retry_after
    }

    /// The JSON object of the body.
    pub fn to_json(&self) -> serde_json::Value {
        let mut body = serde_json::json!({
            "type": self.type_uri(),
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        if let Some(r) = self.reason {
            body["reason"] = r.as_str().into();
        }
        body
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut resp = (self.status, [(header::CONTENT_TYPE, MEDIA_PROBLEM)], self.to_json().to_string())
            .into_response();
        let h = resp.headers_mut();
        if let Some(secs) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(c) = self.www_authenticate {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
        }
        if let Some(a) = self.allow {
            h.insert(header::ALLOW, HeaderValue::from_static(a));
        }
        if self.close {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some(r) = self.reason {
            resp.extensions_mut().insert(r);
        }
        resp
    }
}

/// An agent refusal as a problem: reason from the table, detail from the error's message.
impl From<&AgentError> for Problem {
    fn from(e: &AgentError) -> Self {
        Problem::agent(Reason::from(e), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_body_and_headers_follow_rfc_9457() {
        let p = Problem::new(Area::Est, "authentication-required", StatusCode::UNAUTHORIZED, "who are you")
            .with_title("Authentication required")
            .with_www_authenticate("Basic realm=\"est\"");
        let r = p.into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()[header::CONTENT_TYPE], MEDIA_PROBLEM);
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Basic realm=\"est\"");
        let body = axum::body::to_bytes(r.into_body(), 4096).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["type"], "tag:brski.dev,2026:problem/est/authentication-required");
        assert_eq!(v["title"], "Authentication required");
        assert_eq!(v["status"], 401);
        assert_eq!(v["detail"], "who are you");
        assert!(v.get("reason").is_none());
    }

    #[test]
    fn agent_refusals_of_a_well_formed_request_are_403() {
        assert_eq!(Problem::from(&AgentError::Signature("ACR")).status(), StatusCode::FORBIDDEN);
        assert_eq!(Problem::from(&AgentError::Nonce("used".into())).status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn agent_problems_carry_their_reason_and_its_status() {
        let p = Problem::agent(Reason::RateLimited, "slow down").with_retry_after(0);
        assert_eq!(p.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(p.to_json()["reason"], "rate-limited");
        assert_eq!(p.type_uri(), format!("{PROBLEM_TYPE_PREFIX}agent/rate-limited"));
        let r = p.into_response();
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        assert_eq!(r.extensions().get::<Reason>(), Some(&Reason::RateLimited));
    }
}
