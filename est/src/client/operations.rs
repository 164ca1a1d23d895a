//! The RFC 7030 §4 operations on an [`EstConnection`]: `/cacerts`, `/csrattrs`,
//! `/simpleenroll`, `/simplereenroll` and `/serverkeygen` (plain or with the key encrypted to
//! the client, §4.4.1-§4.4.2).

use super::connection::Reply;
use super::{problem_detail, ClientError, Enrollment, EstConnection, ServerKey};
use crate::keypackage::Decryptor;
use crate::multipart;
use crate::wire::{self, CsrAttr, WireError};
use hyper::{Method, StatusCode};
use std::time::Duration;
use x509_cert::Certificate;

impl EstConnection {
    /// GET /cacerts: the CA certificates (RFC 7030 §4.1).
    pub async fn cacerts(&mut self) -> Result<Vec<Certificate>, ClientError> {
        let r = self.send(Method::GET, "cacerts", None).await?;
        expect_ok(&r)?;
        Ok(wire::parse_certs_only(&wire::decode_body(&r.body)?)?)
    }

    /// GET /csrattrs: requested CSR attributes (empty on 204 or 404).
    pub async fn csrattrs(&mut self) -> Result<Vec<CsrAttr>, ClientError> {
        let r = self.send(Method::GET, "csrattrs", None).await?;
        if r.status == StatusCode::NO_CONTENT || r.status == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        expect_ok(&r)?;
        let der = wire::decode_body(&r.body)?;
        if der.is_empty() {
            return Ok(Vec::new());
        }
        Ok(wire::parse_csrattrs(&der)?)
    }

    /// POST /simpleenroll with a DER CSR.
    pub async fn simpleenroll(
        &mut self,
        csr_der: &[u8],
    ) -> Result<Enrollment<Vec<Certificate>>, ClientError> {
        self.enroll("simpleenroll", csr_der).await
    }

    /// POST /simplereenroll with a DER CSR (the connection must present the current certificate).
    pub async fn simplereenroll(
        &mut self,
        csr_der: &[u8],
    ) -> Result<Enrollment<Vec<Certificate>>, ClientError> {
        self.enroll("simplereenroll", csr_der).await
    }

    async fn enroll(
        &mut self,
        op: &'static str,
        csr_der: &[u8],
    ) -> Result<Enrollment<Vec<Certificate>>, ClientError> {
        let r = self.send(Method::POST, op, Some(csr_der)).await?;
        if let Some(p) = pending(&r) {
            return Ok(p);
        }
        expect_ok(&r)?;
        Ok(Enrollment::Done(wire::parse_certs_only(&wire::decode_body(&r.body)?)?))
    }

    /// POST /serverkeygen and split the 200 answer into its multipart parts (202: pending).
    async fn serverkeygen_parts(
        &mut self,
        csr_der: &[u8],
    ) -> Result<Enrollment<Vec<multipart::Part>>, ClientError> {
        let r = self.send(Method::POST, "serverkeygen", Some(csr_der)).await?;
        if let Some(p) = pending(&r) {
            return Ok(p);
        }
        expect_ok(&r)?;
        let parts =
            multipart::parse(&r.content_type, &r.body).map_err(|e| ClientError::Unexpected(e.to_string()))?;
        Ok(Enrollment::Done(parts))
    }

    /// POST /serverkeygen: the server generates the key pair and returns it with the certificate.
    pub async fn serverkeygen(&mut self, csr_der: &[u8]) -> Result<Enrollment<ServerKey>, ClientError> {
        let parts = match self.serverkeygen_parts(csr_der).await? {
            Enrollment::Done(parts) => parts,
            Enrollment::Pending { retry_after } => return Ok(Enrollment::Pending { retry_after }),
        };
        let Some(key) = parts.iter().find(|p| p.content_type.starts_with(wire::MEDIA_PKCS8)) else {
            if parts.iter().any(|p| is_server_generated_key(&p.content_type)) {
                return Err(ClientError::Unexpected(
                    "the key part is encrypted (server-generated-key); use serverkeygen_encrypted".into(),
                ));
            }
            return Err(ClientError::Unexpected("no application/pkcs8 part".into()));
        };
        Ok(Enrollment::Done(ServerKey {
            pkcs8: wire::decode_body(&key.body)?,
            certs: wire::parse_certs_only(&wire::decode_body(&certs_part(&parts)?.body)?)?,
        }))
    }

