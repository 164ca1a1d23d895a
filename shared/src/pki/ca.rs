//! A certificate authority: a CA certificate plus the [`Signer`] holding its key, issuing
//! certificates from verified CSRs (or from a bare public key) under a [`Profile`].

use super::idevid::subject_key_id;
use super::profile::{KeyUsageBit, Profile, San, SubjectRule};
use super::signer_adapter::{DerSig, X509Signer};
use super::{names::parse_name, PkiError};
use crate::keys::Signer;
use crate::verified::Verified;
use const_oid::db::rfc4519::{COMMON_NAME, SERIAL_NUMBER};
use der::asn1::{Ia5String, OctetString};
use der::{Decode, Encode};
use spki::{SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef};
use std::time::{Duration, SystemTime};
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::certificate::TbsCertificate;
use x509_cert::ext::pkix::name::DirectoryString;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages, SubjectAltName,
    SubjectKeyIdentifier,
};
use x509_cert::ext::{Extension, ToExtension};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};
use x509_cert::Certificate;

use super::csr::Csr;

/// A CA certificate and its signing key.
pub struct CertificateAuthority {
    cert: Certificate,
    signer: Box<dyn Signer>,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CertificateAuthority({})", self.cert.tbs_certificate().subject())
    }
}

impl CertificateAuthority {
    /// Pairs a CA certificate with its key, checking that they belong together.
    pub fn new(cert: Certificate, signer: Box<dyn Signer>) -> Result<Self, PkiError> {
        if super::spki_der(&cert) != signer.public_key_der() {
            return Err(PkiError::KeyMismatch);
        }
        Ok(CertificateAuthority { cert, signer })
    }

    /// The CA certificate.
    pub fn certificate(&self) -> &Certificate {
        &self.cert
    }

    /// The CA's key.
    pub fn signer(&self) -> &dyn Signer {
        self.signer.as_ref()
    }

    /// Issues a certificate for a verified CSR under `profile`.
    pub fn issue(&self, csr: &Verified<Csr>, profile: &Profile) -> Result<Certificate, PkiError> {
        let subject = subject_for(csr, &profile.subject)?;
        let mut san = if profile.copy_csr_san { csr.requested_san() } else { Vec::new() };
        san.extend(profile.san.iter().cloned());
        let spki = SubjectPublicKeyInfoOwned::from_der(&csr.public_key_der())?;
        self.issue_for_key(spki, subject, &san, profile)
    }

    /// Issues a certificate binding `spki` to `subject` (used when the CA generated the key,
    /// e.g. when the MASA mints IDevIDs, or EST server-side key generation).
    pub fn issue_for_key(
        &self,
        spki: SubjectPublicKeyInfoOwned,
        subject: Name,
        san: &[San],
        profile: &Profile,
    ) -> Result<Certificate, PkiError> {
        let issuer = self.cert.tbs_certificate().subject().clone();
        let aki = subject_key_id(&self.cert);
        let spec = CertSpec { issuer, subject, aki: Some(aki), san: san.to_vec(), profile: profile.clone() };
        build(spec, spki, self.signer.as_ref())
    }
}

/// Creates a self-signed CA certificate for `signer`'s key, e.g. `create_ca("CN=Example
/// Manufacturer CA", key, 20 years, None)`.
pub fn create_ca(
    subject: &str,
    signer: &dyn Signer,
    validity: Duration,
    path_len: Option<u8>,
) -> Result<Certificate, PkiError> {
    let name = parse_name(subject)?;
    let spki = SubjectPublicKeyInfoOwned::from_der(&signer.public_key_der())?;
    let profile = Profile::certificate_authority(validity, path_len);
    let spec = CertSpec { issuer: name.clone(), subject: name, aki: None, san: Vec::new(), profile };
    build(spec, spki, signer)
}

fn subject_for(csr: &Csr, rule: &SubjectRule) -> Result<Name, PkiError> {
    match rule {
        SubjectRule::FromCsr => Ok(csr.subject().clone()),
        SubjectRule::Template(t) => {
            let lookup = |oid| -> Option<String> {
                csr.subject().by_oid::<DirectoryString>(oid).ok().flatten().map(|d| d.value().to_string())
            };
            let mut out = t.clone();
            for (placeholder, oid) in [("{cn}", COMMON_NAME), ("{serialNumber}", SERIAL_NUMBER)] {
                if out.contains(placeholder) {
                    let v = lookup(oid).ok_or_else(|| {
                        PkiError::Refused(format!(
                            "subject template needs {placeholder} but the CSR has none"
                        ))
                    })?;
                    out = out.replace(placeholder, &escape_rdn_value(&v));
                }
            }
            parse_name(&out)
        }
    }
}

