//! The voucher data model: one struct for both `ietf-voucher:voucher` and
//! `ietf-voucher-request:voucher`, with every leaf of both modules as an optional field.

use std::collections::BTreeMap;

use time::OffsetDateTime;

use super::error::VoucherError;
use super::leaf::{Leaf, LeafReader, LeafWriter};
use super::nonce::Nonce;
use super::vocab::{Assertion, Extension, Kind};

/// Voucher data: the unsigned payload of a voucher or voucher-request.
///
/// Leaf fields are `None` when absent. Builders may set fields directly; the encoders emit only
/// the leaves that exist in `kind`'s module and never emit the three leaves RFC 8995 calls "not
/// valid in a voucher request" for a request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Voucher {
    /// Voucher or voucher-request.
    pub kind: Kind,
    /// The request was read from the legacy `ietf-voucher-request-prm:voucher` key; the JSON
    /// encoder writes that key back so a re-encoding is faithful.
    pub legacy_prm_key: bool,
    /// `assertion`
    pub assertion: Option<Assertion>,
    /// `created-on`
    pub created_on: Option<OffsetDateTime>,
    /// `domain-cert-revocation-checks` (always `None` in a decoded request: ignored there)
    pub domain_cert_revocation_checks: Option<bool>,
    /// `expires-on`
    pub expires_on: Option<OffsetDateTime>,
    /// `idevid-issuer`: AuthorityKeyIdentifier extnValue of the pledge's IDevID
    pub idevid_issuer: Option<Vec<u8>>,
    /// `last-renewal-date` (always `None` in a decoded request: ignored there)
    pub last_renewal_date: Option<OffsetDateTime>,
    /// `nonce`, as transported
    pub nonce: Option<Nonce>,
    /// `pinned-domain-cert`: DER certificate (always `None` in a decoded request: ignored there)
    pub pinned_domain_cert: Option<Vec<u8>>,
    /// `pinned-domain-pubk`: DER SubjectPublicKeyInfo
    pub pinned_domain_pubk: Option<Vec<u8>>,
    /// `pinned-domain-pubk-sha256`: SHA-256 of the SubjectPublicKeyInfo
    pub pinned_domain_pubk_sha256: Option<Vec<u8>>,
    /// `serial-number`
    pub serial_number: Option<String>,
    /// `additional-configuration-url`
    pub additional_configuration_url: Option<String>,
    /// `est-domain`
    pub est_domain: Option<String>,
    /// `manufacturer-proprietary`
    pub manufacturer_proprietary: Option<Vec<u8>>,
    /// `extensions`
    pub extensions: Option<Vec<Extension>>,
    /// `prior-signed-voucher-request` (request only)
    pub prior_signed_voucher_request: Option<Vec<u8>>,
    /// `proximity-registrar-cert` (request only)
    pub proximity_registrar_cert: Option<Vec<u8>>,
    /// `proximity-registrar-pubk-sha256` (request only)
    pub proximity_registrar_pubk_sha256: Option<Vec<u8>>,
    /// `proximity-registrar-pubk` (request only)
    pub proximity_registrar_pubk: Option<Vec<u8>>,
    /// `agent-provided-proximity-registrar-cert` (request only)
    pub agent_provided_proximity_registrar_cert: Option<Vec<u8>>,
    /// `agent-sign-cert` (request only): agent EE cert first, then its chain
    pub agent_sign_cert: Option<Vec<Vec<u8>>>,
    /// `agent-signed-data` (request only): UTF-8 bytes of a JWS
    pub agent_signed_data: Option<Vec<u8>>,
    /// JSON `extension:<module>` members, keyed by module name (JSON codec only).
    pub extension_data: BTreeMap<String, serde_json::Value>,
    /// CBOR extension sub-maps keyed by `47(<module SID>)` or by the name
    /// `extension:<module>` (CBOR codec only).
    pub cbor_extension_data: BTreeMap<Extension, ciborium::Value>,
    /// Unknown leaves skipped by a lenient decode: names, or `sid:<n>` for CBOR SIDs.
    pub unknown_leaves: Vec<String>,
    /// Known leaves that were present but are "not valid in a voucher request" and so ignored.
    pub ignored_leaves: Vec<String>,
}

impl Voucher {
    /// An empty voucher (or voucher-request) to fill in.
    pub fn new(kind: Kind) -> Self {
        Voucher { kind, ..Voucher::default() }
    }

    /// Reads one leaf (type-checked by `r`) into its field; a leaf that must be ignored in a
    /// request is checked, then only recorded in `ignored_leaves`.
    pub(crate) fn read_leaf(&mut self, leaf: Leaf, r: &impl LeafReader) -> Result<(), VoucherError> {
        if self.kind == Kind::Request && leaf.ignored_in_request() {
            let mut scratch = Voucher::new(Kind::Voucher);
            scratch.store(leaf, r)?;
            self.ignored_leaves.push(leaf.name().to_string());
            return Ok(());
        }
        self.store(leaf, r)
    }

