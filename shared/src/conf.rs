//! Configuration text, sans-IO: TOML basic strings for the configuration files the roles write
//! (TOML 1.0 "String": basic strings and their escapes), and key URIs resolved against a
//! configuration directory (RFC 8089 `file:` URIs, RFC 7512 `pkcs11:` URIs, brski's `tpm:`).

use crate::keys::KeyUri;
use std::path::Path;

/// `value` as a TOML basic string, quotes included.
///
/// Every character TOML 1.0 forbids unescaped in a basic string is escaped: `"` and `\`, and
/// the control characters U+0000-U+001F and U+007F (as `\b \t \n \f \r` where TOML has a short
/// form, else `\uXXXX`). Everything else, non-ASCII included, is written as is.
pub fn toml_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if c <= '\u{1f}' || c == '\u{7f}' => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A key URI read from a configuration file in `base_dir`, with a relative `file:` path made
/// relative to `base_dir` (`file:ca.key` in `/etc/brski` -> `file:/etc/brski/ca.key`).
///
/// The URI is read as [`KeyUri`] reads it, so `file:/abs`, `file:///abs` and
/// `file://localhost/abs` are absolute and stay as written. `pkcs11:`, `tpm:` and anything that
/// is not a key URI are returned unchanged (a `pin-source=file:` inside a `pkcs11:` URI too).
pub fn resolve_key_uri(base_dir: &Path, uri: &str) -> String {
    match uri.parse::<KeyUri>() {
        Ok(KeyUri::File(p)) if p.is_relative() => format!("file:{}", base_dir.join(p).display()),
        _ => uri.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Doc {
        v: String,
    }

    fn round_trip(value: &str) -> String {
        let text = format!("v = {}\n", toml_string(value));
        toml::from_str::<Doc>(&text).unwrap_or_else(|e| panic!("{text:?}: {e}")).v
    }

    #[test]
    fn control_characters_quote_and_backslash_round_trip() {
        let nasty = "a\nb\tc\u{1}d\u{7f}e\"f\\g\r\u{8}\u{c}\u{1f}\u{0}h";
        assert_eq!(round_trip(nasty), nasty);
        assert_eq!(toml_string("a\nb\u{1}\u{7f}"), "\"a\\nb\\u0001\\u007F\"");
    }

    #[test]
    fn plain_and_non_ascii_text_is_written_as_is() {
        assert_eq!(toml_string("file:/etc/brski/ca.key"), "\"file:/etc/brski/ca.key\"");
        assert_eq!(toml_string("Zürich \u{85} ✓"), "\"Zürich \u{85} ✓\"");
        assert_eq!(round_trip("Zürich \u{85} ✓"), "Zürich \u{85} ✓");
        assert_eq!(round_trip(""), "");
    }

    #[test]
    fn relative_file_uris_resolve_against_the_directory() {
        let dir = Path::new("/etc/brski");
        assert_eq!(resolve_key_uri(dir, "file:ca.key"), "file:/etc/brski/ca.key");
        assert_eq!(resolve_key_uri(dir, "file:keys/ca.key"), "file:/etc/brski/keys/ca.key");
    }

    #[test]
    fn absolute_and_other_uris_stay_as_written() {
        let dir = Path::new("/etc/brski");
        for uri in [
            "file:/var/ca.key",
            "file:///var/ca.key",
            "file://localhost/var/ca.key",
            "pkcs11:token=CA;object=ca-key;type=private",
            "pkcs11:token=CA;object=k?pin-source=file:pin.txt&module-path=/usr/lib/softhsm/libsofthsm2.so",
            "tpm:handle=0x81020001",
            "tpm:handle=0x81020001?tcti=swtpm:path=/run/swtpm/sock",
            "/var/ca.key",
            "ca.key",
        ] {
            assert_eq!(resolve_key_uri(dir, uri), uri, "{uri}");
        }
    }
}
