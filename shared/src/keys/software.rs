//! Software keys (P-256, P-384, Ed25519) held in memory, loaded from and saved as PKCS#8.

use super::{Algorithm, KeyError, Signer};
use p256::elliptic_curve::Generate;
use pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use signature::Signer as _;
use zeroize::Zeroizing;

/// A private key in process memory.
pub enum SoftwareKey {
    /// ECDSA P-256.
    P256(p256::ecdsa::SigningKey),
    /// ECDSA P-384.
    P384(p384::ecdsa::SigningKey),
    /// Ed25519.
    Ed25519(ed25519_dalek::SigningKey),
}

impl std::fmt::Debug for SoftwareKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SoftwareKey({})", self.algorithm())
    }
}

impl SoftwareKey {
    /// Generates a fresh key from the operating system's random source.
    pub fn generate(alg: Algorithm) -> Result<Self, KeyError> {
        let err = |e: getrandom::Error| KeyError::Sign(format!("random source: {e}"));
        Ok(match alg {
            Algorithm::Es256 => SoftwareKey::P256(p256::ecdsa::SigningKey::try_generate().map_err(err)?),
            Algorithm::Es384 => SoftwareKey::P384(p384::ecdsa::SigningKey::try_generate().map_err(err)?),
            Algorithm::EdDsa => {
                let mut seed = Zeroizing::new([0u8; 32]);
                getrandom::fill(seed.as_mut()).map_err(err)?;
                SoftwareKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&seed))
            }
        })
    }

    /// Reads a PKCS#8 DER private key (P-256, P-384 or Ed25519, detected from its OID).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        if let Ok(k) = p256::ecdsa::SigningKey::from_pkcs8_der(der) {
            return Ok(SoftwareKey::P256(k));
        }
        if let Ok(k) = p384::ecdsa::SigningKey::from_pkcs8_der(der) {
            return Ok(SoftwareKey::P384(k));
        }
        ed25519_dalek::SigningKey::from_pkcs8_der(der)
            .map(SoftwareKey::Ed25519)
            .map_err(|e| KeyError::Format(e.to_string()))
    }

    /// Reads a PEM private key: PKCS#8 (`PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`, as OpenSSL
    /// and the published BRSKI vectors write them).
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let (label, der) =
            der::pem::decode_vec(pem.trim().as_bytes()).map_err(|e| KeyError::Format(format!("PEM: {e}")))?;
        let der = Zeroizing::new(der);
        match label {
            "PRIVATE KEY" => Self::from_pkcs8_der(&der),
            "EC PRIVATE KEY" => Self::from_sec1_der(&der),
            other => Err(KeyError::Format(format!("unexpected PEM label '{other}'"))),
        }
    }

    fn from_sec1_der(der: &[u8]) -> Result<Self, KeyError> {
        use p256::elliptic_curve::SecretKey;
        if let Ok(k) = SecretKey::<p256::NistP256>::from_sec1_der(der) {
            return Ok(SoftwareKey::P256(k.into()));
        }
        SecretKey::<p384::NistP384>::from_sec1_der(der)
            .map(|k| SoftwareKey::P384(k.into()))
            .map_err(|e| KeyError::Format(format!("SEC1 EC key (P-256 or P-384): {e}")))
    }

    /// Encodes the key as PKCS#8 PEM (the on-disk form brski writes).
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, KeyError> {
        let r = match self {
            SoftwareKey::P256(k) => k.to_pkcs8_pem(LineEnding::LF),
            SoftwareKey::P384(k) => k.to_pkcs8_pem(LineEnding::LF),
            SoftwareKey::Ed25519(k) => k.to_pkcs8_pem(LineEnding::LF),
        };
        r.map_err(|e| KeyError::Format(e.to_string()))
    }

    /// Encodes the key as PKCS#8 DER.
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let r = match self {
            SoftwareKey::P256(k) => k.to_pkcs8_der(),
            SoftwareKey::P384(k) => k.to_pkcs8_der(),
            SoftwareKey::Ed25519(k) => k.to_pkcs8_der(),
        };
        r.map(|d| Zeroizing::new(d.as_bytes().to_vec())).map_err(|e| KeyError::Format(e.to_string()))
    }
}

impl Signer for SoftwareKey {
    fn algorithm(&self) -> Algorithm {
        match self {
            SoftwareKey::P256(_) => Algorithm::Es256,
            SoftwareKey::P384(_) => Algorithm::Es384,
            SoftwareKey::Ed25519(_) => Algorithm::EdDsa,
        }
    }

    fn public_key_der(&self) -> Vec<u8> {
        let doc = match self {
            SoftwareKey::P256(k) => k.verifying_key().to_public_key_der(),
            SoftwareKey::P384(k) => k.verifying_key().to_public_key_der(),
            SoftwareKey::Ed25519(k) => k.verifying_key().to_public_key_der(),
        };
        // Encoding a valid in-memory public key cannot fail.
        doc.map(|d| d.as_bytes().to_vec()).unwrap_or_default()
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let err = |e: signature::Error| KeyError::Sign(e.to_string());
        Ok(match self {
            SoftwareKey::P256(k) => {
                let s: p256::ecdsa::Signature = k.try_sign(message).map_err(err)?;
                s.to_bytes().to_vec()
            }
            SoftwareKey::P384(k) => {
                let s: p384::ecdsa::Signature = k.try_sign(message).map_err(err)?;
                s.to_bytes().to_vec()
            }
            SoftwareKey::Ed25519(k) => k.try_sign(message).map_err(err)?.to_bytes().to_vec(),
        })
    }
}
