//! The kari recipient (RFC 5753 §3.1, ephemeral-static ECDH for an EC P-256 / P-384 client key):
//! building the KeyAgreeRecipientInfo on the server (a fresh ephemeral key, ANSI X9.63 KDF over
//! the ECC-CMS-SharedInfo, AES key wrap) and recovering the content key from it on the client.
//!
//! Built here rather than with `cms`'s `KeyAgreeRecipientInfoBuilder` (0.3.0-rc.0), which wraps
//! the content key under an all-zero KEK (see the parent module's docs).

use super::algorithms::{Algorithms, KdfScheme, KeyWrap, Rng};
use super::error::{build_err, malformed, KeyPackageError};
use super::oids::{ID_EC_PUBLIC_KEY, SECP256R1, SECP384R1};
use super::recipient::ClientKey;
use cms::builder::{RecipientInfoBuilder, RecipientInfoType};
use cms::content_info::CmsVersion;
use cms::enveloped_data::{
    KeyAgreeRecipientIdentifier, KeyAgreeRecipientInfo, OriginatorIdentifierOrKey, OriginatorPublicKey,
    RecipientEncryptedKey, RecipientInfo,
};
use const_oid::ObjectIdentifier;
use der::asn1::{BitString, OctetString};
use der::{Any, Encode, Sequence};
use shared::keys::SoftwareKey;
use spki::AlgorithmIdentifierOwned;
use zeroize::Zeroizing;

/// ECC-CMS-SharedInfo (RFC 5753 §7.2), the X9.63 KDF's SharedInfo.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct EccCmsSharedInfo {
    /// The key-wrap algorithm the KEK is for.
    key_info: AlgorithmIdentifierOwned,
    /// The ukm, when the kari carries one.
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    entity_u_info: Option<OctetString>,
    /// The KEK length in bits, 32-bit big-endian.
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT")]
    supp_pub_info: OctetString,
}

/// The KEK of a kari: X9.63 KDF(Z, DER ECC-CMS-SharedInfo) of the wrap's key length.
fn derive_kek(
    kdf: KdfScheme,
    z: &[u8],
    wrap_alg: &AlgorithmIdentifierOwned,
    ukm: Option<&OctetString>,
    wrap: KeyWrap,
) -> Result<Zeroizing<Vec<u8>>, KeyPackageError> {
    let bits = (wrap.key_len() as u32) * 8;
    let info = EccCmsSharedInfo {
        key_info: wrap_alg.clone(),
        entity_u_info: ukm.cloned(),
        supp_pub_info: OctetString::new(bits.to_be_bytes()).map_err(build_err)?,
    };
    let info_der = info.to_der().map_err(build_err)?;
    let mut kek = Zeroizing::new(vec![0u8; wrap.key_len()]);
    kdf.derive(z, &info_der, &mut kek)?;
    Ok(kek)
}

/// A kari for one EC recipient (RFC 5753 §3.1.2, ephemeral-static ECDH).
pub(super) struct KariBuilder {
    /// The recipient's static EC key.
    pub(super) key: ClientKey,
    /// How the recipient is named (issuerAndSerialNumber).
    pub(super) rid: KeyAgreeRecipientIdentifier,
    /// Key wrap and KDF scheme.
    pub(super) algs: Algorithms,
}

/// Ephemeral key pair and ECDH with `$pk`: (uncompressed ephemeral point, Z).
macro_rules! ephemeral_ecdh {
    ($curve:ident, $pk:expr) => {{
        use $curve::elliptic_curve::{sec1::ToSec1Point, Generate};
        let eph = $curve::ecdh::EphemeralSecret::try_generate().map_err(build_err)?;
        // Uncompressed: RFC 5753 §3.1.1 makes it the form every implementation supports.
        let point = eph.public_key().to_sec1_point(false).as_bytes().to_vec();
        let shared = eph.diffie_hellman($pk);
        (point, Zeroizing::new(shared.raw_secret_bytes().to_vec()))
    }};
}

/// A fresh ephemeral key agreed with the recipient's key: (uncompressed ephemeral point, Z).
fn agree(key: &ClientKey) -> Result<(Vec<u8>, Zeroizing<Vec<u8>>), KeyPackageError> {
    Ok(match key {
        ClientKey::P256(pk) => ephemeral_ecdh!(p256, pk),
        ClientKey::P384(pk) => ephemeral_ecdh!(p384, pk),
        ClientKey::Rsa(_) => {
            return Err(KeyPackageError::Build("an RSA key cannot be used in a kari".into()))
        }
    })
}

