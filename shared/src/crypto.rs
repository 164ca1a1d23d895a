//! Signature verification over DER public keys, for every algorithm a certificate, CMS
//! SignedData, JWS or COSE object in the BRSKI world may use.

use crate::keys::Algorithm;
use const_oid::db::{rfc5912, rfc8410};
use const_oid::ObjectIdentifier;
use der::{Decode, Encode};
use sha2::Digest;
use signature::hazmat::PrehashVerifier;
use signature::Verifier;
use spki::SubjectPublicKeyInfoRef;

/// Why a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The public key is malformed or of an unsupported type.
    #[error("unsupported or malformed public key: {0}")]
    PublicKey(String),
    /// The signature algorithm is not supported (or does not fit the key).
    #[error("unsupported signature algorithm {0}")]
    Algorithm(String),
    /// The signature bytes are malformed.
    #[error("malformed signature")]
    Malformed,
    /// The signature is well formed but does not verify with this key.
    #[error("signature does not verify with the signer's public key")]
    Invalid,
}

/// Hash functions used by signature algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl Hash {
    /// Hashes `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => sha2::Sha256::digest(data).to_vec(),
            Hash::Sha384 => sha2::Sha384::digest(data).to_vec(),
            Hash::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }

    /// Maps a digest algorithm OID (CMS digestAlgorithm).
    pub fn from_oid(oid: &ObjectIdentifier) -> Option<Self> {
        match *oid {
            rfc5912::ID_SHA_256 => Some(Hash::Sha256),
            rfc5912::ID_SHA_384 => Some(Hash::Sha384),
            rfc5912::ID_SHA_512 => Some(Hash::Sha512),
            _ => None,
        }
    }
}

/// SHA-256 of `data`, the hash used for fingerprints and pins.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(data).into()
}

/// A public key parsed from a SubjectPublicKeyInfo.
#[derive(Debug, Clone)]
pub enum PublicKey {
    /// ECDSA P-256.
    P256(p256::ecdsa::VerifyingKey),
    /// ECDSA P-384.
    P384(p384::ecdsa::VerifyingKey),
    /// Ed25519.
    Ed25519(ed25519_dalek::VerifyingKey),
    /// RSA (verification only: older CAs in the published vectors use it).
    Rsa(Box<rsa::PublicKey>),
}

/// How an ECDSA signature is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigForm {
    /// ASN.1 DER `Ecdsa-Sig-Value` (X.509, CMS).
    Der,
    /// Fixed-size `r || s` (JOSE, COSE).
    Raw,
}

