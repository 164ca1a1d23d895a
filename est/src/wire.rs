//! EST message formats (RFC 7030 §4, RFC 8951): base64 bodies, the certs-only Simple PKI
//! Response, CSR attributes, and the exact media types.

use cms::content_info::ContentInfo;
use cms::signed_data::SignedData;
use const_oid::ObjectIdentifier;
use der::{Any, Decode, Encode, Tag, Tagged};
use x509_cert::attr::Attribute;
use x509_cert::Certificate;

/// Request body of simpleenroll / simplereenroll / serverkeygen.
pub const MEDIA_PKCS10: &str = "application/pkcs10";
/// Response of simpleenroll / simplereenroll and the certificate part of serverkeygen.
pub const MEDIA_CERTS_ONLY: &str = "application/pkcs7-mime; smime-type=certs-only";
/// Response of cacerts (RFC 7030 §4.1.3 sends no smime-type here).
pub const MEDIA_CACERTS: &str = "application/pkcs7-mime";
/// Response of csrattrs.
pub const MEDIA_CSRATTRS: &str = "application/csrattrs";
/// Unencrypted key part of a serverkeygen response.
pub const MEDIA_PKCS8: &str = "application/pkcs8";
/// Encrypted key part of a serverkeygen response.
pub const MEDIA_SERVER_GENERATED_KEY: &str = "application/pkcs7-mime; smime-type=server-generated-key";
/// Column width of base64 bodies we send (RFC 8951 allows any; 64 matches OpenSSL).
pub const BASE64_COLUMNS: usize = 64;

/// Why an EST message could not be read or built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The body is not base64.
    #[error("body is not base64 (RFC 8951: EST bodies are base64 of DER)")]
    Base64,
    /// The DER inside is malformed or of the wrong type.
    #[error("malformed {what}: {detail}")]
    Der {
        /// What was being read.
        what: &'static str,
        /// The decoder's complaint.
        detail: String,
    },
    /// A certs-only response without certificates.
    #[error("certs-only response holds no certificate")]
    NoCertificates,
}

fn der_err(what: &'static str) -> impl Fn(der::Error) -> WireError {
    move |e| WireError::Der { what, detail: e.to_string() }
}

/// Encodes a DER body as base64 with LF line breaks every [`BASE64_COLUMNS`] characters.
pub fn encode_body(der: &[u8]) -> String {
    shared::b64::encode_wrapped(der, BASE64_COLUMNS)
}

/// Decodes a base64 body, tolerating whitespace anywhere (RFC 8951 §3.2). Any
/// Content-Transfer-Encoding header is ignored by callers, as RFC 8951 requires.
pub fn decode_body(body: &[u8]) -> Result<Vec<u8>, WireError> {
    let text = std::str::from_utf8(body).map_err(|_| WireError::Base64)?;
    shared::b64::decode_lenient(text).map_err(|_| WireError::Base64)
}

/// Builds a certs-only CMC Simple PKI Response (degenerate SignedData) holding `certs`.
pub fn certs_only(certs: &[Certificate]) -> Result<Vec<u8>, WireError> {
    let ci = ContentInfo::try_from(certs.to_vec()).map_err(der_err("certs-only"))?;
    ci.to_der().map_err(der_err("certs-only"))
}

