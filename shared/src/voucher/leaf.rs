//! The leaf table (voucher.md §2 and §3): every leaf of `ietf-voucher` and
//! `ietf-voucher-request`, its JSON name and its CBOR delta SID in each module, plus the two
//! traits through which the JSON and CBOR codecs read and write typed leaf values.

use time::OffsetDateTime;

use super::error::VoucherError;
use super::nonce::Nonce;
use super::vocab::{Assertion, Extension, Kind};

/// Every leaf of both modules. The first fifteen are the `ietf-voucher` leaves (which the
/// request module reuses); the rest exist only in `ietf-voucher-request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Leaf {
    /// `assertion`
    Assertion,
    /// `created-on`
    CreatedOn,
    /// `domain-cert-revocation-checks`
    DomainCertRevocationChecks,
    /// `expires-on`
    ExpiresOn,
    /// `idevid-issuer`
    IdevidIssuer,
    /// `last-renewal-date`
    LastRenewalDate,
    /// `nonce`
    Nonce,
    /// `pinned-domain-cert`
    PinnedDomainCert,
    /// `pinned-domain-pubk`
    PinnedDomainPubk,
    /// `pinned-domain-pubk-sha256`
    PinnedDomainPubkSha256,
    /// `serial-number`
    SerialNumber,
    /// `additional-configuration-url`
    AdditionalConfigurationUrl,
    /// `est-domain`
    EstDomain,
    /// `manufacturer-proprietary`
    ManufacturerProprietary,
    /// `extensions`
    Extensions,
    /// `prior-signed-voucher-request` (request only)
    PriorSignedVoucherRequest,
    /// `proximity-registrar-cert` (request only)
    ProximityRegistrarCert,
    /// `proximity-registrar-pubk-sha256` (request only)
    ProximityRegistrarPubkSha256,
    /// `proximity-registrar-pubk` (request only)
    ProximityRegistrarPubk,
    /// `agent-provided-proximity-registrar-cert` (request only)
    AgentProvidedProximityRegistrarCert,
    /// `agent-sign-cert` (request only)
    AgentSignCert,
    /// `agent-signed-data` (request only)
    AgentSignedData,
}

/// One row of the leaf table: member name, delta in `ietf-voucher` (SID − 2451; `None` for
/// request-only leaves), delta in `ietf-voucher-request` (SID − 2501).
type Row = (&'static str, Option<u64>, u64);

/// Every leaf in table order.
const ALL: [Leaf; 22] = [
    Leaf::Assertion,
    Leaf::CreatedOn,
    Leaf::DomainCertRevocationChecks,
    Leaf::ExpiresOn,
    Leaf::IdevidIssuer,
    Leaf::LastRenewalDate,
    Leaf::Nonce,
    Leaf::PinnedDomainCert,
    Leaf::PinnedDomainPubk,
    Leaf::PinnedDomainPubkSha256,
    Leaf::SerialNumber,
    Leaf::AdditionalConfigurationUrl,
    Leaf::EstDomain,
    Leaf::ManufacturerProprietary,
    Leaf::Extensions,
    Leaf::PriorSignedVoucherRequest,
    Leaf::ProximityRegistrarCert,
    Leaf::ProximityRegistrarPubkSha256,
    Leaf::ProximityRegistrarPubk,
    Leaf::AgentProvidedProximityRegistrarCert,
    Leaf::AgentSignCert,
    Leaf::AgentSignedData,
];

impl Leaf {
    /// Every leaf, in table order (the order the encoders emit JSON members in).
    pub fn all() -> impl Iterator<Item = Leaf> {
        ALL.into_iter()
    }

    /// voucher.md §2/§3, from the normative rfc8366bis SID files (2451–2466, 2501–2523).
    fn row(self) -> Row {
        match self {
            Leaf::Assertion => ("assertion", Some(1), 1),
            Leaf::CreatedOn => ("created-on", Some(2), 2),
            Leaf::DomainCertRevocationChecks => ("domain-cert-revocation-checks", Some(3), 3),
            Leaf::ExpiresOn => ("expires-on", Some(4), 4),
            Leaf::IdevidIssuer => ("idevid-issuer", Some(5), 5),
            Leaf::LastRenewalDate => ("last-renewal-date", Some(6), 6),
            Leaf::Nonce => ("nonce", Some(7), 7),
            Leaf::PinnedDomainCert => ("pinned-domain-cert", Some(8), 8),
            Leaf::PinnedDomainPubk => ("pinned-domain-pubk", Some(9), 17),
            Leaf::PinnedDomainPubkSha256 => ("pinned-domain-pubk-sha256", Some(10), 18),
            Leaf::SerialNumber => ("serial-number", Some(11), 13),
            Leaf::AdditionalConfigurationUrl => ("additional-configuration-url", Some(12), 19),
            Leaf::EstDomain => ("est-domain", Some(13), 20),
            Leaf::ManufacturerProprietary => ("manufacturer-proprietary", Some(14), 22),
            Leaf::Extensions => ("extensions", Some(15), 21),
            Leaf::PriorSignedVoucherRequest => ("prior-signed-voucher-request", None, 9),
            Leaf::ProximityRegistrarCert => ("proximity-registrar-cert", None, 10),
            Leaf::ProximityRegistrarPubkSha256 => ("proximity-registrar-pubk-sha256", None, 11),
            Leaf::ProximityRegistrarPubk => ("proximity-registrar-pubk", None, 12),
            Leaf::AgentProvidedProximityRegistrarCert => {
                ("agent-provided-proximity-registrar-cert", None, 14)
            }
            Leaf::AgentSignCert => ("agent-sign-cert", None, 15),
            Leaf::AgentSignedData => ("agent-signed-data", None, 16),
        }
    }

    /// The RFC 7951 member name (also the name used in name-keyed CBOR).
    pub fn name(self) -> &'static str {
        self.row().0
    }

    /// The CBOR delta SID of this leaf in `kind`'s container, or `None` if the leaf does not
    /// exist in that module.
    pub fn delta(self, kind: Kind) -> Option<u64> {
        match kind {
            Kind::Voucher => self.row().1,
            Kind::Request => Some(self.row().2),
        }
    }

    /// Whether the leaf belongs to `kind`'s module.
    pub fn in_module(self, kind: Kind) -> bool {
        self.delta(kind).is_some()
    }

    /// Leaves that RFC 8995 calls "not valid in a voucher request": receivers MUST ignore them.
    pub fn ignored_in_request(self) -> bool {
        matches!(self, Leaf::DomainCertRevocationChecks | Leaf::LastRenewalDate | Leaf::PinnedDomainCert)
    }

    /// The leaf of `kind`'s module with this member name.
    pub fn by_name(kind: Kind, name: &str) -> Option<Leaf> {
        Leaf::all().find(|l| l.name() == name && l.in_module(kind))
    }

    /// The leaf of `kind`'s module with this delta SID.
    pub fn by_delta(kind: Kind, delta: i128) -> Option<Leaf> {
        Leaf::all().find(|l| l.delta(kind).map(i128::from) == Some(delta))
    }
}

