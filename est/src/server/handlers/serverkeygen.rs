//! `/serverkeygen` (RFC 7030 §4.4): the server generates a P-256 key, certifies it and returns
//! key and certificate as `multipart/mixed`.
//!
//! The key part is `application/pkcs8` (protected by TLS only), unless the CSR asks for
//! additional encryption (RFC 7030 §4.4.1.1 / §4.4.1.2); it is then
//! `application/pkcs7-mime; smime-type=server-generated-key`, an EnvelopedData around a
//! SignedData around the AsymmetricKeyPackage (built by [`crate::keypackage`], whose docs give
//! the exact nesting and algorithms), signed by the authority's
//! [`key_generator`](crate::authority::Authority::key_generator):
//!
//! * AsymmetricDecryptKeyIdentifier: the identifier must name the key of the TLS client
//!   certificate presented on this connection (its subjectKeyIdentifier, or SHA-1 of its public
//!   key). The TLS handshake proved the client holds that private key, so only this client can
//!   decrypt; the certificate need not chain to the label's anchors (authentication is
//!   separate). EC P-256/P-384 keys get a kari, RSA keys a ktri; a keyUsage extension must allow
//!   keyAgreement / keyEncipherment. No client certificate, another key, or an unusable key:
//!   400 (`key-encryption` problem).
//! * DecryptKeyIdentifier: the identifier must name one of the label's
//!   [`serverkeygen_shared_keys`](crate::server::LabelPolicy::serverkeygen_shared_keys) (kekri);
//!   otherwise 400.
//! * An authority without a key generator cannot sign the package: 501.
//!
//! The key package is built before the certificate is issued, so a refusal never leaves an
//! issued certificate whose key was thrown away.

use crate::authority::Identity;
use crate::http::ConnectionInfo;
use crate::keypackage::{
    check_recipient_certificate, choose_algorithms, encryption_request, key_id_matches, seal, Algorithms,
    KeyPackageError, Recipient, RequestedKey,
};
use crate::server::auth::serial_hex;
use crate::server::config::LabelPolicy;
use crate::server::error::EstError;
use crate::server::state::ServerState;
use crate::wire;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use shared::keys::{Algorithm, SoftwareKey};
use shared::pki::Csr;
use shared::Verified;
use zeroize::Zeroizing;

pub use crate::keypackage::{ASYMM_DECRYPT_KEY_ID, DECRYPT_KEY_ID};

/// How the generated key is returned.
#[derive(Debug)]
pub(crate) enum KeyDelivery {
    /// `application/pkcs8`, protected by TLS only.
    Plain,
    /// Enveloped for `recipient` with `algs`.
    Encrypted {
        /// Who can decrypt.
        recipient: Recipient,
        /// The algorithms chosen from the client's SMIMECapabilities.
        algs: Algorithms,
    },
}

fn key_err(e: KeyPackageError) -> EstError {
    match e {
        KeyPackageError::Request(r) => EstError::KeyEncryption(r),
        other => EstError::Internal(other.to_string()),
    }
}

fn no_key_generator() -> EstError {
    EstError::NotImplemented(
        "this server's certificate authority cannot sign key packages (RFC 7030 §4.4.2), so it \
         cannot return the server-generated key encrypted; send the CSR without \
         DecryptKeyIdentifier / AsymmetricDecryptKeyIdentifier to receive an unencrypted PKCS#8 \
         key over this TLS connection"
            .into(),
    )
}

