//! The registrar's reading of a pledge's `Accept` (RFC 9110 §12.5.1), forwarded to the MASA.

use super::accepted_formats;
use shared::signed::Format;

#[test]
fn q_zero_is_not_forwarded_as_acceptable() {
    let accept = "application/voucher-jws+json;q=0, application/voucher-cms+json";
    assert_eq!(accepted_formats(accept, Format::Jws), vec![Format::Cms]);
    let q = "application/voucher-jws+json;Q=0.5, application/voucher+cose;charset=x";
    assert_eq!(accepted_formats(q, Format::Cms), vec![Format::Cose, Format::Jws]);
}

#[test]
fn the_request_format_when_the_pledge_does_not_choose() {
    assert_eq!(accepted_formats("", Format::Jws), vec![Format::Jws]);
    assert_eq!(accepted_formats("application/json", Format::Cose), vec![Format::Cose]);
    // Nothing acceptable: the header is disregarded, as RFC 9110 §12.5.1 allows.
    assert_eq!(accepted_formats("application/voucher-cms+json;q=0", Format::Jws), vec![Format::Jws]);
    // A wildcard: every format, the request's own first (the MASA answers with the first).
    assert_eq!(accepted_formats("*/*", Format::Jws), vec![Format::Jws, Format::Cms, Format::Cose]);
}

#[test]
fn the_cose_alias_counts() {
    assert_eq!(accepted_formats("application/voucher-cose+cbor", Format::Cms), vec![Format::Cose]);
}
