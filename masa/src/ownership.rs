//! Ownership records: which domain owns which serial number, kept in the store as
//! `masa.owner.<serial>` JSON. An owner is named by its domain CA certificate or by the SHA-256
//! of a public key (SubjectPublicKeyInfo) in its chain; a record may expire, and an expired
//! record counts as no record. `claim` adds or replaces a record (the sales channel's job in a
//! real manufacturer).

use crate::error::MasaError;
use crate::state::Masa;
use serde::{Deserialize, Serialize};
use shared::pki::{self, verify_chain};
use shared::rfc3339;
use shared::store::{AuditEvent, StoreExt};
use time::OffsetDateTime;
use x509_cert::Certificate;

/// Store setting prefix of ownership records.
pub(crate) const OWNER_PREFIX: &str = "masa.owner.";

/// How an owner is recognised.
// A certificate is large next to a hash, but records are few and short-lived in memory; an
// unboxed certificate keeps `Owner::DomainCa(cert)` simple for callers.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// The owner's domain CA: a registrar whose chain leads to it is the owner; it is the
    /// voucher's pinned-domain-cert.
    DomainCa(Certificate),
    /// SHA-256 of a SubjectPublicKeyInfo: a registrar whose chain contains a certificate with
    /// that key (and chains to it) is the owner; that certificate is pinned.
    PubkSha256([u8; 32]),
}

impl Owner {
    /// Parses a 64-hex-digit SHA-256 (colons and spaces allowed).
    pub fn from_sha256_hex(text: &str) -> Result<Owner, MasaError> {
        let compact: String = text.chars().filter(|c| !matches!(c, ':' | ' ')).collect();
        let bytes = hex::decode(&compact).ok().and_then(|b| <[u8; 32]>::try_from(b).ok());
        bytes.map(Owner::PubkSha256).ok_or_else(|| {
            MasaError::Invalid(format!("'{text}' is not a SHA-256 (64 hex digits) of a public key"))
        })
    }

    /// A one-line description for output and audit.
    pub fn describe(&self) -> String {
        match self {
            Owner::DomainCa(c) => format!("domain CA '{}'", c.tbs_certificate().subject()),
            Owner::PubkSha256(h) => format!("public key SHA-256 {}", hex::encode(h)),
        }
    }
}

/// One ownership record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerRecord {
    /// The device serial number.
    pub serial: String,
    /// Who owns it.
    pub owner: Owner,
    /// When the record stops counting (`None`: never).
    pub expires: Option<OffsetDateTime>,
    /// When it was recorded.
    pub claimed_at: OffsetDateTime,
}

impl OwnerRecord {
    /// Whether the record counts at `at` (not expired).
    pub fn is_current(&self, at: OffsetDateTime) -> bool {
        self.expires.is_none_or(|e| at < e)
    }

    /// If `chain` (end entity first, then its chain) belongs to this owner at `at`: the
    /// certificate to pin (the domain CA, or the certificate holding the recorded key).
    /// The chain is validated from its first certificate to that certificate, with the rest of
    /// `chain` and `pool` as intermediates.
    pub fn matches(
        &self,
        chain: &[Certificate],
        pool: &[Certificate],
        at: OffsetDateTime,
    ) -> Option<Certificate> {
        let leaf = chain.first()?;
        let intermediates: Vec<Certificate> = chain[1..].iter().chain(pool).cloned().collect();
        let leads_to = |anchor: &Certificate| {
            verify_chain(leaf, &intermediates, std::slice::from_ref(anchor), at).is_ok()
        };
        match &self.owner {
            Owner::DomainCa(ca) => leads_to(ca).then(|| ca.clone()),
            Owner::PubkSha256(h) => chain
                .iter()
                .chain(pool)
                .find(|c| shared::crypto::sha256(&pki::spki_der(c)) == *h && leads_to(c))
                .cloned(),
        }
    }
}

