//! Key identifier extraction for the lenient `idevid-issuer` comparison (voucher.md §4).
//!
//! rfc8366bis (erratum 7263) puts the whole AuthorityKeyIdentifier extnValue in idevid-issuer:
//! `04 18 30 16 80 14 <20-byte keyIdentifier>`. Older implementations send only the inner
//! `SEQUENCE { [0] keyIdentifier }` or just the key id. Peeling the DER layers that are present
//! reduces all three forms to the key id, so they compare equal.

const OCTET_STRING: u8 = 0x04;
const SEQUENCE: u8 = 0x30;
const KEY_IDENTIFIER: u8 = 0x80; // [0] IMPLICIT KeyIdentifier

/// The key identifier inside any of the three idevid-issuer forms; input that is not one of the
/// DER wrappings is taken to be the bare key id.
pub(crate) fn key_id(value: &[u8]) -> &[u8] {
    let mut current = value;
    if let Some(inner) = whole_tlv(current, OCTET_STRING) {
        current = inner;
    }
    if let Some(seq) = whole_tlv(current, SEQUENCE) {
        return match tlv(seq) {
            Some((KEY_IDENTIFIER, id, _)) => id,
            _ => current,
        };
    }
    current
}

/// The contents of `bytes` if it is exactly one TLV with `tag`.
fn whole_tlv(bytes: &[u8], tag: u8) -> Option<&[u8]> {
    match tlv(bytes)? {
        (t, contents, []) if t == tag => Some(contents),
        _ => None,
    }
}

/// Splits one DER TLV (single-byte tag, definite length up to 2 length octets) off `bytes`:
/// `(tag, contents, rest)`.
fn tlv(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = bytes.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        0..=0x7f => (usize::from(first), rest),
        0x81 => (usize::from(*rest.first()?), rest.get(1..)?),
        0x82 => {
            let hi = usize::from(*rest.first()?);
            let lo = usize::from(*rest.get(1)?);
            ((hi << 8) | lo, rest.get(2..)?)
        }
        _ => return None,
    };
    let contents = rest.get(..len)?;
    Some((tag, contents, rest.get(len..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: [u8; 20] = [
        0xcb, 0x8d, 0x98, 0xca, 0x74, 0xc5, 0x1b, 0x58, 0xdd, 0xe7, 0xac, 0xef, 0x86, 0x9a, 0x94, 0x43, 0xa8,
        0xd6, 0x66, 0xa6,
    ];

    fn wrap(tag: u8, inner: &[u8]) -> Vec<u8> {
        let mut out = vec![tag, inner.len() as u8];
        out.extend_from_slice(inner);
        out
    }

    #[test]
    fn all_three_forms_give_the_key_id() {
        let seq = wrap(SEQUENCE, &wrap(KEY_IDENTIFIER, &ID));
        let full = wrap(OCTET_STRING, &seq);
        assert_eq!(full.len(), 26);
        assert_eq!(key_id(&full), ID);
        assert_eq!(key_id(&seq), ID);
        assert_eq!(key_id(&ID), ID);
    }

    #[test]
    fn odd_input_is_taken_as_is() {
        assert_eq!(key_id(&[]), &[] as &[u8]);
        assert_eq!(key_id(&[0x04, 0x05, 0x01]), &[0x04, 0x05, 0x01]);
        let seq_without_id = wrap(SEQUENCE, &wrap(0x81, &[1, 2]));
        assert_eq!(key_id(&seq_without_id), seq_without_id.as_slice());
    }
}
