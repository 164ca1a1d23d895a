//! The BRSKI registrar (RFC 8995), which is also the domain's EST CA.
//!
//! A pledge connects with its IDevID as TLS client certificate (accepted provisionally,
//! validated against the configured manufacturers), posts a signed voucher-request, and the
//! registrar checks it (signed by the TLS client's key, proximity-registrar-cert equal to its own
//! certificate, a fresh nonce), applies its approval policy (auto, allow-list, or manual approval
//! answered 202 until `brski registrar approve`), wraps it in its own signed voucher-request and
//! forwards it to the MASA named in the IDevID, and returns the voucher. It records the pledge's
//! `voucher_status`, checks the MASA audit log, and then serves EST so the pledge gets its LDevID
//! from the domain CA; `enrollstatus` closes the flow. Every request is stored with its outcome.
//!
//! Floor 3, a role beside the MASA, pledge, owner and agent: it imports only `shared`, `est` and
//! `store`, never another role. Its side of the MASA exchange is its own ([`MasaLink`], [`MasaClient`]); the
//! in-process lab that runs it beside a MASA is the `brski` package's. A pledge record's state
//! changes only through [`PledgeRecord`]'s transitions, which refuse illegal steps.
//!
//! Modules, one concept each:
//! * `config`: the TOML configuration and the policies it names;
//! * `init`: creating a registrar's state (domain CA, registrar certificate, config);
//! * `pledges`: the per-pledge record kept in the store, and the admin verbs on it;
//! * `pvr`: checking a pledge voucher-request; `rvr`: building the registrar voucher-request;
//! * `audit`: fetching and judging the MASA audit log;
//! * `authority`: the EST authority that only enrolls pledges holding a voucher;
//! * `masa`: the link to the MASAs ([`MasaLink`]: kept clients, TLS identity);
//! * `state`: what every handler shares ([`Registrar`]);
//! * `error`: every refusal and its one mapping to a problem; `server`: the routes and the accept loop;
//! * `announce`: the DNS-SD/mDNS announcement `brski registrar serve` makes (`_brski-registrar._tcp`).

mod agent;
mod announce;
mod audit;
mod authority;
mod config;
mod error;
mod handlers;
mod init;
mod masa;
mod pledges;
mod pvr;
mod rvr;
mod server;
mod state;

// The one public face: what `brski registrar`, the lab and the cross-role suites use.
pub use agent::grants::{all as all_grants, revoke, Grant, RevokeTarget};
pub use agent::{AgentPolicy, AgentService, PolicyError};
pub use announce::{
    plan as announcement_plan, system_hostname, AnnounceError, Announcement, Plan, SERVICE_TYPE,
};
pub use config::{Approval, AuditLogPolicy, Manufacturer, MdnsConfig, RegistrarConfig, CONFIG_FILE};
pub use error::RegistrarError;
pub use init::{init, open, open_store, InitError, InitOptions};
pub use masa::{MasaClient, MasaClientError, MasaLink, MasaReply};
pub use pledges::{decide as decide_pledge, list as list_pledges, IllegalStep, PledgeRecord, PledgeState};
pub use state::Registrar;