impl RecipientInfoBuilder for KariBuilder {
    type Rng = Rng;

    fn recipient_info_type(&self) -> RecipientInfoType {
        RecipientInfoType::Kari
    }

    fn recipient_info_version(&self) -> CmsVersion {
        CmsVersion::V3
    }

    fn build_with_rng(&mut self, cek: &[u8], _rng: &mut Rng) -> Result<RecipientInfo, cms::builder::Error> {
        let cms_err = |e: KeyPackageError| cms::builder::Error::Builder(e.to_string());
        let (point, z) = agree(&self.key).map_err(cms_err)?;
        let wrap_alg = self.algs.wrap.algorithm_identifier();
        let kek = derive_kek(self.algs.kdf, &z, &wrap_alg, None, self.algs.wrap).map_err(cms_err)?;
        let wrapped = self.algs.wrap.wrap(&kek, cek).map_err(cms_err)?;
        Ok(RecipientInfo::Kari(KeyAgreeRecipientInfo {
            version: CmsVersion::V3,
            originator: OriginatorIdentifierOrKey::OriginatorKey(OriginatorPublicKey {
                // RFC 5753 §7.1.2: implementations SHOULD generate absent parameters here.
                algorithm: AlgorithmIdentifierOwned { oid: ID_EC_PUBLIC_KEY, parameters: None },
                public_key: BitString::from_bytes(&point)?,
            }),
            ukm: None,
            key_enc_alg: AlgorithmIdentifierOwned {
                oid: self.algs.kdf.oid(),
                parameters: Some(Any::encode_from(&wrap_alg)?),
            },
            recipient_enc_keys: vec![RecipientEncryptedKey {
                rid: self.rid.clone(),
                enc_key: OctetString::new(wrapped)?,
            }],
        }))
    }
}

/// Agreement on the client side: Z from our static key and the originator's ephemeral point.
macro_rules! static_ecdh {
    ($curve:ident, $sk:expr, $point:expr) => {{
        let Ok(pk) = $curve::PublicKey::from_sec1_bytes($point) else { return Ok(None) };
        let shared = $curve::ecdh::diffie_hellman($sk.as_nonzero_scalar(), pk.as_affine());
        Zeroizing::new(shared.raw_secret_bytes().to_vec())
    }};
}

/// The CEK from one kari, if it is for `key`; `Ok(None)` when it is not (another curve,
/// another recipient).
pub(super) fn cek_from_kari(
    kari: &KeyAgreeRecipientInfo,
    key: &SoftwareKey,
) -> Result<Option<Zeroizing<Vec<u8>>>, KeyPackageError> {
    let kdf = KdfScheme::from_oid(&kari.key_enc_alg.oid).ok_or_else(|| {
        KeyPackageError::Malformed(format!("unsupported key agreement algorithm {}", kari.key_enc_alg.oid))
    })?;
    let wrap_alg: AlgorithmIdentifierOwned = kari
        .key_enc_alg
        .parameters
        .as_ref()
        .ok_or_else(|| malformed("the key agreement algorithm has no key-wrap parameter"))?
        .decode_as()
        .map_err(malformed)?;
    let wrap = KeyWrap::from_oid(&wrap_alg.oid)
        .ok_or_else(|| KeyPackageError::Malformed(format!("unsupported key wrap {}", wrap_alg.oid)))?;
    let OriginatorIdentifierOrKey::OriginatorKey(originator) = &kari.originator else {
        return Err(malformed("kari originator is not an ephemeral originatorKey (RFC 5753 §3.1.1)"));
    };
    if originator.algorithm.oid != ID_EC_PUBLIC_KEY {
        return Err(malformed("kari originatorKey is not id-ecPublicKey"));
    }
    let curve = originator.algorithm.parameters.as_ref().and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    let point = originator.public_key.raw_bytes();
    let z = match key {
        SoftwareKey::P256(sk) if curve.is_none_or(|c| c == SECP256R1) => static_ecdh!(p256, sk, point),
        SoftwareKey::P384(sk) if curve.is_none_or(|c| c == SECP384R1) => static_ecdh!(p384, sk, point),
        _ => return Ok(None),
    };
    let kek = derive_kek(kdf, &z, &wrap_alg, kari.ukm.as_ref(), wrap)?;
    Ok(kari.recipient_enc_keys.iter().find_map(|rek| wrap.unwrap(&kek, rek.enc_key.as_bytes())))
}
