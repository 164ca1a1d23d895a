//! CMS SignedData (RFC 5652) with an encapsulated payload, as BRSKI uses for
//! `application/voucher-cms+json`: eContentType id-ct-animaJSONVoucher (emitted), id-data
//! (accepted, as the RFC 8995 examples use), DER or BER input.

use super::{ber, check_size, resolve_signer, verified, SignatureError, Trust};
use crate::crypto::Hash;
use crate::keys::Signer;
use crate::pki::signer_adapter::{DerSig, X509Signer};
use crate::Verified;
use cms::builder::{create_signing_time_attribute, SignedDataBuilder, SignerInfoBuilder};
use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::ContentInfo;
use cms::signed_data::{EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo};
use const_oid::db::rfc5911::{ID_CONTENT_TYPE, ID_DATA, ID_MESSAGE_DIGEST, ID_SIGNED_DATA};
use const_oid::ObjectIdentifier;
use der::asn1::OctetString;
use der::{Any, Decode, Encode, Tag};
use spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;

/// id-ct-animaJSONVoucher (RFC 8366): eContentType of JSON vouchers and voucher-requests.
pub const ID_CT_ANIMA_JSON_VOUCHER: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.40");

/// A parsed, not yet verified, CMS SignedData with encapsulated content.
#[derive(Debug, Clone)]
pub struct CmsSigned {
    signed_data: SignedData,
    content: Vec<u8>,
}

/// Signs `content` as CMS SignedData (DER) with `signer`, whose certificate is `chain[0]`;
/// the rest of `chain` is included for the recipient's path building.
pub fn sign(
    econtent_type: ObjectIdentifier,
    content: &[u8],
    signer: &dyn Signer,
    chain: &[Certificate],
) -> Result<Vec<u8>, SignatureError> {
    let cert = chain.first().ok_or_else(|| SignatureError::Sign("no signer certificate".into()))?;
    let econtent = Any::new(Tag::OctetString, content.to_vec())?;
    let eci = EncapsulatedContentInfo { econtent_type, econtent: Some(econtent) };
    let digest = AlgorithmIdentifierOwned { oid: signer.algorithm().digest_oid(), parameters: None };
    let sid = SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
        issuer: cert.tbs_certificate().issuer().clone(),
        serial_number: cert.tbs_certificate().serial_number().clone(),
    });
    let sign_err = |e: &dyn std::fmt::Display| SignatureError::Sign(e.to_string());
    let mut si = SignerInfoBuilder::new(sid, digest.clone(), &eci, None).map_err(|e| sign_err(&e))?;
    si.add_signed_attribute(create_signing_time_attribute().map_err(|e| sign_err(&e))?)
        .map_err(|e| sign_err(&e))?;
    let mut builder = SignedDataBuilder::new(&eci);
    builder.add_digest_algorithm(digest).map_err(|e| sign_err(&e))?;
    for c in chain {
        builder.add_certificate(CertificateChoices::Certificate(c.clone())).map_err(|e| sign_err(&e))?;
    }
    builder.add_signer_info::<_, DerSig>(si, &X509Signer(signer)).map_err(|e| sign_err(&e))?;
    let ci = builder.build().map_err(|e| sign_err(&e))?;
    Ok(ci.to_der()?)
}

impl CmsSigned {
    /// Parses DER or BER ContentInfo(SignedData) with encapsulated content.
    pub fn parse(bytes: &[u8]) -> Result<Self, SignatureError> {
        check_size(bytes.len())?;
        let der = match ContentInfo::from_der(bytes) {
            Ok(_) => bytes.to_vec(),
            Err(e) if matches!(e.kind(), der::ErrorKind::TrailingData { .. }) => {
                return Err(SignatureError::TrailingData)
            }
            Err(_) => ber::to_der(bytes).map_err(|e| match e {
                ber::BerError::Truncated => SignatureError::Truncated,
                ber::BerError::TrailingData => SignatureError::TrailingData,
                other => SignatureError::Malformed(other.to_string()),
            })?,
        };
        let ci = ContentInfo::from_der(&der)?;
        if ci.content_type != ID_SIGNED_DATA {
            return Err(SignatureError::WrongContentType(format!(
                "ContentInfo type {} is not signedData",
                ci.content_type
            )));
        }
        let signed_data: SignedData = ci.content.decode_as()?;
        let content = match &signed_data.encap_content_info.econtent {
            Some(any) => OctetString::from_der(&any.to_der()?)
                .map(|o| o.as_bytes().to_vec())
                .map_err(|_| SignatureError::Malformed("eContent is not an OCTET STRING".into()))?,
            None => return Err(SignatureError::NoContent),
        };
        Ok(CmsSigned { signed_data, content })
    }

