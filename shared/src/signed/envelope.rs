//! One entry point for any signed artifact: detect the format (CMS, JWS, COSE; binary,
//! base64- or hex-wrapped), parse it, and verify it into a typed [`Verified`] payload.

use super::cms::{CmsSigned, ID_CT_ANIMA_JSON_VOUCHER};
use super::cose::CoseSigned;
use super::jws::Jws;
use super::{SignatureError, Trust, MAX_ARTIFACT_LEN};
use crate::Verified;
use std::marker::PhantomData;
use x509_cert::Certificate;

/// The three signature formats of vouchers and voucher-requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// CMS SignedData over JSON (`application/voucher-cms+json`).
    Cms,
    /// JWS General JSON serialization over JSON (`application/voucher-jws+json`).
    Jws,
    /// COSE_Sign1 over CBOR (`application/voucher+cose`).
    Cose,
}

impl Format {
    /// The HTTP media type.
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Cms => "application/voucher-cms+json",
            Format::Jws => "application/voucher-jws+json",
            Format::Cose => "application/voucher+cose",
        }
    }

    /// The conventional file extension (`vcj`, `vjj`, `vch`).
    pub fn file_extension(self) -> &'static str {
        match self {
            Format::Cms => "vcj",
            Format::Jws => "vjj",
            Format::Cose => "vch",
        }
    }

    /// Parses a user-facing name (`cms`, `jws`, `cose`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "cms" | "vcj" => Some(Format::Cms),
            "jws" | "vjj" => Some(Format::Jws),
            "cose" | "vch" | "cbor" => Some(Format::Cose),
            _ => None,
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Format::Cms => "CMS",
            Format::Jws => "JWS",
            Format::Cose => "COSE",
        })
    }
}

/// A parsed signed artifact of any format.
#[derive(Debug, Clone)]
pub enum Envelope {
    /// CMS SignedData (boxed, like COSE: both are large).
    Cms(Box<CmsSigned>),
    /// JWS.
    Jws(Jws),
    /// COSE_Sign1.
    Cose(Box<CoseSigned>),
}

/// Undoes a text wrapping (base64 or hex) when the input is printable text that is not JSON;
/// returns the binary (or JSON) form.
pub fn unwrap_text(bytes: &[u8]) -> Result<Vec<u8>, SignatureError> {
    // Text forms are at most twice the binary size (hex); refuse before decoding anything.
    if bytes.len() > MAX_ARTIFACT_LEN * 2 {
        return Err(SignatureError::TooLarge { len: bytes.len(), max: MAX_ARTIFACT_LEN });
    }
    let trimmed = bytes.trim_ascii();
    let is_text = trimmed.iter().all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace());
    if !is_text || trimmed.first() == Some(&b'{') || trimmed.is_empty() {
        return Ok(bytes.to_vec());
    }
    let text =
        std::str::from_utf8(trimmed).map_err(|_| SignatureError::Malformed("not UTF-8 text".into()))?;
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.len().is_multiple_of(2) && compact.chars().all(|c| c.is_ascii_hexdigit()) {
        if let Ok(b) = hex::decode(&compact) {
            return Ok(b);
        }
    }
    crate::b64::decode_lenient(&compact).map_err(|_| {
        SignatureError::Malformed("input is neither a signed object nor its base64 or hex text".into())
    })
}

/// Detects the format of (unwrapped) artifact bytes from their first byte.
pub fn detect(bytes: &[u8]) -> Result<Format, SignatureError> {
    match bytes.trim_ascii_start().first() {
        Some(0x30) => Ok(Format::Cms),
        Some(b'{') => Ok(Format::Jws),
        Some(0xd2) | Some(0x84) => Ok(Format::Cose),
        Some(b) => {
            Err(SignatureError::Malformed(format!("unrecognised signed object (first byte 0x{b:02x})")))
        }
        None => Err(SignatureError::Truncated),
    }
}

impl Envelope {
    /// Parses binary, base64- or hex-wrapped input of any format.
    pub fn parse(input: &[u8]) -> Result<Self, SignatureError> {
        Self::parse_binary(&unwrap_text(input)?)
    }

