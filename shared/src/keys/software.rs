//! Software keys (P-256, P-384, Ed25519) held in memory, loaded from and saved as PKCS#8.

use super::{Algorithm, KeyError, Signer};
use p256::elliptic_curve::Generate;
use pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use signature::Signer as _;
use zeroize::Zeroizing;

/// A private key in process memory.
pub enum SoftwareKey {
    /// ECDSA P-256 (signs in aws-lc with the default feature `aws-lc`).
    P256(P256Key),
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

/// A P-256 signing key: the RustCrypto key (what is stored, exported and used for ECDH) and,
/// with the feature `aws-lc`, the same key in aws-lc, made on first use, which signs about three
/// times faster. Dereferences to the RustCrypto key.
pub struct P256Key {
    key: p256::ecdsa::SigningKey,
    #[cfg(feature = "aws-lc")]
    fast: std::sync::OnceLock<Option<aws_lc_rs::signature::EcdsaKeyPair>>,
}

impl From<p256::ecdsa::SigningKey> for P256Key {
    fn from(key: p256::ecdsa::SigningKey) -> Self {
        P256Key {
            key,
            #[cfg(feature = "aws-lc")]
            fast: std::sync::OnceLock::new(),
        }
    }
}

impl std::ops::Deref for P256Key {
    type Target = p256::ecdsa::SigningKey;
    fn deref(&self) -> &Self::Target {
        &self.key
    }
}

impl P256Key {
    /// An ECDSA P-256 / SHA-256 signature, `r || s`.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        #[cfg(feature = "aws-lc")]
        if let Some(pair) = self.fast.get_or_init(|| self.aws_lc_pair()) {
            let rng = aws_lc_rs::rand::SystemRandom::new();
            let sig = pair.sign(&rng, message).map_err(|e| KeyError::Sign(e.to_string()))?;
            return Ok(sig.as_ref().to_vec());
        }
        let s: p256::ecdsa::Signature =
            signature::Signer::try_sign(&self.key, message).map_err(|e| KeyError::Sign(e.to_string()))?;
        Ok(s.to_bytes().to_vec())
    }

    /// The key in aws-lc (None if aws-lc refuses it; RustCrypto then signs).
    #[cfg(feature = "aws-lc")]
    fn aws_lc_pair(&self) -> Option<aws_lc_rs::signature::EcdsaKeyPair> {
        use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        let scalar = Zeroizing::new(self.key.to_bytes());
        let point = self.key.verifying_key().to_sec1_point(false);
        EcdsaKeyPair::from_private_key_and_public_key(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &scalar,
            point.as_bytes(),
        )
        .ok()
    }
}

impl SoftwareKey {
    /// Generates a fresh key from the operating system's random source.
    pub fn generate(alg: Algorithm) -> Result<Self, KeyError> {
        let err = |e: getrandom::Error| KeyError::Sign(format!("random source: {e}"));
        Ok(match alg {
            Algorithm::Es256 => {
                SoftwareKey::P256(p256::ecdsa::SigningKey::try_generate().map_err(err)?.into())
            }
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
            return Ok(SoftwareKey::P256(k.into()));
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
            return Ok(SoftwareKey::P256(p256::ecdsa::SigningKey::from(k).into()));
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
            SoftwareKey::P256(k) => k.sign(message)?,
            SoftwareKey::P384(k) => {
                let s: p384::ecdsa::Signature = k.try_sign(message).map_err(err)?;
                s.to_bytes().to_vec()
            }
            SoftwareKey::Ed25519(k) => k.try_sign(message).map_err(err)?.to_bytes().to_vec(),
        })
    }
}
