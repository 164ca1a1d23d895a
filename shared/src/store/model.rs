//! Records the store keeps, and the backend-independent rules for encoding
//! them: time text, canonical JSON, and the audit hash chain. A second backend
//! (PostgreSQL) reuses these so that hashes and texts agree across backends.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

use super::StoreError;

/// A certificate the registrar/EST CA issued. Insert-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCertificate {
    /// Serial number as hex of the DER INTEGER contents; unique in the store.
    /// Stored lower-case, compared case-insensitively.
    pub serial_hex: String,
    /// Issuer distinguished name as text.
    pub issuer: String,
    /// Subject distinguished name as text.
    pub subject: String,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// Issuance profile (e.g. `"ldevid"`, `"registrar-tls"`), for audit and
    /// re-enrollment rules.
    pub profile: String,
    /// The certificate, DER encoded, exactly as sent to the client.
    pub der: Vec<u8>,
    /// When it was issued.
    pub issued_at: OffsetDateTime,
}

/// Why a certificate was revoked: RFC 5280 §5.3.1 `CRLReason`, kept by code
/// so a CRL can be built from it directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RevocationReason {
    /// `unspecified (0)`.
    Unspecified,
    /// `keyCompromise (1)`.
    KeyCompromise,
    /// `cACompromise (2)`.
    CaCompromise,
    /// `affiliationChanged (3)`.
    AffiliationChanged,
    /// `superseded (4)`.
    Superseded,
    /// `cessationOfOperation (5)`.
    CessationOfOperation,
    /// `certificateHold (6)`.
    CertificateHold,
    /// `removeFromCRL (8)`.
    RemoveFromCrl,
    /// `privilegeWithdrawn (9)`.
    PrivilegeWithdrawn,
    /// `aACompromise (10)`.
    AaCompromise,
}

impl RevocationReason {
    /// The RFC 5280 `CRLReason` code.
    pub fn code(self) -> u8 {
        match self {
            Self::Unspecified => 0,
            Self::KeyCompromise => 1,
            Self::CaCompromise => 2,
            Self::AffiliationChanged => 3,
            Self::Superseded => 4,
            Self::CessationOfOperation => 5,
            Self::CertificateHold => 6,
            Self::RemoveFromCrl => 8,
            Self::PrivilegeWithdrawn => 9,
            Self::AaCompromise => 10,
        }
    }

    /// The reason for an RFC 5280 `CRLReason` code; `None` for codes RFC 5280
    /// does not define (7 is unused).
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::Unspecified,
            1 => Self::KeyCompromise,
            2 => Self::CaCompromise,
            3 => Self::AffiliationChanged,
            4 => Self::Superseded,
            5 => Self::CessationOfOperation,
            6 => Self::CertificateHold,
            8 => Self::RemoveFromCrl,
            9 => Self::PrivilegeWithdrawn,
            10 => Self::AaCompromise,
            _ => return None,
        })
    }
}

/// The revocation of one issued certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// Serial of the revoked certificate (lower-case hex).
    pub serial_hex: String,
    /// Why it was revoked.
    pub reason: RevocationReason,
    /// When it was revoked.
    pub revoked_at: OffsetDateTime,
}

/// Something a role did that must be answerable later: who, what, to whom.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// Who acted: a client certificate subject, an operator, a role name.
    pub actor: String,
    /// What was done, e.g. `"voucher.issued"`, `"cert.revoked"`.
    pub action: String,
    /// What it was done to, e.g. a pledge serial number or certificate serial;
    /// the key [`Store::audit_events`](super::Store::audit_events) filters on.
    pub subject: String,
    /// Further structured detail; stored as canonical JSON (object keys
    /// sorted), so it reads back with keys in sorted order.
    pub detail: Value,
    /// When it happened.
    pub at: OffsetDateTime,
}

/// A stored audit event with its place in the hash chain.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// Sequence number: 1 for the first record, then consecutive.
    pub seq: u64,
    /// The event as stored.
    pub event: AuditEvent,
    /// Hex SHA-256 of the previous record ([`AUDIT_GENESIS_HASH`] for seq 1).
    pub prev_hash: String,
    /// Hex SHA-256 binding this record to `prev_hash`.
    pub hash: String,
}

