//! The pledge's factory identity: IDevID certificate and key, its serial number and
//! idevid-issuer, and the manufacturer's voucher trust anchors.

use crate::config::PledgeConfig;
use shared::keys::{load_signer, Signer};
use shared::pki;
use std::sync::Arc;
use x509_cert::Certificate;

/// A loaded IDevID.
#[derive(Clone)]
pub struct Idevid {
    /// The IDevID first, then any intermediates.
    pub chain: Vec<Certificate>,
    /// Its key.
    pub signer: Arc<dyn Signer>,
    /// X520SerialNumber of its subject.
    pub serial: String,
    /// The manufacturer's voucher trust anchors.
    pub manufacturer_anchors: Vec<Certificate>,
}

impl std::fmt::Debug for Idevid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idevid").field("serial", &self.serial).finish_non_exhaustive()
    }
}

/// Why the IDevID could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("IDevID: {0}")]
pub struct IdentityError(pub String);

impl Idevid {
    /// Loads the files `cfg` names.
    pub fn load(cfg: &PledgeConfig) -> Result<Self, IdentityError> {
        let read = |p: &std::path::Path| {
            std::fs::read(p)
                .map_err(|e| format!("{}: {e}", p.display()))
                .and_then(|b| pki::certs_from_pem(&b).map_err(|e| format!("{}: {e}", p.display())))
                .map_err(IdentityError)
        };
        let chain = read(&cfg.idevid_cert)?;
        let anchors = read(&cfg.manufacturer_anchors)?;
        let signer: Arc<dyn Signer> =
            Arc::from(load_signer(&cfg.idevid_key).map_err(|e| IdentityError(e.to_string()))?);
        Self::new(chain, signer, anchors)
    }

    /// An IDevID from parts (e.g. one minted in-process by a MASA).
    pub fn new(
        chain: Vec<Certificate>,
        signer: Arc<dyn Signer>,
        manufacturer_anchors: Vec<Certificate>,
    ) -> Result<Self, IdentityError> {
        let leaf = chain.first().ok_or_else(|| IdentityError("no certificate".into()))?;
        if pki::spki_der(leaf) != signer.public_key_der() {
            return Err(IdentityError("the key does not belong to the IDevID certificate".into()));
        }
        let serial = pki::serial_number(leaf)
            .ok_or_else(|| IdentityError("the IDevID subject has no serialNumber".into()))?;
        if manufacturer_anchors.is_empty() {
            return Err(IdentityError("no manufacturer trust anchor".into()));
        }
        Ok(Idevid { chain, signer, serial, manufacturer_anchors })
    }

    /// The IDevID certificate.
    pub fn certificate(&self) -> &Certificate {
        &self.chain[0]
    }
}
