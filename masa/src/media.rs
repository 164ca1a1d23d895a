//! HTTP content negotiation of the MASA: the voucher-request format from `Content-Type`, the
//! voucher format from `Accept` (RFC 9110 §12.5.1 quality values), and whether an error body
//! is problem JSON.

use crate::error::MasaError;
use est::http::MEDIA_PROBLEM;
use shared::signed::Format;

/// A name some peers use for COSE vouchers; read as [`Format::Cose`] (answered with the
/// registered `application/voucher+cose`).
pub const COSE_ALIAS: &str = "application/voucher-cose+cbor";

/// Formats in the order used when quality values tie on wildcards (CMS is the default).
const FORMATS: [Format; 3] = [Format::Cms, Format::Jws, Format::Cose];

/// The format a media type names (parameters ignored), including [`COSE_ALIAS`].
pub fn format_of(media_type: &str) -> Option<Format> {
    let essence = media_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    if essence == COSE_ALIAS {
        return Some(Format::Cose);
    }
    Format::from_media_type(&essence)
}

/// The voucher-request format of a request's `Content-Type` (415 otherwise).
pub fn request_format(content_type: Option<&str>) -> Result<Format, MasaError> {
    content_type
        .and_then(format_of)
        .ok_or_else(|| MasaError::UnsupportedMediaType(content_type.unwrap_or("(none)").to_string()))
}

/// One media range of an `Accept` header.
struct Range {
    essence: String,
    q: u32,
}

fn parse_accept(accept: &str) -> Vec<Range> {
    accept
        .split(',')
        .filter_map(|item| {
            let mut parts = item.split(';');
            let essence = parts.next()?.trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")))
                .find_map(|v| v.trim().parse::<f32>().ok())
                .map_or(1000, |q| (q.clamp(0.0, 1.0) * 1000.0) as u32);
            (!essence.is_empty()).then_some(Range { essence, q })
        })
        .collect()
}

/// The voucher format to answer with: the acceptable format with the highest quality (ties:
/// first named in the header, then CMS, JWS, COSE); CMS when there is no `Accept`. 406 when the
/// header names no format this MASA issues.
pub fn voucher_format(accept: Option<&str>) -> Result<Format, MasaError> {
    let Some(header) = accept.filter(|a| !a.trim().is_empty()) else { return Ok(Format::Cms) };
    let ranges = parse_accept(header);
    let score = |f: Format| -> Option<(u32, bool, usize)> {
        let exact = ranges.iter().position(|r| format_of(&r.essence) == Some(f));
        if let Some(i) = exact {
            return Some((ranges[i].q, true, usize::MAX - i));
        }
        let wild = ranges.iter().find(|r| r.essence == "*/*" || r.essence == "application/*")?;
        Some((wild.q, false, 0))
    };
    FORMATS
        .iter()
        .rev()
        .filter_map(|&f| score(f).filter(|s| s.0 > 0).map(|s| (s, f)))
        .max_by_key(|(s, _)| *s)
        .map(|(_, f)| f)
        .ok_or_else(|| MasaError::NotAcceptable(header.to_string()))
}

/// Whether the client asked for RFC 9457 problem bodies.
pub fn wants_problem_json(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| parse_accept(a).iter().any(|r| r.essence == MEDIA_PROBLEM && r.q > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(request_format(Some("application/voucher-cms+json")).unwrap(), Format::Cms);
        assert_eq!(request_format(Some("Application/Voucher-JWS+JSON; charset=x")).unwrap(), Format::Jws);
        assert_eq!(request_format(Some("application/voucher+cose")).unwrap(), Format::Cose);
        assert_eq!(request_format(Some(COSE_ALIAS)).unwrap(), Format::Cose);
        assert!(matches!(request_format(Some("application/json")), Err(MasaError::UnsupportedMediaType(_))));
        assert!(request_format(None).is_err());
    }

    #[test]
    fn accept_negotiation() {
        assert_eq!(voucher_format(None).unwrap(), Format::Cms);
        assert_eq!(voucher_format(Some("*/*")).unwrap(), Format::Cms);
        assert_eq!(voucher_format(Some("application/voucher-jws+json")).unwrap(), Format::Jws);
        let both = "application/voucher+cose, application/voucher-cms+json";
        assert_eq!(voucher_format(Some(both)).unwrap(), Format::Cose);
        let q = "application/voucher+cose;q=0.5, application/voucher-jws+json";
        assert_eq!(voucher_format(Some(q)).unwrap(), Format::Jws);
        let wild = "application/voucher-cms+json;q=0, */*;q=0.1";
        assert_eq!(voucher_format(Some(wild)).unwrap(), Format::Jws);
        let problem_only = MEDIA_PROBLEM;
        assert!(matches!(voucher_format(Some(problem_only)), Err(MasaError::NotAcceptable(_))));
        assert!(voucher_format(Some("application/pkcs7-mime")).is_err());
    }

    #[test]
    fn problem_json_is_asked_for() {
        assert!(wants_problem_json(Some(&format!("application/voucher-cms+json, {MEDIA_PROBLEM}"))));
        assert!(!wants_problem_json(Some("application/voucher-cms+json")));
        assert!(!wants_problem_json(None));
    }
}
