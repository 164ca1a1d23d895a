//! Every `reason` the agent-issuance surface can send (`docs/agent-api.md`, "Reasons"), each
//! with its one HTTP status, and the one table from [`AgentError`] to a reason.
//!
//! The Identity Proxy, the owner gateway and the Identity Server all answer through
//! `Problem::agent`, so the same refusal (a bad ACR signature, a stale nonce, ...) gets the
//! same status and the same `reason` wherever it is detected.

use axum::http::StatusCode;
use shared::agent::AgentError;

/// The stable `reason` member of an agent-surface problem. Its wire strings are the list in
/// `docs/agent-api.md` (a test compares the two).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// The body, a query or an object in it cannot be parsed (400).
    Malformed,
    /// A JOSE `typ` (or CWT profile) is not the one expected here (400).
    WrongType,
    /// Two things that must name the same key do not (400).
    KeyMismatch,
    /// A signature does not verify (403).
    BadSignature,
    /// The audience is not this trust domain (403).
    WrongAudience,
    /// Expired, not yet valid, lives too long, or no decision in time (403).
    Time,
    /// A nonce is missing, unknown, expired, already used or not base64url (403).
    Nonce,
    /// A `jti` was seen before (403).
    Replay,
    /// An owner approval does not bind this request (403).
    OwnerBinding,
    /// The owner's key is not a provisioned owner anchor (403).
    UnknownOwner,
    /// A certificate path does not validate (403).
    Chain,
    /// A well-formed request that policy refuses (403).
    Policy,
    /// The evidence does not bind this request or is not the proxy's (403).
    Evidence,
    /// The agent, owner, grant or proxy LDevID is revoked (403).
    Revoked,
    /// The owner denied the request (403).
    Denied,
    /// Another client created the request being polled (403).
    NotYours,
    /// No acceptable TLS client certificate (401).
    Unauthorized,
    /// No such resource, request or challenge (404).
    NotFound,
    /// The method is not allowed on this resource (405).
    MethodNotAllowed,
    /// The request body did not arrive in time (408).
    Timeout,
    /// The challenge was already answered (409).
    Answered,
    /// The body is over the limit (413).
    TooLarge,
    /// The Content-Type is not the one this endpoint takes (415).
    UnsupportedMediaType,
    /// An Agent API request without `Agent-Identity-Api: true` (400).
    MissingApiHeader,
    /// A CSR that asks for another URI SAN than the agent id (400).
    SecondUriSan,
    /// A proxy sends requests faster than allowed (429, with Retry-After).
    RateLimited,
    /// Signing the credential failed (500).
    Sign,
    /// A failure on the server's side; details only in its log (500).
    Internal,
    /// The next server could not be reached or answered nonsense (502).
    Upstream,
    /// Too many owner challenges are pending (503).
    Busy,
    /// The gateway's queue is full (503, with Retry-After).
    QueueFull,
}

impl Reason {
    /// Every reason, in the order of `docs/agent-api.md`.
    pub const ALL: [Reason; 31] = [
        Reason::Malformed,
        Reason::WrongType,
        Reason::KeyMismatch,
        Reason::MissingApiHeader,
        Reason::SecondUriSan,
        Reason::Unauthorized,
        Reason::BadSignature,
        Reason::WrongAudience,
        Reason::Time,
        Reason::Nonce,
        Reason::Replay,
        Reason::OwnerBinding,
        Reason::UnknownOwner,
        Reason::Chain,
        Reason::Policy,
        Reason::Evidence,
        Reason::Revoked,
        Reason::Denied,
        Reason::NotYours,
        Reason::NotFound,
        Reason::MethodNotAllowed,
        Reason::Timeout,
        Reason::Answered,
        Reason::TooLarge,
        Reason::UnsupportedMediaType,
        Reason::RateLimited,
        Reason::Sign,
        Reason::Internal,
        Reason::Upstream,
        Reason::Busy,
        Reason::QueueFull,
    ];

