//! The reference MASA (Manufacturer Authorized Signing Authority, RFC 8995): a manufacturer CA
//! that mints IDevIDs, ownership records, validation of registrar voucher-requests, voucher
//! signing in CMS, JWS and COSE, the per-device audit log, and the HTTPS server. The
//! registrar's side of the exchange (its MASA client) is the registrar's (`registrar::masa`).
//!
//! Floor 3, a role beside the registrar, pledge, owner and agent, importing only `shared`,
//! `est` and `store`. What it does not do: act for a domain (the registrar's MASA client is in
//! `registrar::masa`), or trust a registrar beyond what its voucher-request proves.
//!
//! Layout, one concept per module (each imports only modules below it, never its importer):
//!
//! * `error`: [`MasaError`] and its single mapping to HTTP (problem JSON or plain text);
//! * `config`: `masa.toml` ([`MasaConfig`]);
//! * `state`: the state directory and the shared [`Masa`] (`init`, `load`);
//! * `idevid`: minting IDevIDs and the record of minted serials;
//! * `ownership`: who owns which serial ([`OwnerRecord`], `claim`);
//! * `request`: the ordered checks of a registrar voucher-request (RFC 8995 §5.5);
//! * `voucher`: building, signing and recording the voucher;
//! * `audit`: the store's audit events and the RFC 8995 §5.8 audit log;
//! * `media`: Content-Type / Accept negotiation;
//! * `server`: the axum router and the TLS server.

mod audit;
mod config;
mod error;
mod idevid;
mod media;
mod ownership;
mod request;
mod server;
mod state;
mod tpm_device;
mod voucher;

// The one public face: what `brski masa`, the lab and the cross-role suites use.
pub use config::{MasaConfig, DEFAULT_LISTEN};
pub use error::MasaError;
pub use idevid::{write_device, DeviceRecord, MintedDevice, ANCHOR_FILE, IDEVID_CERT_FILE, IDEVID_KEY_FILE};
pub use ownership::{Owner, OwnerRecord};
pub use server::{bind, router, serve};
pub use state::{
    InitOptions, Masa, CA_CERT_FILE, CA_KEY_FILE, CONFIG_FILE, SIGNER_CERT_FILE, SIGNER_KEY_FILE, STORE_FILE,
    TLS_CERT_FILE, TLS_KEY_FILE,
};
pub use tpm_device::{tpm_device_files, write_tpm_device, TpmDevice};
