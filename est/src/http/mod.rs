//! The house's HTTP plumbing shared by every brski server (EST, MASA, registrar, Identity Proxy,
//! owner gateway). Today: the one RFC 9457 problem type and its one HTTP answer.
//!
//! * `problem`: [`Problem`] (RFC 9457 §3 members, the `reason` extension member and the
//!   headers some statuses need), its one [`IntoResponse`](axum::response::IntoResponse), the
//!   one `type` URI scheme ([`PROBLEM_TYPE_PREFIX`]) and [`MEDIA_PROBLEM`];
//! * `reason`: [`Reason`], every `reason` the agent-issuance surface (`docs/agent-api.md`) can
//!   send, its one status, and the one `AgentError -> Reason` table used by the Identity
//!   Proxy, the owner gateway and the Identity Server alike.
//!
//! Each role maps its own error enum here in one place, beside the enum
//! (`impl From<&RoleError> for Problem`, after rustls' `impl TryFrom<&Error> for
//! AlertDescription`); no handler picks a status.

mod problem;
mod reason;

pub use problem::{Area, Problem, MEDIA_PROBLEM, PROBLEM_TYPE_PREFIX};
pub use reason::Reason;