    /// Parses input already in its binary (or JSON) form.
    pub fn parse_binary(bytes: &[u8]) -> Result<Self, SignatureError> {
        Ok(match detect(bytes)? {
            Format::Cms => Envelope::Cms(Box::new(CmsSigned::parse(bytes)?)),
            Format::Jws => Envelope::Jws(Jws::parse_json(bytes)?),
            Format::Cose => Envelope::Cose(Box::new(CoseSigned::parse(bytes)?)),
        })
    }

    /// Its format.
    pub fn format(&self) -> Format {
        match self {
            Envelope::Cms(_) => Format::Cms,
            Envelope::Jws(_) => Format::Jws,
            Envelope::Cose(_) => Format::Cose,
        }
    }

    /// The payload, unverified: for display only.
    pub fn unverified_payload(&self) -> &[u8] {
        match self {
            Envelope::Cms(c) => c.unverified_content(),
            Envelope::Jws(j) => j.unverified_payload(),
            Envelope::Cose(c) => c.unverified_payload(),
        }
    }

    /// Certificates the artifact carries (CMS certificates, JWS x5c, COSE x5bag/x5chain).
    pub fn certificates(&self) -> Vec<Certificate> {
        match self {
            Envelope::Cms(c) => c.certificates(),
            Envelope::Jws(j) => j.signatures.iter().flat_map(|s| s.x5c.clone()).collect(),
            Envelope::Cose(c) => c.certificates().unwrap_or_default(),
        }
    }

    /// Verifies the signature and the signer's path. CMS content must be
    /// id-ct-animaJSONVoucher or (as in the RFC 8995 examples) id-data.
    pub fn verify(&self, trust: &Trust) -> Result<Verified<Vec<u8>>, SignatureError> {
        match self {
            Envelope::Cms(c) => c.verify(trust, &[ID_CT_ANIMA_JSON_VOUCHER, const_oid::db::rfc5911::ID_DATA]),
            Envelope::Jws(j) => j.verify(trust),
            Envelope::Cose(c) => c.verify(trust),
        }
    }
}

/// A payload type that signed artifacts carry (vouchers, voucher-requests, ...).
pub trait SignedPayload: Sized {
    /// The payload's own decoding error.
    type Error: std::fmt::Display;
    /// Decodes the (verified or inspected) payload bytes of an artifact in `format`.
    fn decode_payload(bytes: &[u8], format: Format) -> Result<Self, Self::Error>;
    /// Checks format-specific header rules (e.g. JWS `typ`); default: none.
    fn check_envelope(_envelope: &Envelope) -> Result<(), SignatureError> {
        Ok(())
    }
}

/// Why a typed signed artifact was refused.
#[derive(Debug, thiserror::Error)]
pub enum SignedError<E: std::fmt::Display + std::fmt::Debug> {
    /// The signature, the signer or the envelope.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// The signed payload does not decode.
    #[error("{0}")]
    Payload(E),
}

/// A signed `T`, not yet verified: the only way to the `T` is [`Signed::verify`] (or the
/// explicitly unverified [`Signed::inspect_unverified`], for display).
#[derive(Debug, Clone)]
pub struct Signed<T> {
    envelope: Envelope,
    bytes: Vec<u8>,
    _payload: PhantomData<T>,
}

impl<T: SignedPayload> Signed<T> {
    /// Parses binary, base64- or hex-wrapped input of any format.
    pub fn parse(input: &[u8]) -> Result<Self, SignatureError> {
        let bytes = unwrap_text(input)?;
        let envelope = Envelope::parse_binary(&bytes)?;
        T::check_envelope(&envelope)?;
        Ok(Signed { envelope, bytes, _payload: PhantomData })
    }

    /// The artifact's format.
    pub fn format(&self) -> Format {
        self.envelope.format()
    }

    /// The artifact bytes in binary form (what goes on the wire).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The parsed envelope.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// Verifies the signature and signer path, then decodes the payload.
    pub fn verify(&self, trust: &Trust) -> Result<Verified<T>, SignedError<T::Error>>
    where
        T::Error: std::fmt::Debug,
    {
        let payload = self.envelope.verify(trust)?;
        let format = self.format();
        payload.try_map(|b| T::decode_payload(&b, format)).map_err(SignedError::Payload)
    }

    /// Decodes the payload WITHOUT verifying anything, for display (`brski voucher inspect`).
    pub fn inspect_unverified(&self) -> Result<T, T::Error> {
        T::decode_payload(self.envelope.unverified_payload(), self.format())
    }
}