/// A voucher the MASA issued or a registrar/pledge received. Insert-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoucherRecord {
    /// The pledge's serial number the voucher names.
    pub serial_number: String,
    /// Free text naming the domain the voucher concerns, e.g. the registrar's
    /// domain or the pinned domain certificate's subject.
    pub domain: String,
    /// The voucher `assertion` (`"verified"`, `"logged"`, `"proximity"`, …).
    pub assertion: String,
    /// The nonce the voucher carries, if any.
    pub nonce: Option<Vec<u8>>,
    /// Encoding of `bytes`, e.g. `"cms-json"`, `"jws-json"`, `"cose"`.
    pub format: String,
    /// The signed voucher exactly as sent or received.
    pub bytes: Vec<u8>,
    /// When it was created or received.
    pub created_at: OffsetDateTime,
}

/// Hash that stands in for "previous record" before the first audit record.
pub const AUDIT_GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Domain separation tag at the start of every audit hash input.
const AUDIT_HASH_TAG: &[u8] = b"brski-audit-v1\0";

/// Fixed-width RFC 3339 form the store writes. Fixed width (always six
/// fraction digits, always `Z`) makes text order equal time order, which the
/// SQL comparisons on expiry rely on.
const STORE_TIME_FORMAT: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// The time as the store keeps it: in UTC, truncated to whole microseconds.
/// Values read back from the store equal `normalize_time` of what was written.
pub fn normalize_time(t: OffsetDateTime) -> OffsetDateTime {
    let utc = t.to_offset(UtcOffset::UTC);
    utc.replace_microsecond(utc.microsecond()).unwrap_or(utc)
}

/// Encodes a time as the store's RFC 3339 text (see [`normalize_time`]).
/// Fails for years outside 0000–9999, which RFC 3339 cannot express.
pub fn format_time(t: OffsetDateTime, what: &str) -> Result<String, StoreError> {
    let t = normalize_time(t);
    if !(0..=9999).contains(&t.year()) {
        return Err(StoreError::Invalid(format!(
            "{what} {t} is outside the years 0000-9999 that RFC 3339 can express"
        )));
    }
    t.format(STORE_TIME_FORMAT)
        .map_err(|e| StoreError::Invalid(format!("{what} {t} cannot be formatted: {e}")))
}

/// Decodes RFC 3339 text read from the store.
pub fn parse_time(text: &str, what: &str) -> Result<OffsetDateTime, StoreError> {
    crate::rfc3339::parse(text)
        .map(normalize_time)
        .map_err(|e| StoreError::Corrupt { what: format!("{what} `{text}` is not RFC 3339: {e}") })
}

/// Canonical JSON text: object keys sorted at every depth, no whitespace.
/// Independent of serde_json's `preserve_order` feature.
pub fn canonical_json(value: &Value) -> Result<String, StoreError> {
    serde_json::to_string(&sorted(value))
        .map_err(|e| StoreError::Invalid(format!("audit detail cannot be encoded: {e}")))
}

fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let mut out = Map::new();
            for (k, v) in entries {
                out.insert(k.clone(), sorted(v));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// One audit row exactly as stored (texts as written), the input to the hash.
pub struct AuditRowText<'a> {
    /// Sequence number (1, 2, ...).
    pub seq: u64,
    /// The event time as stored ([`format_time`]).
    pub at: &'a str,
    /// Who acted.
    pub actor: &'a str,
    /// What was done.
    pub action: &'a str,
    /// Whom or what it concerns (e.g. a serial number).
    pub subject: &'a str,
    /// The detail as canonical JSON text ([`canonical_json`]).
    pub detail: &'a str,
}

/// Hex SHA-256 over `tag || len(prev_hash) prev_hash || seq || len(f) f …`
/// for the fields at, actor, action, subject, detail; every length and the
/// sequence number as 8-byte big-endian. Length prefixes make the encoding
/// unambiguous, so no two different rows hash the same input.
pub fn audit_hash(prev_hash: &str, row: &AuditRowText<'_>) -> String {
    let mut h = Sha256::new();
    h.update(AUDIT_HASH_TAG);
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    };
    field(prev_hash.as_bytes());
    field(&row.seq.to_be_bytes());
    field(row.at.as_bytes());
    field(row.actor.as_bytes());
    field(row.action.as_bytes());
    field(row.subject.as_bytes());
    field(row.detail.as_bytes());
    hex::encode(h.finalize())
}

