//! Base64 the way BRSKI and EST peers actually send it: standard or URL-safe alphabet,
//! with or without padding, with line breaks and other whitespace anywhere.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;

/// Decodes base64 leniently (either alphabet, padding optional, whitespace ignored).
pub fn decode_lenient(text: &str) -> Result<Vec<u8>, String> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        if let Ok(v) = engine.decode(&compact) {
            return Ok(v);
        }
    }
    Err("invalid base64".into())
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
