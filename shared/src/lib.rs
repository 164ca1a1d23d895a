//! Floor 1 of brski, the sans-IO core: keys and signers, X.509 and CSRs, CMS / JWS / COSE
//! signed artifacts ([`signed`], with [`Verified`] constructible only here), the voucher model
//! ([`voucher`]), BRSKI's status and audit-log bodies ([`brski`]), the agent-identity wire
//! formats and their checks ([`agent`]), RFC 3339 text ([`rfc3339`]), configuration text and
//! key-URI resolution ([`conf`]), metrics, and the persistence seam ([`store`]: the
//! `Store` trait, its guarantees and its records).
//!
//! What it does not do: open sockets, run a database, start processes, or read the clock where a
//! check depends on it (checks take `now`). The one outside thing it talks to is a key's home
//! behind [`keys::Signer`]: a key file, a PKCS#11 module (`pkcs11` feature) or a TPM (`tpm`
//! feature). The store implementations are the `store` crate's; the servers and clients that
//! move these bytes are the `est` crate's and the roles'.

pub mod agent;
pub mod b64;
pub mod brski;
pub mod conf;
pub mod crypto;
pub mod idle;
pub mod keys;
pub mod metrics;
pub mod pki;
pub mod rfc3339;
#[cfg(feature = "tpm")]
pub mod tpm;
pub mod verified;

pub use verified::Verified;
pub mod signed;
pub mod store;
pub mod voucher;
