//! Reading command inputs: a file path or `-` for stdin, with a size limit.

use anyhow::{bail, Context};
use std::io::Read;

/// Largest input a command reads (vouchers, certificates and JSON are a few KiB).
const MAX_INPUT: u64 = 1024 * 1024;

/// Reads `path`, or stdin when it is `-`, refusing more than 1 MiB.
pub(super) fn read_input(path: &str) -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    if path == "-" {
        std::io::stdin().lock().take(MAX_INPUT + 1).read_to_end(&mut buf).context("reading stdin")?;
    } else {
        std::fs::File::open(path)
            .with_context(|| format!("cannot open {path}"))?
            .take(MAX_INPUT + 1)
            .read_to_end(&mut buf)
            .with_context(|| format!("reading {path}"))?;
    }
    if buf.len() as u64 > MAX_INPUT {
        bail!("{path}: input larger than {MAX_INPUT} bytes");
    }
    Ok(buf)
}

/// Reads a PEM file holding one or more certificates.
pub(super) fn read_certs(path: &str) -> anyhow::Result<Vec<x509_cert::Certificate>> {
    let pem = read_input(path)?;
    shared::pki::certs_from_pem(&pem).with_context(|| format!("{path}: no usable certificate"))
}

/// Parses an RFC 3339 time given on the command line.
pub(super) fn parse_time(s: &str) -> anyhow::Result<time::OffsetDateTime> {
    shared::rfc3339::parse(s)
        .with_context(|| format!("'{s}' is not an RFC 3339 time such as 2021-04-14T00:00:00Z"))
}
