//! Base64 the way BRSKI and EST peers actually send it: standard or URL-safe alphabet,
//! with or without padding, with line breaks and other whitespace anywhere.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine;

/// Decoder config: padding optional, non-zero trailing bits ignored (the rfc8366bis examples use
/// the placeholder `"base64encodedvalue=="`, whose last symbol carries stray bits).
const FORGIVING: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const STANDARD_FORGIVING: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, FORGIVING);
const URL_SAFE_FORGIVING: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, FORGIVING);

/// Decodes base64 leniently: standard or URL-safe alphabet (not mixed), padding optional,
/// whitespace ignored.
pub fn decode_lenient(text: &str) -> Result<Vec<u8>, String> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    STANDARD_FORGIVING
        .decode(&compact)
        .or_else(|_| URL_SAFE_FORGIVING.decode(&compact))
        .map_err(|_| "invalid base64".into())
}

/// Standard padded base64 (RFC 4648 §4), as YANG `binary` and X.509 `x5c` use.
pub fn encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// base64url without padding, as JWS uses.
pub fn encode_url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Strict base64url without padding (JWS segments).
pub fn decode_url(text: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD.decode(text).map_err(|e| format!("invalid base64url: {e}"))
}

/// Standard base64 wrapped at `width` columns with LF line ends (RFC 8951 EST bodies).
pub fn encode_wrapped(bytes: &[u8], width: usize) -> String {
    let flat = STANDARD.encode(bytes);
    let mut out = String::with_capacity(flat.len() + flat.len() / width + 1);
    for chunk in flat.as_bytes().chunks(width.max(4)) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_form() {
        let want = [0xfb, 0xff, 0xfe];
        assert_eq!(decode_lenient("+//+").unwrap(), want);
        assert_eq!(decode_lenient("-__-").unwrap(), want);
        assert_eq!(decode_lenient("AQ==").unwrap(), [1u8]);
        assert_eq!(decode_lenient("AQ").unwrap(), [1u8]);
        assert_eq!(decode_lenient("A\nQ=\r\n=").unwrap(), [1u8]);
        assert!(decode_lenient("base64encodedvalue==").is_ok());
        assert_eq!(encode(&[1]), "AQ==");
    }

    #[test]
    fn rejects_garbage_and_mixed_alphabets() {
        assert!(decode_lenient("not base64!").is_err());
        assert!(decode_lenient("+-AA").is_err());
        assert!(decode_lenient("A").is_err());
    }

    #[test]
    fn wraps_lines() {
        let w = encode_wrapped(&[0u8; 100], 64);
        assert!(w.lines().all(|l| l.len() <= 64));
        assert_eq!(decode_lenient(&w).unwrap(), vec![0u8; 100]);
    }
}
