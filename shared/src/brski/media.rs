//! Media types and content negotiation, sans-IO: the essence of a `Content-Type` (RFC 9110
//! §8.3.1: type and subtype, parameters dropped, case-insensitive), the voucher format a media
//! type names (RFC 8995 §5.2-§5.3, RFC 8366bis, with the COSE alias some peers send), and the
//! `Accept` header with quality values (RFC 9110 §12.5.1, §12.4.2).
//!
//! One rule for every role: the MASA answers with the first format of [`voucher_formats`], the
//! registrar forwards the pledge's list to the MASA. Errors (406, 415) are the roles'.
//!
//! A media range whose `q` is not a valid RFC 9110 `qvalue` (`0`, `0.` up to three digits, `1`,
//! `1.` up to three zeros) is ignored, as if the header did not list it: it neither offers nor
//! refuses anything (a wildcard elsewhere in the header still applies).

use crate::signed::Format;

/// A name some peers use for COSE vouchers, read as [`Format::Cose`] (answered with the
/// registered `application/voucher+cose`).
pub const COSE_ALIAS: &str = "application/voucher-cose+cbor";

/// The essence of a media type or `Content-Type` value: `type/subtype`, parameters dropped,
/// trimmed and lower-cased (`Application/JSON; charset=utf-8` -> `application/json`).
pub fn essence(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

/// The voucher format a media type names (parameters ignored, case-insensitive), including
/// [`COSE_ALIAS`].
pub fn format_of(media_type: &str) -> Option<Format> {
    let essence = essence(media_type);
    if essence == COSE_ALIAS {
        return Some(Format::Cose);
    }
    [Format::Cms, Format::Jws, Format::Cose].into_iter().find(|f| f.media_type() == essence)
}

/// One media range of an `Accept` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRange {
    /// The range's essence, lower-cased: `type/subtype`, `type/*` or `*/*`.
    pub essence: String,
    /// The quality in thousandths (`q=0.5` is 500; 1000 when no `q` is given). 0 means "not
    /// acceptable".
    pub q: u16,
}

impl MediaRange {
    /// Whether this range is a wildcard (`*/*` or `type/*`).
    pub fn is_wildcard(&self) -> bool {
        self.essence.ends_with("/*")
    }

    /// Whether this range covers `essence` (a concrete `type/subtype`).
    pub fn covers(&self, essence: &str) -> bool {
        match self.essence.strip_suffix('*') {
            Some("*/") => true,
            Some(prefix) => essence.starts_with(prefix),
            None => self.essence == essence,
        }
    }
}

/// Parses an RFC 9110 `qvalue` into thousandths: `0`, `0.5`, `0.125`, `1`, `1.000`. Anything
/// else (`2`, `0.0001`, `.5`, `abc`, empty) is `None`.
pub fn parse_qvalue(text: &str) -> Option<u16> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths =
        frac.bytes().chain(std::iter::repeat(b'0')).take(3).fold(0u16, |n, b| n * 10 + u16::from(b - b'0'));
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// The media ranges of an `Accept` header, in header order. Parameter names are
/// case-insensitive (`Q=0.5`); parameters other than `q` are ignored; a range with a malformed
/// `q` is left out (see the module documentation).
pub fn parse_accept(accept: &str) -> Vec<MediaRange> {
    accept
        .split(',')
        .filter_map(|item| {
            let mut parts = item.split(';');
            let essence = parts.next()?.trim().to_ascii_lowercase();
            if essence.is_empty() {
                return None;
            }
            let q = parts
                .filter_map(|p| p.split_once('='))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
                .map_or(Some(1000), |(_, v)| parse_qvalue(v.trim()))?;
            Some(MediaRange { essence, q })
        })
        .collect()
}

/// The quality `ranges` give to `essence`: that of the most specific range covering it
/// (`type/subtype` over `type/*` over `*/*`; the first of equally specific ones), with its
/// position in the header. `None` when no range covers it.
fn quality(ranges: &[MediaRange], matches: impl Fn(&MediaRange) -> bool) -> Option<(u16, bool, usize)> {
    let exact = ranges.iter().position(|r| !r.is_wildcard() && matches(r));
    let i = exact
        .or_else(|| ranges.iter().position(|r| r.is_wildcard() && r.essence != "*/*" && matches(r)))
        .or_else(|| ranges.iter().position(|r| r.essence == "*/*"))?;
    Some((ranges[i].q, exact.is_some(), i))
}

/// The voucher formats of `offered` that an `Accept` header accepts, most preferred first:
/// higher quality first; at equal quality a format named exactly before one reached through a
/// wildcard, then header order, then the order of `offered` (the server's own preference).
/// Formats refused with `q=0`, or not covered by any range, are left out. An empty list means
/// nothing offered is acceptable.
pub fn voucher_formats(accept: &str, offered: &[Format]) -> Vec<Format> {
    let ranges = parse_accept(accept);
    let mut scored: Vec<((u16, bool, usize), usize, Format)> = offered
        .iter()
        .enumerate()
        .filter_map(|(rank, &f)| {
            let covers = |r: &MediaRange| {
                if r.is_wildcard() {
                    r.covers(f.media_type())
                } else {
                    format_of(&r.essence) == Some(f)
                }
            };
            quality(&ranges, covers).filter(|s| s.0 > 0).map(|s| (s, rank, f))
        })
        .collect();
    scored.sort_by(|a, b| {
        let ((qa, ea, ia), ra, _) = a;
        let ((qb, eb, ib), rb, _) = b;
        qb.cmp(qa).then(eb.cmp(ea)).then(ia.cmp(ib)).then(ra.cmp(rb))
    });
    scored.into_iter().map(|(_, _, f)| f).collect()
}