impl PublicKey {
    /// Parses a DER SubjectPublicKeyInfo.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, CryptoError> {
        let spki =
            SubjectPublicKeyInfoRef::from_der(der).map_err(|e| CryptoError::PublicKey(e.to_string()))?;
        let bad = |e: &dyn std::fmt::Display| CryptoError::PublicKey(e.to_string());
        let key_bytes = spki.subject_public_key.raw_bytes();
        match spki.algorithm.oid {
            rfc5912::ID_EC_PUBLIC_KEY => {
                let curve: ObjectIdentifier = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.decode_as().ok())
                    .ok_or_else(|| CryptoError::PublicKey("EC key without named curve".into()))?;
                match curve {
                    rfc5912::SECP_256_R_1 => p256::ecdsa::VerifyingKey::from_sec1_bytes(key_bytes)
                        .map(PublicKey::P256)
                        .map_err(|e| bad(&e)),
                    rfc5912::SECP_384_R_1 => p384::ecdsa::VerifyingKey::from_sec1_bytes(key_bytes)
                        .map(PublicKey::P384)
                        .map_err(|e| bad(&e)),
                    other => Err(CryptoError::PublicKey(format!("EC curve {other}"))),
                }
            }
            rfc8410::ID_ED_25519 => {
                let b: [u8; 32] =
                    key_bytes.try_into().map_err(|_| CryptoError::PublicKey("Ed25519 length".into()))?;
                ed25519_dalek::VerifyingKey::from_bytes(&b).map(PublicKey::Ed25519).map_err(|e| bad(&e))
            }
            rfc5912::RSA_ENCRYPTION => {
                use rsa::pkcs1::DecodeRsaPublicKey;
                rsa::PublicKey::from_pkcs1_der(key_bytes)
                    .map(|k| PublicKey::Rsa(Box::new(k)))
                    .map_err(|e| bad(&e))
            }
            other => Err(CryptoError::PublicKey(format!("key algorithm {other}"))),
        }
    }

    /// The signature algorithm brski would use with this key, if any (RSA: none).
    pub fn algorithm(&self) -> Option<Algorithm> {
        match self {
            PublicKey::P256(_) => Some(Algorithm::Es256),
            PublicKey::P384(_) => Some(Algorithm::Es384),
            PublicKey::Ed25519(_) => Some(Algorithm::EdDsa),
            PublicKey::Rsa(_) => None,
        }
    }

    /// Verifies a signature made with the X.509 / CMS `signatureAlgorithm` `alg`.
    ///
    /// `digest_hint` is the CMS digestAlgorithm for signature OIDs that do not name a hash
    /// (plain id-ecPublicKey used as a signature algorithm by some CMS producers).
    pub fn verify_x509(&self, alg: &ObjectIdentifier, msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        match *alg {
            rfc5912::ECDSA_WITH_SHA_256 => self.verify_ecdsa(Hash::Sha256, SigForm::Der, msg, sig),
            rfc5912::ECDSA_WITH_SHA_384 => self.verify_ecdsa(Hash::Sha384, SigForm::Der, msg, sig),
            rfc5912::ECDSA_WITH_SHA_512 => self.verify_ecdsa(Hash::Sha512, SigForm::Der, msg, sig),
            rfc8410::ID_ED_25519 => self.verify_ed25519(msg, sig),
            rfc5912::SHA_256_WITH_RSA_ENCRYPTION => self.verify_rsa::<sha2::Sha256>(msg, sig),
            rfc5912::SHA_384_WITH_RSA_ENCRYPTION => self.verify_rsa::<sha2::Sha384>(msg, sig),
            rfc5912::SHA_512_WITH_RSA_ENCRYPTION => self.verify_rsa::<sha2::Sha512>(msg, sig),
            other => Err(CryptoError::Algorithm(other.to_string())),
        }
    }

    /// Verifies a JOSE / COSE signature (raw form) for `alg`.
    pub fn verify_raw(&self, alg: Algorithm, msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        match alg {
            Algorithm::Es256 => self.verify_ecdsa(Hash::Sha256, SigForm::Raw, msg, sig),
            Algorithm::Es384 => self.verify_ecdsa(Hash::Sha384, SigForm::Raw, msg, sig),
            Algorithm::EdDsa => self.verify_ed25519(msg, sig),
        }
    }

    /// Verifies an ECDSA signature over `msg` hashed with `hash`.
    ///
    /// The signature is parsed (and refused as [`CryptoError::Malformed`]) by the RustCrypto
    /// types in every build. With the default feature `aws-lc` the curve arithmetic then runs
    /// in aws-lc (the library rustls already uses for TLS), about four times faster than the
    /// portable RustCrypto code; the same inputs are accepted. Without the feature (the fuzz
    /// targets), and for a curve/hash pair aws-lc has no algorithm for, RustCrypto verifies.
    pub fn verify_ecdsa(&self, hash: Hash, form: SigForm, msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        self.check_ecdsa_form(form, sig)?;
        #[cfg(feature = "aws-lc")]
        if let Some(result) = self.verify_ecdsa_aws_lc(hash, form, msg, sig) {
            return result;
        }
        self.verify_ecdsa_rustcrypto(hash, form, msg, sig)
    }

    /// The RustCrypto verification of an ECDSA signature.
    fn verify_ecdsa_rustcrypto(
        &self,
        hash: Hash,
        form: SigForm,
        msg: &[u8],
        sig: &[u8],
    ) -> Result<(), CryptoError> {
        let digest = hash.digest(msg);
        let ok = match (self, form) {
            (PublicKey::P256(k), SigForm::Der) => {
                let s = p256::ecdsa::DerSignature::from_bytes(sig).map_err(|_| CryptoError::Malformed)?;
                k.verify_prehash(&digest, &s).is_ok()
            }
            (PublicKey::P256(k), SigForm::Raw) => {
                let s = p256::ecdsa::Signature::from_slice(sig).map_err(|_| CryptoError::Malformed)?;
                k.verify_prehash(&digest, &s).is_ok()
            }
            (PublicKey::P384(k), SigForm::Der) => {
                let s = p384::ecdsa::DerSignature::from_bytes(sig).map_err(|_| CryptoError::Malformed)?;
                k.verify_prehash(&digest, &s).is_ok()
            }
            (PublicKey::P384(k), SigForm::Raw) => {
                let s = p384::ecdsa::Signature::from_slice(sig).map_err(|_| CryptoError::Malformed)?;
                k.verify_prehash(&digest, &s).is_ok()
            }
            _ => return Err(CryptoError::Algorithm("ECDSA signature with a non-EC key".into())),
        };
        ok.then_some(()).ok_or(CryptoError::Invalid)
    }

    /// Parses an ECDSA signature for this key's curve: a non-EC key is
    /// [`CryptoError::Algorithm`], bytes that are no signature (bad DER, wrong length, r or s
    /// out of range) are [`CryptoError::Malformed`].
    fn check_ecdsa_form(&self, form: SigForm, sig: &[u8]) -> Result<(), CryptoError> {
        let parsed = match (self, form) {
            (PublicKey::P256(_), SigForm::Der) => p256::ecdsa::DerSignature::from_bytes(sig).is_ok(),
            (PublicKey::P256(_), SigForm::Raw) => p256::ecdsa::Signature::from_slice(sig).is_ok(),
            (PublicKey::P384(_), SigForm::Der) => p384::ecdsa::DerSignature::from_bytes(sig).is_ok(),
            (PublicKey::P384(_), SigForm::Raw) => p384::ecdsa::Signature::from_slice(sig).is_ok(),
            _ => return Err(CryptoError::Algorithm("ECDSA signature with a non-EC key".into())),
        };
        parsed.then_some(()).ok_or(CryptoError::Malformed)
    }

    /// The aws-lc verification of an already parsed ECDSA signature, or `None` when aws-lc has
    /// no algorithm for this curve, hash and form.
    #[cfg(feature = "aws-lc")]
    fn verify_ecdsa_aws_lc(
        &self,
        hash: Hash,
        form: SigForm,
        msg: &[u8],
        sig: &[u8],
    ) -> Option<Result<(), CryptoError>> {
        use aws_lc_rs::signature as s;
        let (alg, point): (&'static s::EcdsaVerificationAlgorithm, Vec<u8>) = match (self, hash, form) {
            (PublicKey::P256(k), h, f) => (
                match (h, f) {
                    (Hash::Sha256, SigForm::Der) => &s::ECDSA_P256_SHA256_ASN1,
                    (Hash::Sha256, SigForm::Raw) => &s::ECDSA_P256_SHA256_FIXED,
                    (Hash::Sha384, SigForm::Der) => &s::ECDSA_P256_SHA384_ASN1,
                    (Hash::Sha512, SigForm::Der) => &s::ECDSA_P256_SHA512_ASN1,
                    _ => return None,
                },
                k.to_sec1_point(false).as_bytes().to_vec(),
            ),
            (PublicKey::P384(k), h, f) => (
                match (h, f) {
                    (Hash::Sha384, SigForm::Raw) => &s::ECDSA_P384_SHA384_FIXED,
                    (Hash::Sha256, SigForm::Der) => &s::ECDSA_P384_SHA256_ASN1,
                    (Hash::Sha384, SigForm::Der) => &s::ECDSA_P384_SHA384_ASN1,
                    (Hash::Sha512, SigForm::Der) => &s::ECDSA_P384_SHA512_ASN1,
                    _ => return None,
                },
                k.to_sec1_point(false).as_bytes().to_vec(),
            ),
            _ => return None,
        };
        let ok = s::UnparsedPublicKey::new(alg, &point).verify(msg, sig);
        Some(ok.map_err(|_| CryptoError::Invalid))
    }

    fn verify_ed25519(&self, msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        let PublicKey::Ed25519(k) = self else {
            return Err(CryptoError::Algorithm("Ed25519 signature with a non-Ed25519 key".into()));
        };
        let s = ed25519_dalek::Signature::from_slice(sig).map_err(|_| CryptoError::Malformed)?;
        k.verify(msg, &s).map_err(|_| CryptoError::Invalid)
    }

    fn verify_rsa<D>(&self, msg: &[u8], sig: &[u8]) -> Result<(), CryptoError>
    where
        D: Digest + const_oid::AssociatedOid,
    {
        let PublicKey::Rsa(k) = self else {
            return Err(CryptoError::Algorithm("RSA signature with a non-RSA key".into()));
        };
        let hashed = D::digest(msg);
        k.verify(rsa::Pkcs1v15Sign::new::<D>(), &hashed, sig).map_err(|_| CryptoError::Invalid)
    }
}

