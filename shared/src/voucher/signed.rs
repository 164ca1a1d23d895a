//! Signed vouchers and voucher-requests in all three formats: signing, the typed
//! `Signed<Voucher>` -> `Verified<Voucher>` path, and the pledge's final check that the
//! registrar it talks to is the one the voucher pins.

use super::{from_cbor, from_json, to_cbor, to_json, Kind, Pin, Strictness, Voucher, VoucherError};
use crate::keys::Signer;
use crate::pki::{spki_der, verify_chain, ChainError};
use crate::signed::cms::{self, ID_CT_ANIMA_JSON_VOUCHER};
use crate::signed::{cose, jws, Envelope, Format, SignatureError, Signed, SignedPayload};
use crate::Verified;
use der::Decode;
use time::OffsetDateTime;
use x509_cert::Certificate;

/// The JWS `typ` of vouchers and voucher-requests (draft-ietf-anima-jws-voucher).
pub const JWS_TYP: &str = "voucher-jws+json";

/// The CBOR content type some COSE voucher producers put in the protected header.
pub const COSE_CONTENT_TYPE: &str = "application/voucher+cose";

/// A signed voucher or voucher-request, not yet verified.
pub type SignedVoucher = Signed<Voucher>;

impl SignedPayload for Voucher {
    type Error = VoucherError;

    /// Decodes leniently, as RFC 8995 §5.6.1 requires of receivers: unknown leaves are
    /// recorded in `unknown_leaves` (see [`refuse_unknown_leaves`] for strict callers).
    fn decode_payload(bytes: &[u8], format: Format) -> Result<Self, VoucherError> {
        match format {
            Format::Cms | Format::Jws => from_json(bytes, Strictness::Lenient),
            Format::Cose => from_cbor(bytes, Strictness::Lenient),
        }
    }

    fn check_envelope(envelope: &Envelope) -> Result<(), SignatureError> {
        let Envelope::Jws(j) = envelope else { return Ok(()) };
        for s in &j.signatures {
            match s.header.get("typ").map(|t| t.as_str()) {
                None | Some(Some(JWS_TYP)) => {}
                Some(other) => {
                    return Err(SignatureError::Header(format!("JWS typ {other:?} is not \"{JWS_TYP}\"")))
                }
            }
        }
        Ok(())
    }
}

/// Fails on the first leaf a lenient decode skipped (for conformance checks and producers).
pub fn refuse_unknown_leaves(v: &Voucher) -> Result<(), VoucherError> {
    match v.unknown_leaves.first() {
        Some(leaf) => Err(VoucherError::UnknownLeaf(leaf.clone())),
        None => Ok(()),
    }
}

/// Signs voucher data in `format` with `signer`; `chain` is the signer's certificate first,
/// then its chain (carried in CMS certificates, JWS x5c, or the COSE unprotected x5bag).
pub fn sign_voucher(
    v: &Voucher,
    format: Format,
    signer: &dyn Signer,
    chain: &[Certificate],
) -> Result<SignedVoucher, SignatureError> {
    let bytes = match format {
        Format::Cms => cms::sign(ID_CT_ANIMA_JSON_VOUCHER, &to_json(v), signer, chain)?,
        Format::Jws => jws::sign_general(&to_json(v), signer, chain, Some(JWS_TYP), &Default::default())?,
        Format::Cose => cose::sign(&to_cbor(v), signer, None, chain, None)?,
    };
    SignedVoucher::parse(&bytes)
}

/// Why the registrar does not match the voucher's pin.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PinError {
    /// The voucher is not a voucher or has no usable pin.
    #[error(transparent)]
    Voucher(#[from] VoucherError),
    /// The registrar's TLS chain does not lead to the pinned domain certificate.
    #[error("registrar certificate does not chain to the voucher's pinned-domain-cert: {0}")]
    Chain(ChainError),
    /// The pinned certificate cannot be parsed.
    #[error("pinned-domain-cert is not a certificate: {0}")]
    BadPin(String),
    /// The registrar's key differs from the pinned key.
    #[error("registrar public key does not match the voucher's {0}")]
    KeyMismatch(&'static str),
    /// No registrar certificate was given.
    #[error("no registrar certificate to check against the pin")]
    NoRegistrarCert,
}

/// Checks the registrar's TLS certificate chain (`registrar_chain[0]` = its EE certificate)
/// against the verified voucher's pin, at `at` (RFC 8995 §5.6.2: the provisional TLS
/// connection becomes trusted only after this).
pub fn check_registrar_pin(
    v: &Verified<Voucher>,
    registrar_chain: &[Certificate],
    at: OffsetDateTime,
) -> Result<(), PinError> {
    if v.kind != Kind::Voucher {
        return Err(VoucherError::WrongKind { expected: Kind::Voucher, found: v.kind }.into());
    }
    let leaf = registrar_chain.first().ok_or(PinError::NoRegistrarCert)?;
    match super::pin(v).ok_or(VoucherError::MissingPin)? {
        Pin::Cert(der) => {
            let pinned = Certificate::from_der(&der).map_err(|e| PinError::BadPin(e.to_string()))?;
            verify_chain(leaf, &registrar_chain[1..], &[pinned], at).map(|_| ()).map_err(PinError::Chain)
        }
        Pin::Pubk(spki) => {
            (spki_der(leaf) == spki).then_some(()).ok_or(PinError::KeyMismatch("pinned-domain-pubk"))
        }
        Pin::PubkSha256(h) => (crate::crypto::sha256(&spki_der(leaf)) == h)
            .then_some(())
            .ok_or(PinError::KeyMismatch("pinned-domain-pubk-sha256")),
    }
}