/// What serverkeygen checks before authorization: a label that allows the P-256 keys it
/// generates, and, when the CSR asks for key encryption, that it can be done: returns how the
/// key will be delivered.
pub(crate) fn check_request(
    st: &ServerState,
    policy: &LabelPolicy,
    label: &str,
    csr: &Csr,
    conn: &ConnectionInfo,
) -> Result<KeyDelivery, EstError> {
    if !policy.allowed_key_algorithms.is_empty() && !policy.allowed_key_algorithms.contains(&Algorithm::Es256)
    {
        return Err(EstError::KeyAlgorithm(
            "ES256 (serverkeygen generates P-256 keys, which this label does not allow)".into(),
        ));
    }
    let Some(request) = encryption_request(csr).map_err(key_err)? else { return Ok(KeyDelivery::Plain) };
    if st.authority.key_generator(label).is_none() {
        return Err(no_key_generator());
    }
    let recipient = match request.key {
        RequestedKey::Symmetric(id) => policy
            .serverkeygen_shared_keys
            .iter()
            .find(|k| k.id() == id.as_slice())
            .cloned()
            .map(Recipient::Shared)
            .ok_or_else(|| {
                EstError::KeyEncryption(format!(
                    "unknown DecryptKeyIdentifier {}: no shared key-encryption key with this \
                     identifier is configured for this CA label",
                    hex::encode(&id)
                ))
            })?,
        RequestedKey::Asymmetric(id) => {
            let chain = conn.peer_chain().map_err(|e| EstError::ClientCertRejected(e.to_string()))?;
            let cert = chain.into_iter().next().ok_or_else(|| {
                EstError::KeyEncryption(
                    "AsymmetricDecryptKeyIdentifier names a client key, but no TLS client \
                     certificate was presented on this connection; this server encrypts the \
                     generated key only to the key of the client certificate it sees"
                        .into(),
                )
            })?;
            if !key_id_matches(&cert, &id) {
                return Err(EstError::KeyEncryption(format!(
                    "unknown AsymmetricDecryptKeyIdentifier {}: it does not identify the key of the \
                     TLS client certificate on this connection (subjectKeyIdentifier {})",
                    hex::encode(&id),
                    hex::encode(shared::pki::subject_key_id(&cert))
                )));
            }
            check_recipient_certificate(&cert).map_err(key_err)?;
            Recipient::Certificate(Box::new(cert))
        }
    };
    let algs = choose_algorithms(&recipient, request.capabilities.as_deref()).map_err(key_err)?;
    Ok(KeyDelivery::Encrypted { recipient, algs })
}

/// Generates a P-256 key, packs it as `delivery` says, has the authority certify it for the
/// CSR's names, and answers `multipart/mixed` of the key part and the certificate (both base64).
pub(crate) async fn serverkeygen(
    st: &ServerState,
    label: &str,
    csr: &Verified<Csr>,
    identity: &Identity,
    delivery: &KeyDelivery,
) -> Result<Response, EstError> {
    let key = SoftwareKey::generate(Algorithm::Es256).map_err(|e| EstError::Internal(e.to_string()))?;
    let pkcs8 = key.to_pkcs8_der().map_err(|e| EstError::Internal(e.to_string()))?;
    let (key_media, key_der, encrypted) = match delivery {
        KeyDelivery::Plain => (wire::MEDIA_PKCS8, pkcs8.clone(), "no"),
        KeyDelivery::Encrypted { recipient, algs } => {
            let generator = st.authority.key_generator(label).ok_or_else(no_key_generator)?;
            let der = seal(&pkcs8, generator.signer, &generator.chain, recipient, algs).map_err(key_err)?;
            let kind = match recipient {
                Recipient::Certificate(_) => "client-key",
                Recipient::Shared(_) => "shared-key",
            };
            (wire::MEDIA_SERVER_GENERATED_KEY, Zeroizing::new(der), kind)
        }
    };
    let cert = st.authority.issue_for_key(label, csr, &key).await?;
    let (who, serial) = (identity.describe(), serial_hex(&cert));
    tracing::info!(label, %who, %serial, encrypted, "certificate issued for a server-generated key");
    let certs = wire::certs_only(&[cert]).map_err(|e| EstError::Internal(e.to_string()))?;
    let mut rnd = [0u8; 12];
    getrandom::fill(&mut rnd).map_err(|e| EstError::Internal(e.to_string()))?;
    let boundary = format!("est-{}", hex::encode(rnd));
    let body = multipart_body(
        &boundary,
        &[(key_media, wire::encode_body(&key_der)), (wire::MEDIA_CERTS_ONLY, wire::encode_body(&certs))],
    );
    let ct = format!("multipart/mixed; boundary={boundary}");
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, ct)], body).into_response())
}

/// A `multipart/mixed` body (RFC 2046) of base64 parts.
fn multipart_body(boundary: &str, parts: &[(&str, String)]) -> String {
    let mut out = String::new();
    for (ct, b64) in parts {
        out.push_str(&format!(
            "--{boundary}\r\nContent-Type: {ct}\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n"
        ));
    }
    out.push_str(&format!("--{boundary}--\r\n"));
    out
}
