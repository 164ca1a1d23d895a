//! Issuance profiles: what a certificate issued under a label or role looks like.

use const_oid::ObjectIdentifier;
use der::asn1::{Ia5String, OctetString};
use std::net::IpAddr;
use std::time::Duration;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::Extension;

/// A subjectAltName entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum San {
    /// dNSName.
    Dns(String),
    /// uniformResourceIdentifier (agent ids, SPIFFE-style URIs).
    Uri(String),
    /// iPAddress.
    Ip(IpAddr),
    /// rfc822Name.
    Email(String),
}

impl San {
    /// Reads a GeneralName of a kind brski uses (DNS, URI, IP, email); other kinds give None.
    pub fn from_general_name(g: &GeneralName) -> Option<San> {
        match g {
            GeneralName::DnsName(s) => Some(San::Dns(s.to_string())),
            GeneralName::UniformResourceIdentifier(s) => Some(San::Uri(s.to_string())),
            GeneralName::Rfc822Name(s) => Some(San::Email(s.to_string())),
            GeneralName::IpAddress(o) => match o.as_bytes().len() {
                4 => <[u8; 4]>::try_from(o.as_bytes()).ok().map(|b| San::Ip(b.into())),
                16 => <[u8; 16]>::try_from(o.as_bytes()).ok().map(|b| San::Ip(b.into())),
                _ => None,
            },
            _ => None,
        }
    }

    /// The X.509 GeneralName for this entry.
    pub fn to_general_name(&self) -> Result<GeneralName, der::Error> {
        Ok(match self {
            San::Dns(d) => GeneralName::DnsName(Ia5String::new(d)?),
            San::Uri(u) => GeneralName::UniformResourceIdentifier(Ia5String::new(u)?),
            San::Email(e) => GeneralName::Rfc822Name(Ia5String::new(e)?),
            San::Ip(IpAddr::V4(a)) => GeneralName::IpAddress(OctetString::new(a.octets().to_vec())?),
            San::Ip(IpAddr::V6(a)) => GeneralName::IpAddress(OctetString::new(a.octets().to_vec())?),
        })
    }
}

/// A keyUsage bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUsageBit {
    /// digitalSignature.
    DigitalSignature,
    /// keyEncipherment.
    KeyEncipherment,
    /// keyAgreement.
    KeyAgreement,
    /// keyCertSign.
    KeyCertSign,
    /// cRLSign.
    CrlSign,
}

/// How the subject of an issued certificate is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectRule {
    /// Copy the CSR's subject unchanged.
    FromCsr,
    /// An RFC 4514 template; `{cn}` and `{serialNumber}` are replaced with the CSR's values
    /// (e.g. `CN={cn},O=Example Campus`). A placeholder whose CSR value is missing is refused.
    Template(String),
}

/// An issuance profile: validity, key usages, subject and SAN rules, extra extensions.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Lifetime from issuance.
    pub validity: Duration,
    /// Backdating of notBefore to tolerate clock skew between CA and relying parties.
    pub backdate: Duration,
    /// keyUsage bits (an empty list omits the extension).
    pub key_usage: Vec<KeyUsageBit>,
    /// extendedKeyUsage OIDs (an empty list omits the extension).
    pub extended_key_usage: Vec<ObjectIdentifier>,
    /// The subject rule.
    pub subject: SubjectRule,
    /// Copy subjectAltName entries requested in the CSR's extensionRequest.
    pub copy_csr_san: bool,
    /// subjectAltName entries the profile always adds.
    pub san: Vec<San>,
    /// `Some(path_len)` issues a CA certificate (basicConstraints cA=TRUE).
    pub ca: Option<Option<u8>>,
    /// Further extensions added verbatim (e.g. id-pe-masa-url for IDevIDs).
    pub extra_extensions: Vec<Extension>,
}

impl Profile {
    /// An end-entity profile: digitalSignature, subject from the CSR, SANs copied.
    pub fn end_entity(validity: Duration) -> Self {
        Profile {
            validity,
            backdate: Duration::from_secs(60),
            key_usage: vec![KeyUsageBit::DigitalSignature],
            extended_key_usage: Vec::new(),
            subject: SubjectRule::FromCsr,
            copy_csr_san: true,
            san: Vec::new(),
            ca: None,
            extra_extensions: Vec::new(),
        }
    }

    /// A CA profile: keyCertSign + cRLSign, basicConstraints with the given path length.
    pub fn certificate_authority(validity: Duration, path_len: Option<u8>) -> Self {
        Profile {
            key_usage: vec![KeyUsageBit::KeyCertSign, KeyUsageBit::CrlSign, KeyUsageBit::DigitalSignature],
            ca: Some(path_len),
            copy_csr_san: false,
            ..Profile::end_entity(validity)
        }
    }
}