/// Whether an `Accept` header names `media_type` itself (not through a wildcard; any case) with a quality
/// above 0, e.g. whether a client asked for RFC 9457 problem JSON.
pub fn names_acceptable(accept: &str, media_type: &str) -> bool {
    let wanted = essence(media_type);
    parse_accept(accept).iter().any(|r| r.essence == wanted && r.q > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Format; 3] = [Format::Cms, Format::Jws, Format::Cose];

    fn prefs(accept: &str) -> Vec<Format> {
        voucher_formats(accept, &ALL)
    }

    #[test]
    fn essence_drops_parameters_and_case() {
        assert_eq!(essence(" Application/JSON ; charset=utf-8"), "application/json");
        assert_eq!(essence("application/voucher-cms+json"), "application/voucher-cms+json");
        assert_eq!(essence(""), "");
    }

    #[test]
    fn format_of_reads_the_cose_alias() {
        assert_eq!(format_of("application/voucher-cms+json"), Some(Format::Cms));
        assert_eq!(format_of("Application/Voucher-JWS+JSON; charset=x"), Some(Format::Jws));
        assert_eq!(format_of("application/voucher+cose"), Some(Format::Cose));
        assert_eq!(format_of("application/voucher-cose+cbor"), Some(Format::Cose));
        assert_eq!(format_of("APPLICATION/VOUCHER-COSE+CBOR;x=y"), Some(Format::Cose));
        assert_eq!(format_of("application/json"), None);
    }

    #[test]
    fn qvalues_per_rfc9110() {
        assert_eq!(parse_qvalue("0"), Some(0));
        assert_eq!(parse_qvalue("0."), Some(0));
        assert_eq!(parse_qvalue("0.5"), Some(500));
        assert_eq!(parse_qvalue("0.125"), Some(125));
        assert_eq!(parse_qvalue("1"), Some(1000));
        assert_eq!(parse_qvalue("1.000"), Some(1000));
        for bad in ["", "2", "1.5", "0.0001", ".5", "abc", "-0", "0.5x", "1.0001"] {
            assert_eq!(parse_qvalue(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn q_zero_is_refused() {
        assert_eq!(prefs("application/voucher-jws+json;q=0"), vec![]);
        assert_eq!(
            prefs("application/voucher-jws+json;q=0, application/voucher-cms+json"),
            vec![Format::Cms]
        );
        assert_eq!(prefs("application/voucher-cms+json;q=0, */*;q=0.1"), vec![Format::Jws, Format::Cose]);
        assert_eq!(prefs("*/*;q=0"), vec![]);
    }

    #[test]
    fn wildcards_cover_what_is_not_named() {
        assert_eq!(prefs("*/*"), ALL.to_vec());
        assert_eq!(prefs("application/*"), ALL.to_vec());
        assert_eq!(prefs("text/*"), vec![]);
        // The server's own order breaks ties among wildcard matches.
        let order = [Format::Jws, Format::Cms, Format::Cose];
        assert_eq!(voucher_formats("*/*", &order), order.to_vec());
        // A format named exactly wins a tie with one reached through a wildcard.
        assert_eq!(prefs("*/*, application/voucher+cose")[0], Format::Cose);
        // The most specific range decides: application/* refuses, */* does not apply.
        assert_eq!(prefs("application/*;q=0, */*"), vec![]);
    }

    #[test]
    fn ties_follow_header_order() {
        let both = "application/voucher+cose, application/voucher-cms+json";
        assert_eq!(prefs(both), vec![Format::Cose, Format::Cms]);
        let q = "application/voucher+cose;q=0.5, application/voucher-jws+json, application/voucher-cms+json;q=0.5";
        assert_eq!(prefs(q), vec![Format::Jws, Format::Cose, Format::Cms]);
    }

    #[test]
    fn parameters_are_case_insensitive_and_others_ignored() {
        assert_eq!(
            prefs("application/voucher-jws+json;Q=0, application/voucher-cms+json"),
            vec![Format::Cms]
        );
        let params =
            "application/voucher-jws+json; charset=utf-8 ; q=0.9, application/voucher-cms+json;level=1;q=0.8";
        assert_eq!(prefs(params), vec![Format::Jws, Format::Cms]);
        assert_eq!(prefs("APPLICATION/VOUCHER-CMS+JSON"), vec![Format::Cms]);
    }

    #[test]
    fn the_cose_alias_is_accepted() {
        assert_eq!(prefs(COSE_ALIAS), vec![Format::Cose]);
        assert_eq!(
            prefs("application/voucher-cose+cbor;q=0.4, application/voucher-cms+json;q=0.2"),
            vec![Format::Cose, Format::Cms]
        );
    }

    #[test]
    fn malformed_q_leaves_the_range_out() {
        assert_eq!(prefs("application/voucher-jws+json;q=abc"), vec![]);
        assert_eq!(
            prefs("application/voucher-jws+json;q=2, application/voucher-cms+json"),
            vec![Format::Cms]
        );
        // A wildcard elsewhere still covers the format whose range was malformed.
        assert_eq!(prefs("application/voucher-jws+json;q=x, */*;q=0.5")[0], Format::Cms);
    }

    #[test]
    fn problem_json_named() {
        // Media types compare case-insensitively (RFC 9110 §8.3.1); the lower-case spelling
        // lives once in the house, as est::http::MEDIA_PROBLEM.
        let pj = "Application/Problem+JSON";
        assert!(names_acceptable("application/voucher-cms+json, application/PROBLEM+json", pj));
        assert!(!names_acceptable(&format!("{pj};q=0"), pj));
        assert!(!names_acceptable("*/*", pj));
        assert!(!names_acceptable("", pj));
    }
}
