//! The AgentOwnerBinding certificate extension: the owner goes in a non-critical extension
//! (never in a second URI SAN), carrying the OA bytes so a relying party can re-verify the
//! approval offline with the owner's key.
//!
//! The arc: `spec/agent-issuance.md` names the development arc
//! `2.25.222242884179250862114732153609567886793`. Its second arc is a 128-bit number, and
//! RustCrypto's `const-oid` (used by `x509-cert`, hence by every RustCrypto relying party)
//! limits arcs to 32 bits: a certificate carrying that OID fails to parse as a whole
//! (`ArcTooBig`), not just the extension. We therefore use the development arc
//! [`AID`] = `1.3.6.1.4.1.32473.8995` (under RFC 5612's documentation enterprise number) and
//! keep the spec's sub-arcs: `.1.1` for the extension, `.2.1`..`.2.3` for approval formats.
//! `docs/agent-issuance.md` records the change.

use super::{AgentError, Model};
use const_oid::ObjectIdentifier;
use der::asn1::{GeneralizedTime, Ia5String, OctetString};
use der::{Decode, Encode, Enumerated, Sequence};
use spki::SubjectPublicKeyInfoOwned;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::Extension;

/// The development arc (see the module documentation for why it differs from the draft spec).
pub const AID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.32473.8995");
/// id-agentOwnerBinding = AID.1.1.
pub const ID_AGENT_OWNER_BINDING: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.32473.8995.1.1");
/// approvalFormat: compact JWS (AID.2.1).
pub const APPROVAL_FORMAT_JWS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.32473.8995.2.1");
/// approvalFormat: WebAuthn assertion (AID.2.2).
pub const APPROVAL_FORMAT_WEBAUTHN: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.32473.8995.2.2");
/// approvalFormat: COSE_Sign1 (AID.2.3).
pub const APPROVAL_FORMAT_COSE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.32473.8995.2.3");

/// The model as an ASN.1 ENUMERATED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enumerated)]
#[repr(u32)]
pub enum BindingModel {
    /// Model 1.
    AgentMediated = 1,
    /// Model 2.
    OwnerMediated = 2,
    /// Model 3.
    ServerMediated = 3,
}

impl BindingModel {
    /// From the wire model (none has no binding).
    pub fn from_model(m: Model) -> Option<Self> {
        match m {
            Model::None => None,
            Model::AgentMediated => Some(BindingModel::AgentMediated),
            Model::OwnerMediated => Some(BindingModel::OwnerMediated),
            Model::ServerMediated => Some(BindingModel::ServerMediated),
        }
    }

    /// To the wire model.
    pub fn model(self) -> Model {
        match self {
            BindingModel::AgentMediated => Model::AgentMediated,
            BindingModel::OwnerMediated => Model::OwnerMediated,
            BindingModel::ServerMediated => Model::ServerMediated,
        }
    }
}

/// `AgentOwnerBinding ::= SEQUENCE { ... }` as in the spec (IMPLICIT tags for [0], [1]).
#[derive(Debug, Clone, PartialEq, Eq, Sequence)]
pub struct AgentOwnerBinding {
    /// 1.
    pub version: u8,
    /// The model.
    pub model: BindingModel,
    /// The owner id (a URI GeneralName; rfc822Name for a bare e-mail address).
    pub owner_id: GeneralName,
    /// The owner's public key.
    pub owner_key: SubjectPublicKeyInfoOwned,
    /// When the owner approved (the OA's iat).
    pub approved_at: GeneralizedTime,
    /// The grant's end.
    pub grant_not_after: GeneralizedTime,
    /// The approval's encoding.
    pub approval_format: ObjectIdentifier,
    /// The approval bytes.
    pub approval: OctetString,
    /// Model 2: SHA-256 of the gateway's certificate.
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", optional = "true")]
    pub org_credential_hash: Option<OctetString>,
    /// Model 3: the challenge hash.
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    pub challenge_hash: Option<OctetString>,
}

impl AgentOwnerBinding {
    /// The non-critical certificate extension carrying this binding.
    pub fn to_extension(&self) -> Result<Extension, AgentError> {
        let value = self.to_der().map_err(|e| AgentError::Sign(e.to_string()))?;
        Ok(Extension {
            extn_id: ID_AGENT_OWNER_BINDING,
            critical: false,
            extn_value: OctetString::new(value).map_err(|e| AgentError::Sign(e.to_string()))?,
        })
    }

    /// Decodes the extension value.
    pub fn from_der_value(der: &[u8]) -> Result<Self, AgentError> {
        let b = Self::from_der(der).map_err(|e| AgentError::malformed("AgentOwnerBinding", e))?;
        if b.version != 1 {
            return Err(AgentError::malformed("AgentOwnerBinding", format!("version {}", b.version)));
        }
        Ok(b)
    }

    /// The owner id as text.
    pub fn owner_id_text(&self) -> Option<String> {
        match &self.owner_id {
            GeneralName::UniformResourceIdentifier(u) => Some(u.to_string()),
            GeneralName::Rfc822Name(e) => Some(format!("mailto:{e}")),
            _ => None,
        }
    }
}

/// The GeneralName of an owner id (always a URI).
pub fn owner_general_name(owner_id: &str) -> Result<GeneralName, AgentError> {
    Ok(GeneralName::UniformResourceIdentifier(
        Ia5String::new(owner_id).map_err(|e| AgentError::malformed("owner id", e))?,
    ))
}

/// A GeneralizedTime from Unix seconds.
pub fn generalized_time(unix: i64) -> Result<GeneralizedTime, AgentError> {
    let secs = u64::try_from(unix).map_err(|_| AgentError::Time("time before 1970".into()))?;
    GeneralizedTime::from_unix_duration(std::time::Duration::from_secs(secs))
        .map_err(|e| AgentError::Time(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Algorithm, Signer, SoftwareKey};

    #[test]
    fn binding_round_trips_through_der() {
        let key = SoftwareKey::generate(Algorithm::Es256).unwrap();
        let b = AgentOwnerBinding {
            version: 1,
            model: BindingModel::ServerMediated,
            owner_id: owner_general_name("mailto:alice@example.com").unwrap(),
            owner_key: SubjectPublicKeyInfoOwned::from_der(&key.public_key_der()).unwrap(),
            approved_at: generalized_time(1_800_000_000).unwrap(),
            grant_not_after: generalized_time(1_800_086_400).unwrap(),
            approval_format: APPROVAL_FORMAT_JWS,
            approval: OctetString::new(b"a.b.c".to_vec()).unwrap(),
            org_credential_hash: None,
            challenge_hash: Some(OctetString::new(vec![7u8; 32]).unwrap()),
        };
        let ext = b.to_extension().unwrap();
        assert!(!ext.critical);
        let back = AgentOwnerBinding::from_der_value(ext.extn_value.as_bytes()).unwrap();
        assert_eq!(back, b);
        assert_eq!(back.owner_id_text().as_deref(), Some("mailto:alice@example.com"));
        // [1] IMPLICIT OCTET STRING is encoded with tag 0x81.
        assert!(ext.extn_value.as_bytes().windows(2).any(|w| w == [0x81, 32]));
    }
}
