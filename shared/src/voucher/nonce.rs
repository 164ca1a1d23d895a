//! The voucher nonce, kept exactly as it was transported.
//!
//! The YANG type is `binary`, but deployed code (Minerva) sends base64url without padding and
//! other examples send hex-looking text, so voucher.md says: compare nonces exactly as
//! transported and do not require decodability. A JSON nonce is therefore kept as its exact
//! string and a CBOR nonce as its byte string; only a comparison across the two forms decodes.

use std::fmt;

use subtle::{Choice, ConstantTimeEq};

/// A voucher / voucher-request nonce in the form it was transported in.
///
/// Equality (`==` and [`ConstantTimeEq`]) runs in constant time for equal-length inputs.
/// Two text nonces are equal only if the strings are identical; two byte nonces only if the
/// bytes are identical; a text nonce equals a byte nonce if the text decodes (standard base64
/// or base64url, padded or not) to those bytes. Because of the cross-form rule, equality is
/// not transitive (`"AQ"` and `"AQ=="` both equal bytes `[1]` but differ from each other), so
/// `Nonce` deliberately does not implement `Eq` or `Hash`.
#[derive(Clone)]
pub struct Nonce(Form);

#[derive(Clone)]
enum Form {
    Text(String),
    Bytes(Vec<u8>),
}

impl Nonce {
    /// A nonce in byte form, for a freshly generated nonce or one read from CBOR.
    /// Its JSON encoding is standard padded base64.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Nonce(Form::Bytes(bytes.to_vec()))
    }

    /// A nonce in text form: the exact string of a JSON `nonce` member.
    pub fn from_text(text: String) -> Self {
        Nonce(Form::Text(text))
    }

    /// The transported string, if this nonce is in text form.
    pub fn as_text(&self) -> Option<&str> {
        match &self.0 {
            Form::Text(t) => Some(t),
            Form::Bytes(_) => None,
        }
    }

    /// The transported bytes, if this nonce is in byte form.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match &self.0 {
            Form::Bytes(b) => Some(b),
            Form::Text(_) => None,
        }
    }

    /// The nonce's octets: the bytes themselves, or the base64/base64url decoding of the text
    /// form (`None` when the text is not decodable).
    pub fn decoded(&self) -> Option<Vec<u8>> {
        match &self.0 {
            Form::Bytes(b) => Some(b.clone()),
            Form::Text(t) => crate::b64::decode_lenient(t).ok(),
        }
    }

    /// The JSON string for this nonce: the exact transported text, or standard base64 of the bytes.
    pub fn json_text(&self) -> String {
        match &self.0 {
            Form::Text(t) => t.clone(),
            Form::Bytes(b) => crate::b64::encode(b),
        }
    }
}

/// Compares a text nonce with a byte nonce by decoding the text.
fn cross_form_eq(text: &str, bytes: &[u8]) -> Choice {
    match crate::b64::decode_lenient(text).ok() {
        Some(decoded) => decoded.as_slice().ct_eq(bytes),
        None => Choice::from(0),
    }
}

impl ConstantTimeEq for Nonce {
    fn ct_eq(&self, other: &Self) -> Choice {
        match (&self.0, &other.0) {
            (Form::Text(a), Form::Text(b)) => a.as_bytes().ct_eq(b.as_bytes()),
            (Form::Bytes(a), Form::Bytes(b)) => a.as_slice().ct_eq(b.as_slice()),
            (Form::Text(t), Form::Bytes(b)) | (Form::Bytes(b), Form::Text(t)) => cross_form_eq(t, b),
        }
    }
}

impl PartialEq for Nonce {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl fmt::Debug for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Form::Text(t) => write!(f, "Nonce::Text({t:?})"),
            Form::Bytes(b) => write!(f, "Nonce::Bytes({})", hex::encode(b)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_form_compares_exactly() {
        let a = Nonce::from_text("-_XE9zK9q8Ll1qylMtLKeg".into());
        assert_eq!(a, Nonce::from_text("-_XE9zK9q8Ll1qylMtLKeg".into()));
        assert_ne!(a, Nonce::from_text("-_XE9zK9q8Ll1qylMtLKeg==".into()));
        assert_ne!(Nonce::from_bytes(&[1, 2]), Nonce::from_bytes(&[1, 2, 3]));
    }

    #[test]
    fn cross_form_decodes_text() {
        let bytes = Nonce::from_bytes(&[0xfb, 0xf5, 0xc4, 0xf7]);
        assert_eq!(Nonce::from_text("-_XE9w".into()), bytes);
        assert_eq!(bytes, Nonce::from_text("+/XE9w==".into()));
        assert_ne!(Nonce::from_text("not base64!".into()), bytes);
    }

    #[test]
    fn json_text_of_bytes_is_standard_base64() {
        assert_eq!(Nonce::from_bytes(&[0xfb, 0xff]).json_text(), "+/8=");
        assert_eq!(Nonce::from_text("x-y".into()).json_text(), "x-y");
    }
}