/// Reads one leaf value out of a format-specific data item, checking its type.
/// Implemented by the JSON and CBOR codecs; the `leaf` argument names the leaf in errors.
pub(crate) trait LeafReader {
    fn text(&self, leaf: Leaf) -> Result<String, VoucherError>;
    fn binary(&self, leaf: Leaf) -> Result<Vec<u8>, VoucherError>;
    fn binary_list(&self, leaf: Leaf) -> Result<Vec<Vec<u8>>, VoucherError>;
    fn boolean(&self, leaf: Leaf) -> Result<bool, VoucherError>;
    fn date(&self, leaf: Leaf) -> Result<OffsetDateTime, VoucherError>;
    fn assertion(&self, leaf: Leaf) -> Result<Assertion, VoucherError>;
    fn nonce(&self, leaf: Leaf) -> Result<Nonce, VoucherError>;
    fn extensions(&self, leaf: Leaf) -> Result<Vec<Extension>, VoucherError>;
}

/// Turns one typed leaf value into a format-specific data item.
pub(crate) trait LeafWriter {
    type Item;
    fn text(&self, value: &str) -> Self::Item;
    fn binary(&self, value: &[u8]) -> Self::Item;
    fn binary_list(&self, value: &[Vec<u8>]) -> Self::Item;
    fn boolean(&self, value: bool) -> Self::Item;
    fn date(&self, value: &OffsetDateTime) -> Self::Item;
    fn assertion(&self, value: Assertion) -> Self::Item;
    fn nonce(&self, value: &Nonce) -> Self::Item;
    fn extensions(&self, value: &[Extension]) -> Self::Item;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lists_every_leaf_once_with_unique_names() {
        let names: std::collections::HashSet<_> = Leaf::all().map(Leaf::name).collect();
        assert_eq!(names.len(), 22);
        let mut voucher: Vec<u64> = Leaf::all().filter_map(|l| l.delta(Kind::Voucher)).collect();
        voucher.sort_unstable();
        assert_eq!(voucher, (1..=15).collect::<Vec<_>>());
    }

    #[test]
    fn deltas_match_the_sid_files() {
        assert_eq!(Leaf::SerialNumber.delta(Kind::Voucher), Some(11));
        assert_eq!(Leaf::SerialNumber.delta(Kind::Request), Some(13));
        assert_eq!(Leaf::Extensions.delta(Kind::Voucher), Some(15));
        assert_eq!(Leaf::ManufacturerProprietary.delta(Kind::Request), Some(22));
        assert_eq!(Leaf::ProximityRegistrarCert.delta(Kind::Voucher), None);
        assert_eq!(Leaf::by_delta(Kind::Request, 12), Some(Leaf::ProximityRegistrarPubk));
        assert_eq!(Leaf::by_name(Kind::Voucher, "proximity-registrar-cert"), None);
        let mut req: Vec<u64> = Leaf::all().filter_map(|l| l.delta(Kind::Request)).collect();
        req.sort_unstable();
        assert_eq!(req, (1..=22).collect::<Vec<_>>());
    }
}
