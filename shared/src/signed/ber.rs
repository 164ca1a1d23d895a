//! BER to DER normalisation for CMS input.
//!
//! `openssl cms -sign -stream` and S/MIME tools emit indefinite lengths and chunked
//! (constructed) OCTET STRINGs. The `der` crate reads DER only, and its BER mode keeps the
//! chunks, which breaks the messageDigest check (stack.md pitfall P2). This pass rewrites the
//! input to definite lengths and joins constructed string chunks; DER input comes out
//! unchanged.

/// Deepest nesting accepted; real CMS objects stay well under 20.
const MAX_DEPTH: usize = 40;

/// Why BER input could not be normalised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BerError {
    /// The input ends inside a value.
    #[error("truncated ASN.1 input")]
    Truncated,
    /// Bytes after the outermost value.
    #[error("trailing data after the ASN.1 value")]
    TrailingData,
    /// Structure deeper than [`MAX_DEPTH`].
    #[error("ASN.1 nesting too deep")]
    TooDeep,
    /// An encoding BER does not allow (e.g. an indefinite-length primitive).
    #[error("invalid BER: {0}")]
    Invalid(&'static str),
}

/// Converts one BER value (the whole input) to DER lengths and flat strings.
pub fn to_der(input: &[u8]) -> Result<Vec<u8>, BerError> {
    let mut out = Vec::with_capacity(input.len());
    let used = convert(input, &mut out, 0)?;
    if used != input.len() {
        return Err(BerError::TrailingData);
    }
    Ok(out)
}

struct Header {
    tag: Vec<u8>,
    constructed: bool,
    /// None = indefinite.
    len: Option<usize>,
    header_len: usize,
}

fn read_header(input: &[u8]) -> Result<Header, BerError> {
    let first = *input.first().ok_or(BerError::Truncated)?;
    let mut pos = 1;
    if first & 0x1f == 0x1f {
        loop {
            let b = *input.get(pos).ok_or(BerError::Truncated)?;
            pos += 1;
            if b & 0x80 == 0 {
                break;
            }
            if pos > 6 {
                return Err(BerError::Invalid("tag number too large"));
            }
        }
    }
    let tag = input[..pos].to_vec();
    let lb = *input.get(pos).ok_or(BerError::Truncated)?;
    pos += 1;
    let len = match lb {
        0x80 => None,
        l if l < 0x80 => Some(l as usize),
        l => {
            let n = (l & 0x7f) as usize;
            if n > 4 {
                return Err(BerError::Invalid("length too large"));
            }
            let bytes = input.get(pos..pos + n).ok_or(BerError::Truncated)?;
            pos += n;
            Some(bytes.iter().fold(0usize, |acc, b| (acc << 8) | *b as usize))
        }
    };
    Ok(Header { tag, constructed: first & 0x20 != 0, len, header_len: pos })
}

/// Converts the value at the start of `input` into `out`; returns the bytes consumed.
fn convert(input: &[u8], out: &mut Vec<u8>, depth: usize) -> Result<usize, BerError> {
    if depth > MAX_DEPTH {
        return Err(BerError::TooDeep);
    }
    let h = read_header(input)?;
    if !h.constructed {
        let len = h.len.ok_or(BerError::Invalid("indefinite length on a primitive value"))?;
        let end = h.header_len.checked_add(len).ok_or(BerError::Truncated)?;
        let body = input.get(h.header_len..end).ok_or(BerError::Truncated)?;
        write_tlv(out, &h.tag, body);
        return Ok(end);
    }
    let (children, consumed) = convert_children(input, &h, depth)?;
    if is_constructed_string(&h.tag) {
        let flat = flatten_string(&children, depth)?;
        let mut tag = h.tag.clone();
        tag[0] &= !0x20;
        write_tlv(out, &tag, &flat);
    } else {
        write_tlv(out, &h.tag, &children);
    }
    Ok(consumed)
}

/// Converts the contents of a constructed value; returns (DER contents, total consumed).
fn convert_children(input: &[u8], h: &Header, depth: usize) -> Result<(Vec<u8>, usize), BerError> {
    let mut body = Vec::new();
    let mut pos = h.header_len;
    match h.len {
        Some(len) => {
            let end = pos.checked_add(len).ok_or(BerError::Truncated)?;
            let inner = input.get(pos..end).ok_or(BerError::Truncated)?;
            let mut p = 0;
            while p < inner.len() {
                p += convert(&inner[p..], &mut body, depth + 1)?;
            }
            pos = end;
        }
        None => loop {
            let rest = input.get(pos..).ok_or(BerError::Truncated)?;
            if rest.len() < 2 {
                return Err(BerError::Truncated);
            }
            if rest[0] == 0 && rest[1] == 0 {
                pos += 2;
                break;
            }
            pos += convert(rest, &mut body, depth + 1)?;
        },
    }
    Ok((body, pos))
}

/// Universal string types that BER may send in constructed (chunked) form.
fn is_constructed_string(tag: &[u8]) -> bool {
    tag.len() == 1 && matches!(tag[0], 0x23 | 0x24 | 0x2c | 0x33 | 0x34 | 0x36 | 0x3c)
}

/// Joins the primitive chunks (already DER) of a constructed string.
fn flatten_string(children: &[u8], depth: usize) -> Result<Vec<u8>, BerError> {
    let mut flat = Vec::new();
    let mut p = 0;
    while p < children.len() {
        let h = read_header(&children[p..])?;
        let len = h.len.ok_or(BerError::Invalid("indefinite chunk"))?;
        let start = p + h.header_len;
        let chunk = children.get(start..start + len).ok_or(BerError::Truncated)?;
        if depth > MAX_DEPTH {
            return Err(BerError::TooDeep);
        }
        flat.extend_from_slice(chunk);
        p = start + len;
    }
    Ok(flat)
}

fn write_tlv(out: &mut Vec<u8>, tag: &[u8], body: &[u8]) {
    out.extend_from_slice(tag);
    let len = body.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_passes_through_unchanged() {
        let der = [0x30, 0x06, 0x04, 0x01, 0xaa, 0x02, 0x01, 0x05];
        assert_eq!(to_der(&der).unwrap(), der);
    }

    #[test]
    fn indefinite_and_chunked_octet_string_flatten() {
        // SEQUENCE (indef) { OCTET STRING constructed (indef) { 04 01 aa, 04 02 bb cc } }
        let ber = [0x30, 0x80, 0x24, 0x80, 0x04, 0x01, 0xaa, 0x04, 0x02, 0xbb, 0xcc, 0, 0, 0, 0];
        assert_eq!(to_der(&ber).unwrap(), [0x30, 0x05, 0x04, 0x03, 0xaa, 0xbb, 0xcc]);
    }

    #[test]
    fn truncated_and_trailing_are_distinct() {
        assert_eq!(to_der(&[0x30, 0x05, 0x04]), Err(BerError::Truncated));
        assert_eq!(to_der(&[0x04, 0x01, 0xaa, 0x00]), Err(BerError::TrailingData));
        assert_eq!(
            to_der(&[0x04, 0x80, 0x00, 0x00]),
            Err(BerError::Invalid("indefinite length on a primitive value"))
        );
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut v = Vec::new();
        for _ in 0..100 {
            v.extend_from_slice(&[0x30, 0x80]);
        }
        assert_eq!(to_der(&v), Err(BerError::TooDeep));
    }
}
