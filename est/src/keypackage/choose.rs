//! Choosing the algorithms of a key package from the client's SMIMECapabilities (RFC 8551
//! §2.5.2, RFC 7030 §4.4.1.1: the attribute MUST be present when encryption is requested; this
//! server still answers a CSR without it, with its strongest defaults).

use super::algorithms::{Algorithms, ContentCipher, KdfScheme, KeyWrap};
use super::error::KeyPackageError;
use super::kekri::SharedKey;
use super::oids::{ID_RSAES_OAEP, RSA_ENCRYPTION};
use super::recipient::{client_key, ClientKey, Recipient};
use spki::AlgorithmIdentifierOwned;

/// Chooses the algorithms for `recipient` from the client's SMIMECapabilities (`None`: absent).
///
/// Key wrap: the strongest AES wrap the client lists (kari), or the wrap of the shared key's size,
/// which the client must list (kekri); without the attribute id-aes256-wrap. KDF: a listed
/// dhSinglePass-stdDH scheme, else SHA-256 for P-256 and SHA-384 for P-384. Content: the strongest
/// listed AES-CBC, else AES-256-CBC.
pub fn choose_algorithms(
    recipient: &Recipient,
    capabilities: Option<&[AlgorithmIdentifierOwned]>,
) -> Result<Algorithms, KeyPackageError> {
    let listed = Listed::read(capabilities);
    match recipient {
        Recipient::Shared(k) => for_shared_key(k, &listed),
        Recipient::Certificate(cert) => match client_key(cert)? {
            ClientKey::Rsa(_) => for_rsa(capabilities.unwrap_or_default(), &listed),
            key => for_ec(&key, &listed),
        },
    }
}

/// What a client's SMIMECapabilities lists, sorted by use.
struct Listed {
    /// False when the attribute is absent.
    present: bool,
    /// Key wraps listed directly, or as the parameter of a listed ECDH scheme.
    wraps: Vec<KeyWrap>,
    /// The dhSinglePass-stdDH schemes, in the client's order.
    kdfs: Vec<KdfScheme>,
    /// The strongest listed AES-CBC, else AES-256-CBC.
    content: ContentCipher,
}

impl Listed {
    /// Sorts `capabilities` (`None`: the attribute is absent).
    fn read(capabilities: Option<&[AlgorithmIdentifierOwned]>) -> Self {
        let caps = capabilities.unwrap_or_default();
        let mut wraps: Vec<KeyWrap> = caps.iter().filter_map(|c| KeyWrap::from_oid(&c.oid)).collect();
        let mut kdfs = Vec::new();
        for c in caps {
            if let Some(k) = KdfScheme::from_oid(&c.oid) {
                kdfs.push(k);
                if let Some(w) =
                    c.parameters.as_ref().and_then(|p| p.decode_as::<AlgorithmIdentifierOwned>().ok())
                {
                    wraps.extend(KeyWrap::from_oid(&w.oid));
                }
            }
        }
        let content = caps
            .iter()
            .filter_map(|c| ContentCipher::from_oid(&c.oid))
            .max_by_key(|c| *c as u8)
            .unwrap_or(ContentCipher::Aes256Cbc);
        Listed { present: capabilities.is_some(), wraps, kdfs, content }
    }
}

/// kekri: the wrap of the shared key's size, which a present attribute must list.
fn for_shared_key(k: &SharedKey, listed: &Listed) -> Result<Algorithms, KeyPackageError> {
    let wrap = k.wrap();
    if listed.present && !listed.wraps.contains(&wrap) {
        return Err(KeyPackageError::Request(format!(
            "the shared key named by DecryptKeyIdentifier is used with {} ({:?}), which the \
             CSR's SMIMECapabilities does not list",
            wrap.oid(),
            wrap
        )));
    }
    Ok(Algorithms { wrap, kdf: KdfScheme::Sha256, content: listed.content })
}

/// ktri: rsaEncryption, refused when the client lists RSA key transports but not that one.
fn for_rsa(caps: &[AlgorithmIdentifierOwned], listed: &Listed) -> Result<Algorithms, KeyPackageError> {
    let transport: Vec<_> =
        caps.iter().filter(|c| c.oid == RSA_ENCRYPTION || c.oid == ID_RSAES_OAEP).collect();
    if !transport.is_empty() && !transport.iter().any(|c| c.oid == RSA_ENCRYPTION) {
        return Err(KeyPackageError::Request(
            "SMIMECapabilities lists only RSAES-OAEP; this server transports keys with \
             rsaEncryption (PKCS #1 v1.5)"
                .into(),
        ));
    }
    Ok(Algorithms { wrap: KeyWrap::Aes256, kdf: KdfScheme::Sha256, content: listed.content })
}

/// kari: the strongest listed wrap, and the curve's own KDF unless the client lists only others.
fn for_ec(key: &ClientKey, listed: &Listed) -> Result<Algorithms, KeyPackageError> {
    let wrap = match listed.wraps.iter().max() {
        Some(w) => *w,
        None if listed.present => {
            return Err(KeyPackageError::Request(
                "SMIMECapabilities lists none of the key-wrap algorithms this server supports \
                 (id-aes128-wrap, id-aes192-wrap, id-aes256-wrap)"
                    .into(),
            ))
        }
        None => KeyWrap::Aes256,
    };
    let preferred = match key {
        ClientKey::P384(_) => KdfScheme::Sha384,
        _ => KdfScheme::Sha256,
    };
    let kdfs = &listed.kdfs;
    let kdf = if kdfs.is_empty() || kdfs.contains(&preferred) { preferred } else { kdfs[0] };
    Ok(Algorithms { wrap, kdf, content: listed.content })
}