/// Converts a raw ECDSA `r || s` signature to DER (X.509 / CMS form); Ed25519 is unchanged.
pub fn raw_to_der(alg: Algorithm, raw: &[u8]) -> Result<Vec<u8>, CryptoError> {
    match alg {
        Algorithm::Es256 => {
            let s = p256::ecdsa::Signature::from_slice(raw).map_err(|_| CryptoError::Malformed)?;
            Ok(s.to_der().to_bytes().to_vec())
        }
        Algorithm::Es384 => {
            let s = p384::ecdsa::Signature::from_slice(raw).map_err(|_| CryptoError::Malformed)?;
            Ok(s.to_der().to_bytes().to_vec())
        }
        Algorithm::EdDsa => Ok(raw.to_vec()),
    }
}

/// Re-encodes any DER value; used to compare structures independent of how they arrived.
pub fn der_of<T: Encode>(v: &T) -> Result<Vec<u8>, CryptoError> {
    v.to_der().map_err(|e| CryptoError::PublicKey(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Signer, SoftwareKey};

    /// Both ECDSA back ends accept and refuse the same signatures, in both encodings and with
    /// every hash, on both curves.
    #[test]
    fn ecdsa_back_ends_agree() {
        for alg in [Algorithm::Es256, Algorithm::Es384] {
            let key = SoftwareKey::generate(alg).unwrap();
            let public = PublicKey::from_spki_der(&key.public_key_der()).unwrap();
            let other = SoftwareKey::generate(alg).unwrap();
            let other = PublicKey::from_spki_der(&other.public_key_der()).unwrap();
            let msg = b"voucher bytes";
            let raw = key.sign(msg).unwrap();
            let der = raw_to_der(&raw);
            let hash = if alg == Algorithm::Es256 { Hash::Sha256 } else { Hash::Sha384 };
            let mut tampered = msg.to_vec();
            tampered[0] ^= 1;
            for (form, sig) in [(SigForm::Raw, &raw), (SigForm::Der, &der)] {
                let cases: [(&PublicKey, &[u8], Hash, bool); 4] = [
                    (&public, msg, hash, true),
                    (&public, &tampered, hash, false),
                    (&other, msg, hash, false),
                    (&public, msg, Hash::Sha512, false),
                ];
                for (k, m, h, valid) in cases {
                    let fast = k.verify_ecdsa(h, form, m, sig);
                    let portable = k.verify_ecdsa_rustcrypto(h, form, m, sig);
                    assert_eq!(fast, portable, "{alg} {form:?} {h:?}");
                    assert_eq!(fast.is_ok(), valid, "{alg} {form:?} {h:?}: {fast:?}");
                }
            }
            // Not a signature at all: malformed for both.
            assert_eq!(public.verify_ecdsa(hash, SigForm::Der, msg, &raw), Err(CryptoError::Malformed));
            assert_eq!(public.verify_ecdsa(hash, SigForm::Raw, msg, &raw[1..]), Err(CryptoError::Malformed));
        }
    }

    /// `r || s` as a DER Ecdsa-Sig-Value.
    fn raw_to_der(raw: &[u8]) -> Vec<u8> {
        let int = |b: &[u8]| {
            let b = &b[b.iter().position(|&x| x != 0).unwrap_or(b.len() - 1)..];
            let mut v = vec![0x02];
            let pad = b[0] & 0x80 != 0;
            v.push((b.len() + usize::from(pad)) as u8);
            if pad {
                v.push(0);
            }
            v.extend_from_slice(b);
            v
        };
        let (r, s) = raw.split_at(raw.len() / 2);
        let body = [int(r), int(s)].concat();
        let mut out = vec![0x30];
        if body.len() >= 0x80 {
            out.push(0x81);
        }
        out.push(body.len() as u8);
        out.extend(body);
        out
    }
}