    /// The wire string (the `reason` member, the last segment of the problem `type`).
    pub fn as_str(self) -> &'static str {
        use Reason::*;
        match self {
            Malformed => "malformed",
            WrongType => "wrong-type",
            KeyMismatch => "key-mismatch",
            BadSignature => "bad-signature",
            WrongAudience => "wrong-audience",
            Time => "time",
            Nonce => "nonce",
            Replay => "replay",
            OwnerBinding => "owner-binding",
            UnknownOwner => "unknown-owner",
            Chain => "chain",
            Policy => "policy",
            Evidence => "evidence",
            Revoked => "revoked",
            Denied => "denied",
            NotYours => "not-yours",
            Unauthorized => "unauthorized",
            NotFound => "not-found",
            MethodNotAllowed => "method-not-allowed",
            Timeout => "timeout",
            Answered => "answered",
            TooLarge => "too-large",
            UnsupportedMediaType => "unsupported-media-type",
            MissingApiHeader => "missing-api-header",
            SecondUriSan => "second-uri-san",
            RateLimited => "rate-limited",
            Sign => "sign",
            Internal => "internal",
            Upstream => "upstream",
            Busy => "busy",
            QueueFull => "queue-full",
        }
    }

    /// The reason a wire string names (for a client reading a problem).
    pub fn from_wire(s: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The one HTTP status of this reason.
    pub fn status(self) -> StatusCode {
        use Reason::*;
        match self {
            Malformed | WrongType | KeyMismatch | MissingApiHeader | SecondUriSan => StatusCode::BAD_REQUEST,
            Unauthorized => StatusCode::UNAUTHORIZED,
            BadSignature | WrongAudience | Time | Nonce | Replay | OwnerBinding | UnknownOwner | Chain
            | Policy | Evidence | Revoked | Denied | NotYours => StatusCode::FORBIDDEN,
            NotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Timeout => StatusCode::REQUEST_TIMEOUT,
            Answered => StatusCode::CONFLICT,
            TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Sign | Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Upstream => StatusCode::BAD_GATEWAY,
            Busy | QueueFull => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The one `AgentError -> reason` table (and so, through [`Reason::status`], the one status).
impl From<&AgentError> for Reason {
    fn from(e: &AgentError) -> Self {
        match e {
            AgentError::Malformed { .. } => Reason::Malformed,
            AgentError::WrongType { .. } => Reason::WrongType,
            AgentError::Signature(_) => Reason::BadSignature,
            AgentError::Audience { .. } => Reason::WrongAudience,
            AgentError::Time(_) => Reason::Time,
            AgentError::Nonce(_) => Reason::Nonce,
            AgentError::Replay(_) => Reason::Replay,
            AgentError::KeyMismatch(_) => Reason::KeyMismatch,
            AgentError::Binding(_) => Reason::OwnerBinding,
            AgentError::UnknownOwner(_) => Reason::UnknownOwner,
            AgentError::Chain(_) => Reason::Chain,
            AgentError::Policy(_) => Reason::Policy,
            AgentError::Evidence(_) => Reason::Evidence,
            AgentError::Sign(_) => Reason::Sign,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// The `reason` table of `docs/agent-api.md` ("## Reasons"): wire string -> status.
    fn documented() -> BTreeMap<String, u16> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/agent-api.md");
        let text = std::fs::read_to_string(path).expect("docs/agent-api.md");
        let section = text.split("\n## Reasons").nth(1).expect("a '## Reasons' section");
        let section = section.split("\n## ").next().unwrap_or_default();
        section
            .lines()
            .filter_map(|l| {
                let mut cells = l.strip_prefix('|')?.split('|').map(str::trim);
                let reason = cells.next()?.strip_prefix('`')?.strip_suffix('`')?;
                let status = cells.next()?.parse().ok()?;
                Some((reason.to_string(), status))
            })
            .collect()
    }

    #[test]
    fn the_doc_lists_exactly_the_reasons_the_code_can_send() {
        let doc = documented();
        let code: BTreeMap<String, u16> =
            Reason::ALL.iter().map(|r| (r.as_str().to_string(), r.status().as_u16())).collect();
        let missing: Vec<_> = code.keys().filter(|k| !doc.contains_key(*k)).collect();
        let extra: Vec<_> = doc.keys().filter(|k| !code.contains_key(*k)).collect();
        assert!(missing.is_empty(), "reasons the code sends that docs/agent-api.md lacks: {missing:?}");
        assert!(extra.is_empty(), "reasons docs/agent-api.md lists that the code never sends: {extra:?}");
        assert_eq!(doc, code, "the documented statuses differ from Reason::status");
    }

    #[test]
    fn wire_strings_are_unique_and_round_trip() {
        for r in Reason::ALL {
            assert_eq!(Reason::from_wire(r.as_str()), Some(r));
        }
        let mut all: Vec<_> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), Reason::ALL.len());
    }

    #[test]
    fn every_agent_error_has_the_reason_shared_names() {
        let cases = [
            AgentError::malformed("x", "y"),
            AgentError::WrongType { expected: "a", got: "b".into() },
            AgentError::Signature("ACR"),
            AgentError::Audience { expected: "a".into(), got: "b".into() },
            AgentError::Time("t".into()),
            AgentError::Nonce("n".into()),
            AgentError::Replay("j".into()),
            AgentError::KeyMismatch("k".into()),
            AgentError::Binding("b".into()),
            AgentError::UnknownOwner("o".into()),
            AgentError::Chain("c".into()),
            AgentError::Policy("p".into()),
            AgentError::Evidence("e".into()),
            AgentError::Sign("s".into()),
        ];
        for e in &cases {
            assert_eq!(Reason::from(e).as_str(), e.reason(), "{e:?}");
        }
    }
}