    /// POST /serverkeygen for a CSR that asks for the generated key to be encrypted (it carries
    /// SMIMECapabilities and AsymmetricDecryptKeyIdentifier or DecryptKeyIdentifier, see
    /// [`crate::keypackage::request_attributes`]). The key part must be
    /// `application/pkcs7-mime; smime-type=server-generated-key` (an unencrypted key is
    /// refused): it is decrypted with `decryptor`, its SignedData verified against `anchors`
    /// (empty: the CA certificates `/cacerts` returns on this connection), and the key must
    /// match the issued certificate.
    pub async fn serverkeygen_encrypted(
        &mut self,
        csr_der: &[u8],
        decryptor: &Decryptor<'_>,
        anchors: &[Certificate],
    ) -> Result<Enrollment<ServerKey>, ClientError> {
        let parts = match self.serverkeygen_parts(csr_der).await? {
            Enrollment::Done(parts) => parts,
            Enrollment::Pending { retry_after } => return Ok(Enrollment::Pending { retry_after }),
        };
        let key = parts.iter().find(|p| is_server_generated_key(&p.content_type)).ok_or_else(|| {
            let plain = parts.iter().any(|p| p.content_type.starts_with(wire::MEDIA_PKCS8));
            ClientError::Unexpected(if plain {
                "encryption was requested but the server returned the key unencrypted \
                 (application/pkcs8, RFC 7030 §4.4.2)"
                    .into()
            } else {
                "no server-generated-key part".into()
            })
        })?;
        let certs = wire::parse_certs_only(&wire::decode_body(&certs_part(&parts)?.body)?)?;
        let anchors = if anchors.is_empty() { self.cacerts().await? } else { anchors.to_vec() };
        let opened = crate::keypackage::open(
            &wire::decode_body(&key.body)?,
            decryptor,
            &shared::signed::Trust::now(anchors),
        )?;
        let issued = certs.first().ok_or(WireError::NoCertificates)?;
        let generated = shared::keys::SoftwareKey::from_pkcs8_der(&opened.pkcs8)
            .map_err(|e| ClientError::Unexpected(format!("the decrypted key: {e}")))?;
        if shared::keys::Signer::public_key_der(&generated) != shared::pki::spki_der(issued) {
            return Err(ClientError::Unexpected(
                "the decrypted key does not match the issued certificate".into(),
            ));
        }
        Ok(Enrollment::Done(ServerKey { pkcs8: opened.pkcs8.to_vec(), certs }))
    }
}

/// The `smime-type` parameter of a Content-Type (lower-cased by the multipart reader).
pub(super) fn smime_type(content_type: &str) -> Option<&str> {
    content_type
        .split(';')
        .skip(1)
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim() == "smime-type")
        .map(|(_, v)| v.trim().trim_matches('"'))
}

pub(super) fn is_server_generated_key(content_type: &str) -> bool {
    content_type.starts_with("application/pkcs7-mime")
        && smime_type(content_type) == Some("server-generated-key")
}

/// The certificate part of a serverkeygen answer: the pkcs7-mime part that is not the key.
fn certs_part(parts: &[multipart::Part]) -> Result<&multipart::Part, ClientError> {
    parts
        .iter()
        .find(|p| {
            p.content_type.starts_with("application/pkcs7-mime") && !is_server_generated_key(&p.content_type)
        })
        .ok_or_else(|| ClientError::Unexpected("no certs-only part".into()))
}

fn pending<T>(r: &Reply) -> Option<Enrollment<T>> {
    (r.status == StatusCode::ACCEPTED)
        .then(|| Enrollment::Pending { retry_after: r.retry_after.unwrap_or(Duration::from_secs(60)) })
}

fn expect_ok(r: &Reply) -> Result<(), ClientError> {
    if r.status == StatusCode::OK {
        return Ok(());
    }
    Err(ClientError::Status { status: r.status, detail: problem_detail(&r.content_type, &r.body) })
}
