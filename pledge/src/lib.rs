//! The BRSKI pledge (RFC 8995 §2.1, §5): a device holding only its IDevID and its
//! manufacturer's trust anchor joins a domain with no human involved.
//!
//! [`bootstrap`] runs the whole flow: a provisional TLS connection to the registrar with the
//! IDevID as client certificate; a signed voucher-request with a fresh nonce and the
//! registrar's certificate; verification of the voucher (MASA signature with the manufacturer
//! anchor, nonce, serial, expiry) and then of the registrar's TLS chain against the voucher's
//! pinned domain certificate; `voucher_status`; EST `cacerts`, `csrattrs` and `simpleenroll`
//! with the tls-exporter bound into the CSR; `enrollstatus` over a new connection with the
//! LDevID. Failed attempts are retried with backoff and a fresh nonce each time. A pledge that
//! holds a configured EST server anchor skips BRSKI (EST-only) and says so.
//!
//! Without a configured registrar URL, `discover` finds registrars by mDNS
//! (`_brski-registrar._tcp`) and each is tried in turn.
//!
//! Floor 3, a role beside the MASA, registrar, owner and agent, importing only `shared` and
//! `est`. What it does not do: trust anything its IDevID's manufacturer anchor and the voucher do
//! not vouch for; or, as the proxy, decide issuance (it attests and forwards; the Identity
//! Server decides). The agent's own client is the `agent` crate.
//!
//! Modules: `config` (what the pledge holds and how it behaves), `identity` (the IDevID),
//! `request` (the pledge voucher-request), `imprint` (voucher checks), `enroll` (EST and the
//! status reports), `files` (what is written to the state directory, and `status`), `ldevid_key` (a key
//! file, or a key in the IDevID's TPM),
//! `bootstrap` (attempts, retries, BRSKI vs EST-only), `discover` (mDNS browsing).
//!
//! After bootstrapping, [`proxy`] is the Identity Proxy (`brski pledge serve`): the Agent API
//! on a Unix socket, evidence about each caller, forwarding over mTLS with the LDevID, and
//! LDevID renewal. The agent's side of that API (`brski agent request`) is the `agent` crate's.

mod bootstrap;
mod config;
mod config_file;
mod discover;
mod enroll;
mod files;
mod identity;
mod imprint;
mod ldevid_key;
mod proxy;
mod request;

// The one public face: what `brski pledge`, the lab, the benches and the cross-role suites use.
pub use bootstrap::{bootstrap, BootstrapError, Outcome};
pub use config::PledgeConfig;
pub use config_file::{commented, PledgeFile, PLEDGE_FILE};
pub use files::{status_text, DOMAIN_CA, LDEVID_CERT, LDEVID_KEY, LDEVID_KEY_URI};
pub use identity::Idevid;
pub use imprint::ImprintError;
pub use proxy::attest::Attestation;
pub use proxy::evidence::Caller;
pub use proxy::renew::{due, reenroll, renew_at, renew_once, Due};
pub use proxy::{
    registrar_from_status, start as start_proxy, start_with as start_proxy_with, Identity, Proxy,
    ProxyConfig, ProxyError, RunningProxy,
};
pub use request::{fresh_nonce, pledge_request};
