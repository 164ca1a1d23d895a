//! Helpers shared by the integration tests of `shared`: vector paths and parsing.
#![allow(dead_code)]

use std::path::PathBuf;
use time::OffsetDateTime;
use x509_cert::Certificate;

/// Path of a file under testdata/vectors.
pub(crate) fn vector(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/vectors").join(rel)
}

/// Bytes of a vector file.
pub(crate) fn read(rel: &str) -> Vec<u8> {
    std::fs::read(vector(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Bytes of a hex vector file (whitespace ignored).
pub(crate) fn read_hex(rel: &str) -> Vec<u8> {
    let text: String = String::from_utf8(read(rel)).unwrap().chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(text).unwrap()
}

/// Certificates from a PEM vector file.
pub(crate) fn certs(rel: &str) -> Vec<Certificate> {
    shared::pki::certs_from_pem(&read(rel)).unwrap()
}

/// Parses an RFC 3339 time.
pub(crate) fn at(s: &str) -> OffsetDateTime {
    shared::rfc3339::parse(s).unwrap()
}
