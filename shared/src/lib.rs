//! Sans-IO core of brski: keys and signers, X.509 and CSRs, CMS / JWS / COSE signed
//! artifacts, the voucher model, and the persistence seam.
//!
//! Nothing here opens a socket. Roles (MASA, registrar, pledge, owner) and the EST crate call
//! these functions with bytes and typed values and move the results over the network.

pub mod agent;
pub mod b64;
pub mod brski;
pub mod crypto;
pub mod keys;
pub mod metrics;
pub mod pki;
#[cfg(feature = "tpm")]
pub mod tpm;
pub mod verified;

pub use verified::Verified;
pub mod signed;
pub mod store;
pub mod voucher;
