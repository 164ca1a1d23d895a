//! [`TpmSigner`]: a persistent, unrestricted ECDSA P-256 key in a TPM behind the [`Signer`] seam,
//! so a pledge's IDevID or LDevID key signs TLS handshakes, voucher-requests and evidence
//! without ever leaving the TPM.

use super::provision::{read_key, KeyKind};
use super::{key_error, with_tpm};
use crate::keys::{Algorithm, KeyError, Signer, TpmUri};
use std::convert::TryFrom;
use tss_esapi::constants::tss::{TPM2_RH_NULL, TPM2_ST_HASHCHECK};
use tss_esapi::handles::{PersistentTpmHandle, TpmHandle};
use tss_esapi::structures::{Digest, HashcheckTicket, Signature, SignatureScheme};
use tss_esapi::tss2_esys::TPMT_TK_HASHCHECK;

/// A signing key at a persistent handle of a TPM.
#[derive(Debug, Clone)]
pub struct TpmSigner {
    handle: u32,
    tcti: String,
    spki: Vec<u8>,
}

impl TpmSigner {
    /// Opens the key `uri` names: it must be an unrestricted ECDSA P-256 signing key (a
    /// restricted key, such as an attestation key, signs only what the TPM itself produced).
    pub fn open(uri: &TpmUri) -> Result<Self, KeyError> {
        let tcti = uri.tcti();
        let info = read_key(&tcti, uri.handle)?;
        if info.kind != KeyKind::Signing {
            return Err(key_error(
                uri.handle,
                &tcti,
                "a restricted (attestation) key cannot sign arbitrary data",
            ));
        }
        Ok(TpmSigner { handle: uri.handle, tcti, spki: info.spki })
    }

    /// The key's URI.
    pub fn uri(&self) -> TpmUri {
        TpmUri::new(self.handle, &self.tcti)
    }
}

impl Signer for TpmSigner {
    fn algorithm(&self) -> Algorithm {
        Algorithm::Es256
    }

    fn public_key_der(&self) -> Vec<u8> {
        self.spki.clone()
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let digest = crate::crypto::sha256(message);
        let signature = with_tpm(&self.tcti, "TPM2_Sign", |ctx| {
            let handle =
                ctx.tr_from_tpm_public(TpmHandle::Persistent(PersistentTpmHandle::new(self.handle)?))?;
            let ticket = HashcheckTicket::try_from(TPMT_TK_HASHCHECK {
                tag: TPM2_ST_HASHCHECK,
                hierarchy: TPM2_RH_NULL,
                digest: Default::default(),
            })?;
            let digest = Digest::try_from(digest.to_vec())?;
            ctx.execute_with_nullauth_session(|c| {
                c.sign(handle.into(), digest, SignatureScheme::Null, ticket)
            })
        })
        .map_err(|e| key_error(self.handle, &self.tcti, e))?;
        ecdsa_raw(&signature).map_err(|e| key_error(self.handle, &self.tcti, e))
    }
}

/// The raw `r || s` (32 bytes each) of a TPM ECDSA P-256 signature.
pub(crate) fn ecdsa_raw(signature: &Signature) -> Result<Vec<u8>, String> {
    let Signature::EcDsa(es) = signature else {
        return Err("the TPM did not return an ECDSA signature".into());
    };
    let (r, s) = (es.signature_r().value(), es.signature_s().value());
    if r.len() > 32 || s.len() > 32 {
        return Err("the TPM's signature is not a P-256 signature".into());
    }
    let mut raw = vec![0u8; 64];
    raw[32 - r.len()..32].copy_from_slice(r);
    raw[64 - s.len()..].copy_from_slice(s);
    Ok(raw)
}
