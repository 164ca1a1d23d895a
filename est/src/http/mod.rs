//! The house's HTTPS plumbing shared by every brski server (EST, MASA, registrar, Identity
//! Proxy, owner gateway): each bound and each wire rule written once, so every listener gets it.
//!
//! * `tls`: the server TLS configuration ([`server_tls_config`]) and its optional
//!   client-certificate verifier (the roles judge the chain, not the handshake);
//! * `connection`: [`ConnectionInfo`], the TLS facts every request carries, and the one
//!   peer-chain rule ([`ConnectionInfo::peer_chain`]: whole or refused);
//! * `accept`: the accept loop ([`serve`]) with its handshake and header timeouts and head limit;
//! * `linger`: lingering close, so an answer sent while the client still sends is not reset;
//! * `spelling`: header names in their registered spelling on HTTP/1.1 (`WWW-Authenticate`);
//! * `body`: the one request-body reader ([`read_body`]) with a size and a time limit;
//! * `work`: [`WorkBound`], the bound on expensive checks (password hashes, ...): 503 when busy;
//! * `failures`: [`FailureLimiter`], failed authentications per address and user name: 429;
//! * `observe`: request ids, Prometheus metrics, `/metrics`, `/healthz`, `/readyz` ([`observed`]);
//! * `problem`: [`Problem`] (RFC 9457 §3 members, the `reason` extension member and the
//!   headers some statuses need), its one [`IntoResponse`](axum::response::IntoResponse), the
//!   one `type` URI scheme ([`PROBLEM_TYPE_PREFIX`]) and [`MEDIA_PROBLEM`];
//! * `reason`: [`Reason`], every `reason` the agent-issuance surface (`docs/agent-api.md`) can
//!   send, its one status, and the one `AgentError -> Reason` table used by the Identity
//!   Proxy, the owner gateway and the Identity Server alike.
//!
//! Each role maps its own error enum here in one place, beside the enum
//! (`impl From<&RoleError> for Problem`, after rustls' `impl TryFrom<&Error> for
//! AlertDescription`); no handler picks a status. Layout: `tls` and `connection` at the bottom,
//! `accept` above `connection`; `reason` below `body` and `problem`; no module imports its
//! importer.

mod accept;
mod body;
mod connection;
mod failures;
mod linger;
mod observe;
mod problem;
mod reason;
mod spelling;
mod tls;
mod work;

pub use accept::{serve, serve_with, ServeOptions, DEFAULT_MAX_HEAD};
pub use body::{read_body, BodyError, BodyLimits, DEFAULT_BODY_TIMEOUT, MAX_DRAIN};
pub use connection::{ConnectionInfo, PeerChainError};
pub use failures::{FailureLimiter, FailureLimits, TooManyFailures};
pub use observe::{observed, ReadyCheck, REQUEST_ID};
pub use problem::{Area, Problem, MEDIA_PROBLEM, PROBLEM_TYPE_PREFIX};
pub use reason::Reason;
pub use tls::{server_tls_config, server_tls_config_with_signer};
pub use work::{Busy, WorkBound, DEFAULT_WORK_WAIT};