/// Escapes an attribute value for an RFC 4514 string.
fn escape_rdn_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
            || (i == 0 && matches!(c, '#' | ' '))
            || (i + 1 == v.chars().count() && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Everything about a certificate to be built except its key and serial.
struct CertSpec {
    issuer: Name,
    subject: Name,
    /// The issuer's key identifier for the AKI (None: self-signed, AKI = own SKI).
    aki: Option<Vec<u8>>,
    san: Vec<San>,
    profile: Profile,
}

/// The x509-cert builder profile: issuer, subject and the extension list we computed.
struct Plan {
    issuer: Name,
    subject: Name,
    extensions: Vec<Extension>,
}

impl x509_cert::builder::profile::BuilderProfile for Plan {
    fn get_issuer(&self, _subject: &Name) -> Name {
        self.issuer.clone()
    }
    fn get_subject(&self) -> Name {
        self.subject.clone()
    }
    fn build_extensions(
        &self,
        _spk: SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: SubjectPublicKeyInfoRef<'_>,
        _tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        Ok(self.extensions.clone())
    }
}

fn build(
    spec: CertSpec,
    spki: SubjectPublicKeyInfoOwned,
    signer: &dyn Signer,
) -> Result<Certificate, PkiError> {
    let now = SystemTime::now();
    let not_before = Time::try_from(now - spec.profile.backdate)?;
    let not_after = Time::try_from(now + spec.profile.validity)?;
    let validity = Validity::new(not_before, not_after);
    let extensions = extensions_for(&spec, &spki)?;
    let plan = Plan { issuer: spec.issuer, subject: spec.subject, extensions };
    let builder = CertificateBuilder::new(plan, random_serial()?, validity, spki)
        .map_err(|e| PkiError::Der(e.to_string()))?;
    builder.build::<_, DerSig>(&X509Signer(signer)).map_err(|e| PkiError::Sign(e.to_string()))
}

/// A random positive serial number of 127 bits (RFC 5280 allows up to 20 octets; BRSKI
/// DESIGN asks for at least 64 random bits).
pub(crate) fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| PkiError::Sign(format!("random source: {e}")))?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x40; // keep the full length so the serial always carries 127 bits
    Ok(SerialNumber::new(&bytes)?)
}

fn extensions_for(spec: &CertSpec, spki: &SubjectPublicKeyInfoOwned) -> Result<Vec<Extension>, PkiError> {
    let subject = &spec.subject;
    let p = &spec.profile;
    let mut exts: Vec<Extension> = Vec::new();
    let own_ski = spki_key_id(spki)?;
    let ski = SubjectKeyIdentifier(OctetString::new(own_ski.clone())?);
    exts.push(ski.to_extension(subject, &exts)?);
    let aki_id = spec.aki.clone().unwrap_or(own_ski);
    let aki =
        AuthorityKeyIdentifier { key_identifier: Some(OctetString::new(aki_id)?), ..Default::default() };
    exts.push(aki.to_extension(subject, &exts)?);
    let bc = BasicConstraints { ca: p.ca.is_some(), path_len_constraint: p.ca.flatten() };
    exts.push(bc.to_extension(subject, &exts)?);
    if !p.key_usage.is_empty() {
        let ku = KeyUsage(p.key_usage.iter().fold(Default::default(), |acc, b| acc | key_usage_flag(*b)));
        exts.push(ku.to_extension(subject, &exts)?);
    }
    if !p.extended_key_usage.is_empty() {
        exts.push(ExtendedKeyUsage(p.extended_key_usage.clone()).to_extension(subject, &exts)?);
    }
    if !spec.san.is_empty() {
        let names = spec.san.iter().map(San::to_general_name).collect::<Result<Vec<_>, _>>()?;
        exts.push(SubjectAltName(names).to_extension(subject, &exts)?);
    }
    exts.extend(p.extra_extensions.iter().cloned());
    Ok(exts)
}

fn spki_key_id(spki: &SubjectPublicKeyInfoOwned) -> Result<Vec<u8>, PkiError> {
    use sha1::Digest;
    Ok(sha1::Sha1::digest(spki.subject_public_key.raw_bytes()).to_vec())
}

fn key_usage_flag(b: KeyUsageBit) -> der::flagset::FlagSet<KeyUsages> {
    match b {
        KeyUsageBit::DigitalSignature => KeyUsages::DigitalSignature.into(),
        KeyUsageBit::KeyEncipherment => KeyUsages::KeyEncipherment.into(),
        KeyUsageBit::KeyAgreement => KeyUsages::KeyAgreement.into(),
        KeyUsageBit::KeyCertSign => KeyUsages::KeyCertSign.into(),
        KeyUsageBit::CrlSign => KeyUsages::CRLSign.into(),
    }
}

/// Builds the id-pe-masa-url extension (non-critical, IA5String) for an IDevID profile.
pub fn masa_url_extension(url: &str) -> Result<Extension, PkiError> {
    let value = Ia5String::new(url)?.to_der()?;
    Ok(Extension {
        extn_id: super::IDEVID_MASA_URL_OID,
        critical: false,
        extn_value: OctetString::new(value)?,
    })
}