    /// The eContentType.
    pub fn econtent_type(&self) -> ObjectIdentifier {
        self.signed_data.encap_content_info.econtent_type
    }

    /// The content bytes, unverified: for display only (`brski voucher inspect`).
    pub fn unverified_content(&self) -> &[u8] {
        &self.content
    }

    /// Certificates carried in the SignedData.
    pub fn certificates(&self) -> Vec<Certificate> {
        let Some(set) = &self.signed_data.certificates else { return Vec::new() };
        set.0
            .iter()
            .filter_map(|c| match c {
                CertificateChoices::Certificate(c) => Some(c.clone()),
                _ => None,
            })
            .collect()
    }

    /// Verifies the single signer and its path; `accepted` lists acceptable eContentTypes.
    pub fn verify(
        &self,
        trust: &Trust,
        accepted: &[ObjectIdentifier],
    ) -> Result<Verified<Vec<u8>>, SignatureError> {
        let ect = self.econtent_type();
        if !accepted.contains(&ect) {
            return Err(SignatureError::WrongContentType(format!(
                "eContentType {ect} is not acceptable here"
            )));
        }
        let infos: Vec<&SignerInfo> = self.signed_data.signer_infos.0.iter().collect();
        let [si] = infos.as_slice() else { return Err(SignatureError::SignerCount(infos.len())) };
        let signed_bytes = self.signed_bytes(si)?;
        let sig = si.signature.as_bytes();
        let sig_alg = signature_oid(si)?;
        let embedded = self.certificates();
        let candidates: Vec<Certificate> = embedded
            .iter()
            .chain(trust.anchors.iter())
            .filter(|c| matches_sid(c, &si.sid))
            .cloned()
            .collect();
        let path = resolve_signer(
            &candidates,
            &embedded,
            &Trust { anchors: trust.anchors.clone(), at: trust.at },
            |k| k.verify_x509(&sig_alg, &signed_bytes, sig),
        )?;
        Ok(verified(self.content.clone(), path))
    }

    /// The bytes the signature covers: DER SET OF signed attributes (after checking
    /// contentType and messageDigest), or the content itself when there are none.
    fn signed_bytes(&self, si: &SignerInfo) -> Result<Vec<u8>, SignatureError> {
        let Some(attrs) = &si.signed_attrs else {
            if self.econtent_type() != ID_DATA {
                return Err(SignatureError::MissingSignedAttrs);
            }
            return Ok(self.content.clone());
        };
        let hash = Hash::from_oid(&si.digest_alg.oid)
            .ok_or_else(|| SignatureError::Unsupported(format!("digest {}", si.digest_alg.oid)))?;
        let value_of =
            |oid| attrs.iter().find(|a| a.oid == oid).and_then(|a| a.values.iter().next().cloned());
        let ct = value_of(ID_CONTENT_TYPE).ok_or(SignatureError::ContentTypeMismatch)?;
        if ct.decode_as::<ObjectIdentifier>().ok() != Some(self.econtent_type()) {
            return Err(SignatureError::ContentTypeMismatch);
        }
        let md = value_of(ID_MESSAGE_DIGEST).ok_or(SignatureError::DigestMismatch)?;
        let md = md.decode_as::<OctetString>().map_err(|_| SignatureError::DigestMismatch)?;
        let expected = hash.digest(&self.content);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(md.as_bytes(), expected.as_slice())) {
            return Err(SignatureError::DigestMismatch);
        }
        Ok(attrs.to_der()?)
    }
}

/// The signature algorithm, resolving producers that put a bare key OID there.
fn signature_oid(si: &SignerInfo) -> Result<ObjectIdentifier, SignatureError> {
    use const_oid::db::rfc5912;
    let oid = si.signature_algorithm.oid;
    if oid != rfc5912::ID_EC_PUBLIC_KEY {
        return Ok(oid);
    }
    match Hash::from_oid(&si.digest_alg.oid) {
        Some(Hash::Sha256) => Ok(rfc5912::ECDSA_WITH_SHA_256),
        Some(Hash::Sha384) => Ok(rfc5912::ECDSA_WITH_SHA_384),
        Some(Hash::Sha512) => Ok(rfc5912::ECDSA_WITH_SHA_512),
        None => Err(SignatureError::Unsupported(format!("digest {}", si.digest_alg.oid))),
    }
}

fn matches_sid(cert: &Certificate, sid: &SignerIdentifier) -> bool {
    match sid {
        SignerIdentifier::IssuerAndSerialNumber(ias) => {
            cert.tbs_certificate().issuer() == &ias.issuer
                && cert.tbs_certificate().serial_number() == &ias.serial_number
        }
        SignerIdentifier::SubjectKeyIdentifier(ski) => crate::pki::subject_key_id(cert) == ski.0.as_bytes(),
    }
}