/// Checks audit rows fed in sequence order, from the first.
pub struct AuditChainVerifier {
    rows: u64,
    prev_hash: String,
}

impl Default for AuditChainVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl AuditChainVerifier {
    /// A verifier expecting sequence 1 after the genesis hash.
    pub fn new() -> Self {
        Self { rows: 0, prev_hash: AUDIT_GENESIS_HASH.to_owned() }
    }

    /// Checks the next row; `stored_prev` and `stored_hash` are the row's
    /// stored chain columns.
    pub fn check(
        &mut self,
        row: &AuditRowText<'_>,
        stored_prev: &str,
        stored_hash: &str,
    ) -> Result<(), StoreError> {
        let expected_seq = self.rows + 1;
        if row.seq != expected_seq {
            // A gap (deleted row) or a row inserted out of order: report the
            // first sequence number that is not where it should be.
            return Err(StoreError::ChainBroken {
                seq: expected_seq.min(row.seq),
                reason: "sequence numbers are not consecutive (a record was removed or inserted)",
            });
        }
        if stored_prev != self.prev_hash {
            return Err(StoreError::ChainBroken {
                seq: row.seq,
                reason: "prev_hash does not match the previous record's hash",
            });
        }
        if audit_hash(stored_prev, row) != stored_hash {
            return Err(StoreError::ChainBroken {
                seq: row.seq,
                reason: "record content does not match its hash (the record was altered)",
            });
        }
        self.rows = row.seq;
        self.prev_hash = stored_hash.to_owned();
        Ok(())
    }

    /// Number of rows checked so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn store_time_text_is_fixed_width_and_ordered() {
        let a = format_time(datetime!(2024-01-01 00:00:00 UTC), "t").expect("format");
        let b = format_time(datetime!(2024-01-01 00:00:00.5 UTC), "t").expect("format");
        assert_eq!(a, "2024-01-01T00:00:00.000000Z");
        assert_eq!(b, "2024-01-01T00:00:00.500000Z");
        assert!(a < b, "text order must equal time order");
        let offset = format_time(datetime!(2024-01-01 02:00:00 +02:00), "t").expect("format");
        assert_eq!(offset, a, "times are stored in UTC");
        assert_eq!(parse_time(&b, "t").expect("parse"), datetime!(2024-01-01 00:00:00.5 UTC));
    }

    #[test]
    fn times_are_truncated_to_microseconds() {
        let t = datetime!(2024-05-06 07:08:09.123456789 UTC);
        assert_eq!(normalize_time(t), datetime!(2024-05-06 07:08:09.123456 UTC));
        let text = format_time(t, "t").expect("format");
        assert_eq!(parse_time(&text, "t").expect("parse"), normalize_time(t));
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let v = serde_json::json!({"b": 1, "a": {"z": [ {"y": 1, "x": 2} ], "c": null}});
        assert_eq!(canonical_json(&v).expect("json"), r#"{"a":{"c":null,"z":[{"x":2,"y":1}]},"b":1}"#);
    }

    #[test]
    fn audit_hash_depends_on_every_field() {
        let row = AuditRowText {
            seq: 1,
            at: "2024-01-01T00:00:00.000000Z",
            actor: "a",
            action: "b",
            subject: "c",
            detail: "{}",
        };
        let h = audit_hash(AUDIT_GENESIS_HASH, &row);
        assert_eq!(h.len(), 64);
        // Moving a byte between adjacent fields must change the hash.
        let shifted = AuditRowText { actor: "ab", action: "", ..row };
        assert_ne!(h, audit_hash(AUDIT_GENESIS_HASH, &shifted));
        let reseq = AuditRowText { seq: 2, ..row };
        assert_ne!(h, audit_hash(AUDIT_GENESIS_HASH, &reseq));
    }

    #[test]
    fn revocation_codes_round_trip() {
        for code in 0..=12u8 {
            match RevocationReason::from_code(code) {
                Some(r) => assert_eq!(r.code(), code),
                None => assert!(code == 7 || code > 10, "code {code}"),
            }
        }
    }
}
