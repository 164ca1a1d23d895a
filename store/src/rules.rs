//! The rules both backends apply to what they are given, so that a record means the same in
//! SQLite and PostgreSQL: certificate serials are 1-64 hex digits kept lower-case, setting keys
//! are bounded, counters fit the databases' signed 64-bit integers, and the audit chain is
//! verified a page at a time.

use shared::store::StoreError;

/// Longest accepted serial: RFC 5280 allows 20 octets, plus slack for a
/// leading zero octet and unusual issuers.
pub(crate) const MAX_SERIAL_HEX: usize = 64;
/// Longest accepted setting key, in bytes.
pub(crate) const MAX_SETTING_KEY: usize = 256;
/// Rows read per query while verifying the audit chain, bounding memory.
pub(crate) const VERIFY_PAGE: i64 = 1000;

/// Lower-cases a serial and checks it is non-empty hex of sane length.
pub(crate) fn normalize_serial(serial_hex: &str) -> Result<String, StoreError> {
    if serial_hex.is_empty() || serial_hex.len() > MAX_SERIAL_HEX {
        return Err(StoreError::Invalid(format!(
            "certificate serial must be 1 to {MAX_SERIAL_HEX} hex digits, got {} characters",
            serial_hex.len()
        )));
    }
    if !serial_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(StoreError::Invalid(format!("certificate serial `{serial_hex}` is not hex")));
    }
    Ok(serial_hex.to_ascii_lowercase())
}

pub(crate) fn check_setting_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() || key.len() > MAX_SETTING_KEY {
        return Err(StoreError::Invalid(format!(
            "setting key must be 1 to {MAX_SETTING_KEY} bytes, got {}",
            key.len()
        )));
    }
    Ok(())
}

pub(crate) fn to_i64(v: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Invalid(format!("{what} {v} is too large")))
}

pub(crate) fn seq_from_i64(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v)
        .map_err(|_| StoreError::Corrupt { what: format!("audit sequence number {v} is negative") })
}