    fn store(&mut self, leaf: Leaf, r: &impl LeafReader) -> Result<(), VoucherError> {
        match leaf {
            Leaf::Assertion => self.assertion = Some(r.assertion(leaf)?),
            Leaf::CreatedOn => self.created_on = Some(r.date(leaf)?),
            Leaf::DomainCertRevocationChecks => self.domain_cert_revocation_checks = Some(r.boolean(leaf)?),
            Leaf::ExpiresOn => self.expires_on = Some(r.date(leaf)?),
            Leaf::IdevidIssuer => self.idevid_issuer = Some(r.binary(leaf)?),
            Leaf::LastRenewalDate => self.last_renewal_date = Some(r.date(leaf)?),
            Leaf::Nonce => self.nonce = Some(r.nonce(leaf)?),
            Leaf::PinnedDomainCert => self.pinned_domain_cert = Some(r.binary(leaf)?),
            Leaf::PinnedDomainPubk => self.pinned_domain_pubk = Some(r.binary(leaf)?),
            Leaf::PinnedDomainPubkSha256 => self.pinned_domain_pubk_sha256 = Some(r.binary(leaf)?),
            Leaf::SerialNumber => self.serial_number = Some(r.text(leaf)?),
            Leaf::AdditionalConfigurationUrl => self.additional_configuration_url = Some(r.text(leaf)?),
            Leaf::EstDomain => self.est_domain = Some(r.text(leaf)?),
            Leaf::ManufacturerProprietary => self.manufacturer_proprietary = Some(r.binary(leaf)?),
            Leaf::Extensions => self.extensions = Some(r.extensions(leaf)?),
            Leaf::PriorSignedVoucherRequest => self.prior_signed_voucher_request = Some(r.binary(leaf)?),
            Leaf::ProximityRegistrarCert => self.proximity_registrar_cert = Some(r.binary(leaf)?),
            Leaf::ProximityRegistrarPubkSha256 => {
                self.proximity_registrar_pubk_sha256 = Some(r.binary(leaf)?)
            }
            Leaf::ProximityRegistrarPubk => self.proximity_registrar_pubk = Some(r.binary(leaf)?),
            Leaf::AgentProvidedProximityRegistrarCert => {
                self.agent_provided_proximity_registrar_cert = Some(r.binary(leaf)?)
            }
            Leaf::AgentSignCert => self.agent_sign_cert = Some(r.binary_list(leaf)?),
            Leaf::AgentSignedData => self.agent_signed_data = Some(r.binary(leaf)?),
        }
        Ok(())
    }

    /// The leaves to emit, in table order, each turned into a data item by `w`.
    pub(crate) fn write_leaves<W: LeafWriter>(&self, w: &W) -> Vec<(Leaf, W::Item)> {
        Leaf::all()
            .filter(|l| l.in_module(self.kind))
            .filter(|l| !(self.kind == Kind::Request && l.ignored_in_request()))
            .filter_map(|l| self.write_leaf(l, w).map(|item| (l, item)))
            .collect()
    }

    fn write_leaf<W: LeafWriter>(&self, leaf: Leaf, w: &W) -> Option<W::Item> {
        let bin = |v: &Option<Vec<u8>>| v.as_deref().map(|b| w.binary(b));
        let date = |v: &Option<OffsetDateTime>| v.as_ref().map(|d| w.date(d));
        let text = |v: &Option<String>| v.as_deref().map(|t| w.text(t));
        match leaf {
            Leaf::Assertion => self.assertion.map(|a| w.assertion(a)),
            Leaf::CreatedOn => date(&self.created_on),
            Leaf::DomainCertRevocationChecks => self.domain_cert_revocation_checks.map(|b| w.boolean(b)),
            Leaf::ExpiresOn => date(&self.expires_on),
            Leaf::IdevidIssuer => bin(&self.idevid_issuer),
            Leaf::LastRenewalDate => date(&self.last_renewal_date),
            Leaf::Nonce => self.nonce.as_ref().map(|n| w.nonce(n)),
            Leaf::PinnedDomainCert => bin(&self.pinned_domain_cert),
            Leaf::PinnedDomainPubk => bin(&self.pinned_domain_pubk),
            Leaf::PinnedDomainPubkSha256 => bin(&self.pinned_domain_pubk_sha256),
            Leaf::SerialNumber => text(&self.serial_number),
            Leaf::AdditionalConfigurationUrl => text(&self.additional_configuration_url),
            Leaf::EstDomain => text(&self.est_domain),
            Leaf::ManufacturerProprietary => bin(&self.manufacturer_proprietary),
            Leaf::Extensions => self.extensions.as_deref().map(|e| w.extensions(e)),
            Leaf::PriorSignedVoucherRequest => bin(&self.prior_signed_voucher_request),
            Leaf::ProximityRegistrarCert => bin(&self.proximity_registrar_cert),
            Leaf::ProximityRegistrarPubkSha256 => bin(&self.proximity_registrar_pubk_sha256),
            Leaf::ProximityRegistrarPubk => bin(&self.proximity_registrar_pubk),
            Leaf::AgentProvidedProximityRegistrarCert => bin(&self.agent_provided_proximity_registrar_cert),
            Leaf::AgentSignCert => self.agent_sign_cert.as_deref().map(|c| w.binary_list(c)),
            Leaf::AgentSignedData => bin(&self.agent_signed_data),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assertion_names_and_values() {
        for a in Assertion::ALL {
            assert_eq!(Assertion::from_name(a.name()), Some(a));
            assert_eq!(Assertion::from_value(a as i128), Some(a));
        }
        assert_eq!(Assertion::AgentProximity.name(), "agent-proximity");
        assert_eq!(Assertion::from_value(4), None);
        assert_eq!(Assertion::from_name("Logged"), None);
    }

    #[test]
    fn new_is_empty() {
        let v = Voucher::new(Kind::Request);
        assert_eq!(v.kind, Kind::Request);
        assert!(v.serial_number.is_none() && v.nonce.is_none());
        assert_eq!(Kind::Request.to_string(), "voucher-request");
    }
}