/// Reads the certificates out of a certs-only response (or any SignedData's certificate set).
pub fn parse_certs_only(der: &[u8]) -> Result<Vec<Certificate>, WireError> {
    let ci = ContentInfo::from_der(der).map_err(der_err("certs-only"))?;
    if ci.content_type != const_oid::db::rfc5911::ID_SIGNED_DATA {
        return Err(WireError::Der {
            what: "certs-only",
            detail: format!("content type {} is not signedData", ci.content_type),
        });
    }
    let sd: SignedData = ci.content.decode_as().map_err(der_err("certs-only SignedData"))?;
    let certs: Vec<Certificate> = sd
        .certificates
        .map(|set| {
            set.0
                .iter()
                .filter_map(|c| match c {
                    cms::cert::CertificateChoices::Certificate(c) => Some(c.clone()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if certs.is_empty() {
        return Err(WireError::NoCertificates);
    }
    Ok(certs)
}

/// One entry of a CSR attributes response (RFC 8951 `AttrOrOID`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CsrAttr {
    /// A bare OID: a signature algorithm to use, or challengePassword (channel binding wanted).
    Oid(ObjectIdentifier),
    /// An attribute: e.g. a key type (id-ecPublicKey with a curve) or an extensionRequest.
    Attribute(Attribute),
    /// An entry this decoder cannot read (e.g. an OID under 2.999, as in RFC 7030 A.2), kept
    /// as raw DER so clients can skip it and servers can pass it on unchanged.
    Unknown(Any),
}

/// Encodes CSR attributes (`CsrAttrs ::= SEQUENCE OF AttrOrOID`) as DER.
pub fn encode_csrattrs(attrs: &[CsrAttr]) -> Result<Vec<u8>, WireError> {
    let items = attrs
        .iter()
        .map(|a| match a {
            CsrAttr::Oid(oid) => Any::encode_from(oid),
            CsrAttr::Attribute(at) => Any::encode_from(at),
            CsrAttr::Unknown(raw) => Ok(raw.clone()),
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(der_err("csrattrs"))?;
    items.to_der().map_err(der_err("csrattrs"))
}

/// Parses CSR attributes; entries of unknown shape are kept as attributes or OIDs and left for
/// the caller to ignore, as RFC 7030 §4.5.2 requires of clients.
pub fn parse_csrattrs(der: &[u8]) -> Result<Vec<CsrAttr>, WireError> {
    let items: Vec<Any> = Vec::from_der(der).map_err(der_err("csrattrs"))?;
    Ok(items
        .into_iter()
        .map(|item| {
            let known = match item.tag() {
                Tag::ObjectIdentifier => item.decode_as::<ObjectIdentifier>().map(CsrAttr::Oid),
                _ => item.decode_as::<Attribute>().map(CsrAttr::Attribute),
            };
            known.unwrap_or(CsrAttr::Unknown(item))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(rel: &str) -> Vec<u8> {
        std::fs::read(format!("{}/../testdata/vectors/rfc7030-appendix-a/{rel}", env!("CARGO_MANIFEST_DIR")))
            .unwrap()
    }

    #[test]
    fn rfc7030_cacerts_response_parses_four_certificates() {
        let der = decode_body(&vector("cacerts-response.b64")).unwrap();
        assert_eq!(der, vector("cacerts-response.der"));
        let certs = parse_certs_only(&der).unwrap();
        assert_eq!(certs.len(), 4);
        // Re-encoding as certs-only keeps the certificates.
        assert_eq!(parse_certs_only(&certs_only(&certs).unwrap()).unwrap(), certs);
    }

    #[test]
    fn rfc7030_csrattrs_examples_round_trip() {
        for name in ["csrattrs-section-4.5.2", "csrattrs-response"] {
            let der = decode_body(&vector(&format!("{name}.b64"))).unwrap();
            assert_eq!(der, vector(&format!("{name}.der")), "{name}");
            let attrs = parse_csrattrs(&der).unwrap();
            assert!(
                attrs.contains(&CsrAttr::Oid(ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.7"))),
                "{name}"
            );
            assert_eq!(encode_csrattrs(&attrs).unwrap(), der, "{name}");
        }
        let a = parse_csrattrs(&vector("csrattrs-response.der")).unwrap();
        assert_eq!(a.len(), 6, "unknown 2.999.x entries are kept for the caller to skip");
    }

    #[test]
    fn bodies_tolerate_whitespace_and_wrap_at_64() {
        let der = vector("simpleenroll-request.der");
        let body = encode_body(&der);
        assert!(body.lines().all(|l| l.len() <= 64) && body.ends_with('\n'));
        let crlf = body.replace('\n', "\r\n ");
        assert_eq!(decode_body(crlf.as_bytes()).unwrap(), der);
        assert_eq!(decode_body(b"not base64!"), Err(WireError::Base64));
        assert!(matches!(parse_certs_only(&[0x30, 0x03, 0x02, 0x01, 0x00]), Err(WireError::Der { .. })));
    }
}
