//! TPM quotes in the evidence: with an attestation key (a restricted signing key in the
//! device's TPM, certified by the manufacturer with EKU tcg-kp-AIKCertificate), every forwarded
//! request's evidence carries a quote over the configured SHA-256 PCRs whose qualifying data is
//! `SHA-256(server nonce || acr_hash)` (`shared::agent::tpm_quote::quote_nonce`), so the quote
//! is bound to that one request. The Identity Server appraises it against its PCR policy.

use crate::config::PledgeConfig;
use shared::agent::tpm_quote::{quote_nonce, TpmQuote, TPM_QUOTE_MEDIA_TYPE};
use shared::agent::AgentError;
use shared::keys::{KeyUri, TpmUri};
use shared::pki;

/// The proxy's attestation key, its certificate chain and the PCRs it quotes.
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "tpm"), allow(dead_code))]
pub struct Attestation {
    key: TpmUri,
    chain: Vec<Vec<u8>>,
    pcrs: Vec<u8>,
}

impl Attestation {
    /// From the pledge configuration: `None` when no attestation key is configured.
    pub fn from_config(cfg: &PledgeConfig) -> Result<Option<Self>, String> {
        match &cfg.attestation_key {
            None => Ok(None),
            Some(uri) => Self::load(uri, &cfg.attestation_cert, &cfg.quote_pcrs).map(Some),
        }
    }

    /// Opens the attestation key `uri` (a `tpm:` URI) with its certificate file: the key must be
    /// a restricted signing key and the certificate must be for it.
    pub fn load(uri: &str, cert: &std::path::Path, pcrs: &[u8]) -> Result<Self, String> {
        let key = match uri.parse::<KeyUri>().map_err(|e| e.to_string())? {
            KeyUri::Tpm(t) => t,
            _ => return Err(format!("attestation key {uri}: only a tpm: key can quote")),
        };
        let certs = std::fs::read(cert)
            .map_err(|e| e.to_string())
            .and_then(|b| pki::certs_from_pem(&b).map_err(|e| e.to_string()))
            .map_err(|e| format!("attestation certificate {}: {e}", cert.display()))?;
        let leaf = certs.first().ok_or_else(|| format!("{}: no certificate", cert.display()))?;
        check_key(&key, &pki::spki_der(leaf))?;
        let chain =
            certs.iter().map(pki::cert_to_der).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
        if pcrs.is_empty() || pcrs.iter().any(|&p| p > 23) {
            return Err("quote PCRs: list 1 to 24 indices, each 0..=23".into());
        }
        Ok(Attestation { key, chain, pcrs: pcrs.to_vec() })
    }

    /// A quote bound to one request, as the CMW item `(media type, CBOR)`.
    pub fn quote(&self, server_nonce: &[u8], acr_hash: &[u8]) -> Result<(&'static str, Vec<u8>), AgentError> {
        let quote = self.take(&quote_nonce(server_nonce, acr_hash)).map_err(AgentError::Evidence)?;
        Ok((TPM_QUOTE_MEDIA_TYPE, quote.to_cbor()))
    }

    #[cfg(feature = "tpm")]
    fn take(&self, nonce: &[u8]) -> Result<TpmQuote, String> {
        let q = shared::tpm::quote(&self.key.tcti(), self.key.handle, nonce, &self.pcrs)
            .map_err(|e| e.to_string())?;
        Ok(TpmQuote {
            attest: q.attest,
            signature: q.signature,
            hash_alg: shared::agent::tpm_quote::TPM_ALG_SHA256,
            pcrs: q.pcrs,
            ak_chain: self.chain.clone(),
        })
    }

    #[cfg(not(feature = "tpm"))]
    fn take(&self, _nonce: &[u8]) -> Result<TpmQuote, String> {
        Err(format!("{}: this build has no TPM support (build with the 'tpm' feature)", self.key))
    }
}

#[cfg(feature = "tpm")]
fn check_key(key: &TpmUri, cert_spki: &[u8]) -> Result<(), String> {
    let info = shared::tpm::read_key(&key.tcti(), key.handle).map_err(|e| e.to_string())?;
    if info.kind != shared::tpm::KeyKind::Attestation {
        return Err(format!("{key}: not a restricted signing key; a quote needs an attestation key"));
    }
    if info.spki != cert_spki {
        return Err(format!("{key}: the attestation certificate is for another key"));
    }
    Ok(())
}

#[cfg(not(feature = "tpm"))]
fn check_key(key: &TpmUri, _cert_spki: &[u8]) -> Result<(), String> {
    Err(format!("{key}: this build has no TPM support (build with the 'tpm' feature)"))
}
