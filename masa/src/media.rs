//! HTTP content negotiation of the MASA: the voucher-request format from `Content-Type`, the
//! voucher format from `Accept` (RFC 9110 §12.5.1 quality values), and whether an error body
//! is problem JSON.

use crate::error::MasaError;
use est::http::MEDIA_PROBLEM;
use shared::brski::media::{format_of, names_acceptable, voucher_formats};
use shared::signed::Format;

/// The formats this MASA issues, in its own order of preference for ties (CMS is the default).
const FORMATS: [Format; 3] = [Format::Cms, Format::Jws, Format::Cose];

/// The voucher-request format of a request's `Content-Type` (415 otherwise); the COSE alias
/// [`shared::brski::media::COSE_ALIAS`] is read as COSE.
pub(crate) fn request_format(content_type: Option<&str>) -> Result<Format, MasaError> {
    content_type
        .and_then(format_of)
        .ok_or_else(|| MasaError::UnsupportedMediaType(content_type.unwrap_or("(none)").to_string()))
}

/// The voucher format to answer with: the first of [`voucher_formats`] (highest quality; ties:
/// named exactly, then header order, then CMS, JWS, COSE); CMS when there is no `Accept`. 406
/// when the header accepts no format this MASA issues.
pub(crate) fn voucher_format(accept: Option<&str>) -> Result<Format, MasaError> {
    let Some(header) = accept.filter(|a| !a.trim().is_empty()) else { return Ok(Format::Cms) };
    voucher_formats(header, &FORMATS)
        .first()
        .copied()
        .ok_or_else(|| MasaError::NotAcceptable(header.to_string()))
}

/// Whether the client asked for RFC 9457 problem bodies.
pub(crate) fn wants_problem_json(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| names_acceptable(a, MEDIA_PROBLEM))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::brski::media::COSE_ALIAS;

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
