//! `multipart/mixed` bodies as EST serverkeygen answers them (RFC 7030 §4.4.2): parts
//! separated by `--boundary` lines, each with its own headers; preamble and epilogue ignored.

/// One part of a multipart body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The part's Content-Type (lower-cased, parameters kept).
    pub content_type: String,
    /// The part's body (still base64 for EST parts).
    pub body: Vec<u8>,
}

/// Why a multipart body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    /// The Content-Type carries no boundary.
    #[error("multipart Content-Type without a boundary parameter")]
    NoBoundary,
    /// The body is not split by the boundary.
    #[error("multipart body has no parts for boundary '{0}'")]
    NoParts(String),
}

/// Extracts the boundary parameter from a `multipart/mixed; boundary=...` Content-Type.
pub fn boundary(content_type: &str) -> Result<String, MultipartError> {
    content_type
        .split(';')
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
        .filter(|b| !b.is_empty())
        .ok_or(MultipartError::NoBoundary)
}

/// Splits `body` into its parts.
pub fn parse(content_type: &str, body: &[u8]) -> Result<Vec<Part>, MultipartError> {
    let b = boundary(content_type)?;
    let text = String::from_utf8_lossy(body);
    let delim = format!("--{b}");
    let mut parts = Vec::new();
    // Everything before the first delimiter is preamble; after the closing one, epilogue.
    for chunk in text.split(delim.as_str()).skip(1) {
        if chunk.starts_with("--") {
            break;
        }
        let chunk = chunk.trim_start_matches(['\r', '\n']);
        let (head, rest) =
            chunk.split_once("\r\n\r\n").or_else(|| chunk.split_once("\n\n")).unwrap_or((chunk, ""));
        let content_type = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.trim().to_ascii_lowercase())
            .unwrap_or_default();
        parts.push(Part { content_type, body: rest.trim_end_matches(['\r', '\n']).as_bytes().to_vec() });
    }
    if parts.is_empty() {
        return Err(MultipartError::NoParts(b));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7030_serverkeygen_example_splits_into_key_and_certs() {
        let body = std::fs::read(format!(
            "{}/../testdata/vectors/rfc7030-appendix-a/serverkeygen-response.multipart.txt",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let parts = parse("multipart/mixed ; boundary=estServerExampleBoundary", &body).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].content_type, "application/pkcs8");
        assert!(parts[1].content_type.starts_with("application/pkcs7-mime"));
        let key = crate::wire::decode_body(&parts[0].body).unwrap();
        let want = std::fs::read(format!(
            "{}/../testdata/vectors/rfc7030-appendix-a/serverkeygen-response-key.pkcs8.der",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        assert_eq!(key, want);
        let certs =
            crate::wire::parse_certs_only(&crate::wire::decode_body(&parts[1].body).unwrap()).unwrap();
        assert_eq!(certs.len(), 1);
    }

    #[test]
    fn missing_boundary_and_empty_body() {
        assert_eq!(boundary("multipart/mixed"), Err(MultipartError::NoBoundary));
        assert_eq!(
            parse("multipart/mixed; boundary=x", b"nothing"),
            Err(MultipartError::NoParts("x".into()))
        );
    }
}
