//! `/serverkeygen` (RFC 7030 §4.4): the server generates a P-256 key, certifies it and returns
//! key and certificate as `multipart/mixed`. Encrypting the key is not implemented.

use crate::authority::Identity;
use crate::server::auth::serial_hex;
use crate::server::config::LabelPolicy;
use crate::server::error::EstError;
use crate::server::state::ServerState;
use crate::wire;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use const_oid::ObjectIdentifier;
use shared::keys::{Algorithm, SoftwareKey};
use shared::pki::Csr;
use shared::Verified;

/// id-aa-decryptKeyID (RFC 4108): serverkeygen asks for symmetric key encryption.
pub const DECRYPT_KEY_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.37");
/// id-aa-asymmDecryptKeyID (RFC 7030): serverkeygen asks for asymmetric key encryption.
pub const ASYMM_DECRYPT_KEY_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.54");

/// What serverkeygen refuses before authorization: a request to encrypt the key (501) and a
/// label that does not allow the P-256 keys it generates.
pub(crate) fn check_request(policy: &LabelPolicy, csr: &Csr) -> Result<(), EstError> {
    if csr.attribute(DECRYPT_KEY_ID).is_some() || csr.attribute(ASYMM_DECRYPT_KEY_ID).is_some() {
        return Err(EstError::NotImplemented(
            "encrypting the server-generated key (DecryptKeyIdentifier / AsymmetricDecryptKeyIdentifier) \
             is not implemented; send the CSR without these attributes to receive an unencrypted \
             PKCS#8 key over this TLS connection"
                .into(),
        ));
    }
    if !policy.allowed_key_algorithms.is_empty() && !policy.allowed_key_algorithms.contains(&Algorithm::Es256)
    {
        return Err(EstError::KeyAlgorithm(
            "ES256 (serverkeygen generates P-256 keys, which this label does not allow)".into(),
        ));
    }
    Ok(())
}

/// Generates a P-256 key, has the authority certify it for the CSR's names, and answers
/// `multipart/mixed` of the PKCS#8 key and the certificate (both base64).
pub(crate) async fn serverkeygen(
    st: &ServerState,
    label: &str,
    csr: &Verified<Csr>,
    identity: &Identity,
) -> Result<Response, EstError> {
    let key = SoftwareKey::generate(Algorithm::Es256).map_err(|e| EstError::Internal(e.to_string()))?;
    let cert = st.authority.issue_for_key(label, csr, &key).await?;
    let (who, serial) = (identity.describe(), serial_hex(&cert));
    tracing::info!(label, %who, %serial, "certificate issued for a server-generated key");
    let certs = wire::certs_only(&[cert]).map_err(|e| EstError::Internal(e.to_string()))?;
    let pkcs8 = key.to_pkcs8_der().map_err(|e| EstError::Internal(e.to_string()))?;
    let mut rnd = [0u8; 12];
    getrandom::fill(&mut rnd).map_err(|e| EstError::Internal(e.to_string()))?;
    let boundary = format!("est-{}", hex::encode(rnd));
    let body = multipart_body(
        &boundary,
        &[
            (wire::MEDIA_PKCS8, wire::encode_body(&pkcs8)),
            (wire::MEDIA_CERTS_ONLY, wire::encode_body(&certs)),
        ],
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