/// The JSON form in the store.
#[derive(Debug, Serialize, Deserialize)]
struct StoredRecord {
    serial: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    domain_ca: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pubk_sha256: Option<String>,
    #[serde(default)]
    expires: Option<String>,
    claimed_at: String,
}

impl StoredRecord {
    fn from_record(r: &OwnerRecord) -> Result<Self, MasaError> {
        let (domain_ca, pubk_sha256) = match &r.owner {
            Owner::DomainCa(c) => (Some(shared::b64::encode(&pki::cert_to_der(c)?)), None),
            Owner::PubkSha256(h) => (None, Some(hex::encode(h))),
        };
        Ok(StoredRecord {
            serial: r.serial.clone(),
            domain_ca,
            pubk_sha256,
            expires: r.expires.as_ref().map(rfc3339::format),
            claimed_at: rfc3339::format(&r.claimed_at),
        })
    }

    fn into_record(self) -> Result<OwnerRecord, MasaError> {
        let corrupt = |what: &str| MasaError::Store(format!("ownership record of {}: {what}", self.serial));
        let owner = match (&self.domain_ca, &self.pubk_sha256) {
            (Some(b64), None) => {
                let der = shared::b64::decode_lenient(b64).map_err(|e| corrupt(&e))?;
                Owner::DomainCa(pki::cert_from_der(&der).map_err(|e| corrupt(&e.to_string()))?)
            }
            (None, Some(h)) => Owner::from_sha256_hex(h).map_err(|e| corrupt(&e.to_string()))?,
            _ => return Err(corrupt("needs exactly one of domain_ca and pubk_sha256")),
        };
        let time = |t: &str| rfc3339::parse(t).map_err(|_| corrupt("bad time"));
        Ok(OwnerRecord {
            owner,
            expires: self.expires.as_deref().map(time).transpose()?,
            claimed_at: time(&self.claimed_at)?,
            serial: self.serial,
        })
    }
}

impl Masa {
    /// Records (or replaces) the owner of a device this MASA minted.
    pub async fn claim(
        &self,
        serial: &str,
        owner: Owner,
        expires: Option<OffsetDateTime>,
    ) -> Result<OwnerRecord, MasaError> {
        if self.device(serial).await?.is_none() {
            return Err(MasaError::UnknownDevice(serial.to_string()));
        }
        let whole_seconds = |t: OffsetDateTime| t.replace_nanosecond(0).unwrap_or(t);
        let now = whole_seconds(OffsetDateTime::now_utc());
        let expires = expires.map(whole_seconds);
        let record = OwnerRecord { serial: serial.to_string(), owner, expires, claimed_at: now };
        let stored = StoredRecord::from_record(&record)?;
        self.store().put_setting_json(&format!("{OWNER_PREFIX}{serial}"), &stored).await?;
        let event = AuditEvent {
            actor: "masa".into(),
            action: "masa.owner.claimed".into(),
            subject: serial.to_string(),
            detail: serde_json::json!({
                "owner": record.owner.describe(),
                "expires": record.expires.as_ref().map(rfc3339::format),
            }),
            at: now,
        };
        self.store().append_audit(&event).await?;
        Ok(record)
    }

    /// The ownership record of `serial`, current or expired, if any.
    pub async fn owner_record(&self, serial: &str) -> Result<Option<OwnerRecord>, MasaError> {
        let stored: Option<StoredRecord> =
            self.store().get_setting_json(&format!("{OWNER_PREFIX}{serial}")).await?;
        stored.map(StoredRecord::into_record).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_hex_forms() {
        let h = "ab".repeat(32);
        assert_eq!(Owner::from_sha256_hex(&h).unwrap(), Owner::PubkSha256([0xab; 32]));
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(Owner::from_sha256_hex(&colons).unwrap(), Owner::PubkSha256([0xab; 32]));
        assert!(Owner::from_sha256_hex("abcd").is_err());
    }
}
