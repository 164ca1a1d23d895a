//! Distinguished names from RFC 4514 strings, and the X520SerialNumber attribute IDevIDs carry.

use super::PkiError;
use const_oid::db::rfc4519::SERIAL_NUMBER;
use der::asn1::{Any, PrintableStringRef, SetOfVec, Utf8StringRef};
use der::{Decode, Encode};
use std::str::FromStr;
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};

/// Parses an RFC 4514 name such as `CN=Example CA,O=Example`.
pub fn parse_name(s: &str) -> Result<Name, PkiError> {
    Name::from_str(s).map_err(|e| PkiError::Der(format!("distinguished name '{s}': {e}")))
}

/// Builds `base` plus a serialNumber (2.5.4.5) RDN holding `serial`, as PrintableString when
/// the characters allow (X520SerialNumber), UTF8String otherwise.
pub fn name_with_serial(base: &str, serial: &str) -> Result<Name, PkiError> {
    let mut rdns = if base.is_empty() {
        RdnSequence::default()
    } else {
        RdnSequence::from_str(base).map_err(|e| PkiError::Der(format!("distinguished name '{base}': {e}")))?
    };
    let value = match PrintableStringRef::new(serial) {
        Ok(p) => Any::encode_from(&p)?,
        Err(_) => Any::encode_from(&Utf8StringRef::new(serial)?)?,
    };
    let atv = AttributeTypeAndValue { oid: SERIAL_NUMBER, value };
    rdns.push(RelativeDistinguishedName::from(SetOfVec::try_from(vec![atv])?));
    // Round-trip through DER: the checked way to turn an RdnSequence into a Name.
    Ok(Name::from_der(&rdns.to_der()?)?)
}
