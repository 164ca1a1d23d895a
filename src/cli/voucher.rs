//! `brski voucher inspect|verify|sign`: vouchers and voucher-requests in any of the three
//! formats, from a file or stdin, binary or base64/hex-wrapped.

use super::input::{parse_time, read_certs, read_input};
use anyhow::Context;
use clap::{Args, Subcommand};
use shared::signed::{Format, Trust};
use shared::voucher::{self as v, Assertion, Expectations, Kind, Nonce, SignedVoucher, Strictness, Voucher};
use std::io::Write;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub(super) enum VoucherCommand {
    /// Print the format, carried certificates and fields (nothing is verified).
    Inspect(InspectArgs),
    /// Verify signature, signer chain and voucher rules; exit 0, or 1 with the reason.
    Verify(VerifyArgs),
    /// Sign voucher JSON (RFC 7951) into a CMS, JWS or COSE voucher (for tests and labs).
    Sign(SignArgs),
}

#[derive(Debug, Args)]
pub(super) struct InspectArgs {
    /// File to read, or `-` for stdin.
    #[arg(default_value = "-")]
    input: String,
    /// Print only the payload as RFC 7951 JSON (CBOR payloads are converted).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(super) struct VerifyArgs {
    /// File to read, or `-` for stdin.
    #[arg(default_value = "-")]
    input: String,
    /// PEM file with the trust anchor(s): the manufacturer CA for vouchers, the registrar's
    /// or pledge's CA for voucher-requests.
    #[arg(long)]
    trust: String,
    /// Verification time (RFC 3339); default now. Published vectors need their own date.
    #[arg(long)]
    at: Option<String>,
    /// The nonce the pledge sent, exactly as transported (JSON text form; may start with '-').
    #[arg(long, allow_hyphen_values = true)]
    nonce: Option<String>,
    /// The nonce as hex bytes (for CBOR vouchers).
    #[arg(long, conflicts_with = "nonce")]
    nonce_hex: Option<String>,
    /// The pledge's serial number.
    #[arg(long)]
    serial: Option<String>,
    /// Acceptable assertions (repeatable): verified, logged, proximity, agent-proximity.
    #[arg(long = "assertion")]
    assertions: Vec<String>,
    /// Refuse a voucher without a nonce.
    #[arg(long)]
    require_nonce: bool,
    /// PEM chain of the registrar's TLS certificate, checked against the voucher's pin.
    #[arg(long)]
    registrar_cert: Option<String>,
    /// Refuse unknown leaves instead of ignoring them (RFC 8995 receivers ignore them).
    #[arg(long)]
    strict: bool,
}

#[derive(Debug, Args)]
pub(super) struct SignArgs {
    /// Voucher or voucher-request JSON (`{"ietf-voucher:voucher": {...}}`), or `-`.
    #[arg(long = "in", default_value = "-")]
    input: String,
    /// Signing key URI, e.g. `file:masa.key` (PKCS#8 or SEC1 PEM, mode 0600).
    #[arg(long)]
    key: String,
    /// PEM file: the signer's certificate first, then its chain.
    #[arg(long)]
    cert: String,
    /// Output format: cms, jws or cose.
    #[arg(long, default_value = "cms")]
    format: String,
    /// Output file (default stdout).
    #[arg(long)]
    out: Option<String>,
    /// Write base64 text (76 columns) instead of binary.
    #[arg(long)]
    base64: bool,
}

pub(super) fn run(cmd: VoucherCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        VoucherCommand::Inspect(a) => inspect(a),
        VoucherCommand::Verify(a) => Ok(verify(a)),
        VoucherCommand::Sign(a) => sign(a),
    }
}

fn inspect(a: InspectArgs) -> anyhow::Result<ExitCode> {
    let signed = SignedVoucher::parse(&read_input(&a.input)?).context("not a signed voucher")?;
    let data = signed.inspect_unverified().context("signed payload is not voucher data")?;
    let mut out = std::io::stdout().lock();
    if a.json {
        out.write_all(&pretty_json(&data))?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "format:    {} ({})", signed.format(), signed.format().media_type())?;
    writeln!(out, "kind:      {}", data.kind)?;
    writeln!(out, "signature: NOT VERIFIED (use `brski voucher verify --trust ...`)")?;
    for (i, c) in signed.envelope().certificates().iter().enumerate() {
        writeln!(out, "cert[{i}]:   {}", describe_cert(c))?;
    }
    for (leaf, der) in [
        ("pinned-domain-cert", &data.pinned_domain_cert),
        ("proximity-registrar-cert", &data.proximity_registrar_cert),
    ] {
        if let Some(c) = der.as_deref().and_then(|d| shared::pki::cert_from_der(d).ok()) {
            writeln!(out, "{leaf}: {}", describe_cert(&c))?;
        }
    }
    for l in &data.unknown_leaves {
        writeln!(out, "unknown leaf (ignored): {l}")?;
    }
    for l in &data.ignored_leaves {
        writeln!(out, "leaf not valid here (ignored): {l}")?;
    }
    writeln!(out, "fields:")?;
    out.write_all(&pretty_json(&data))?;
    writeln!(out)?;
    Ok(ExitCode::SUCCESS)
}

fn pretty_json(data: &Voucher) -> Vec<u8> {
    let json = v::to_json(data);
    serde_json::from_slice::<serde_json::Value>(&json)
        .and_then(|v| serde_json::to_vec_pretty(&v))
        .unwrap_or(json)
}

fn describe_cert(c: &x509_cert::Certificate) -> String {
    let t = c.tbs_certificate();
    format!(
        "subject '{}', issuer '{}', valid {} .. {}",
        t.subject(),
        t.issuer(),
        t.validity().not_before,
        t.validity().not_after
    )
}

/// Runs every check; prints `OK: ...` and exits 0, or the reason on one line and exits 1.
fn verify(a: VerifyArgs) -> ExitCode {
    match verify_inner(&a) {
        Ok(summary) => {
            println!("OK: {summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("voucher rejected: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn verify_inner(a: &VerifyArgs) -> anyhow::Result<String> {
    let at = a.at.as_deref().map(parse_time).transpose()?.unwrap_or_else(time::OffsetDateTime::now_utc);
    let trust = Trust { anchors: read_certs(&a.trust)?, at };
    let signed = SignedVoucher::parse(&read_input(&a.input)?)?;
    let verified = signed.verify(&trust)?;
    for l in &verified.unknown_leaves {
        tracing::warn!(leaf = %l, "unknown voucher leaf ignored");
    }
    if a.strict {
        v::refuse_unknown_leaves(&verified)?;
    }
    match verified.kind {
        Kind::Voucher => {
            v::check_voucher(&verified, &expectations(a, at)?)?;
            if let Some(path) = &a.registrar_cert {
                v::check_registrar_pin(&verified, &read_certs(path)?, at)?;
            }
        }
        Kind::Request => {
            v::check_request(&verified)?;
            if let (Some(want), Some(found)) = (&a.serial, &verified.serial_number) {
                anyhow::ensure!(
                    want == found,
                    v::VoucherError::SerialMismatch { expected: want.clone(), found: found.clone() }
                );
            }
        }
    }
    let signer = verified.signer().map(|c| c.tbs_certificate().subject().to_string()).unwrap_or_default();
    Ok(format!(
        "{} ({}) signed by '{signer}', serial-number {}, assertion {}",
        verified.kind,
        signed.format(),
        verified.serial_number.as_deref().unwrap_or("-"),
        verified.assertion.map(Assertion::name).unwrap_or("-")
    ))
}

fn expectations(a: &VerifyArgs, at: time::OffsetDateTime) -> anyhow::Result<Expectations> {
    let nonce = match (&a.nonce, &a.nonce_hex) {
        (Some(t), _) => Some(Nonce::from_text(t.clone())),
        (None, Some(h)) => Some(Nonce::from_bytes(&hex::decode(h).context("--nonce-hex is not hex")?)),
        (None, None) => None,
    };
    let acceptable_assertions = a
        .assertions
        .iter()
        .map(|s| Assertion::from_name(s).with_context(|| format!("unknown assertion '{s}'")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Expectations {
        nonce,
        serial_number: a.serial.clone(),
        now: Some(at),
        acceptable_assertions,
        require_nonce: a.require_nonce,
        ..Default::default()
    })
}

fn sign(a: SignArgs) -> anyhow::Result<ExitCode> {
    let format = Format::from_name(&a.format)
        .with_context(|| format!("unknown format '{}': use cms, jws or cose", a.format))?;
    let data = v::from_json(&read_input(&a.input)?, Strictness::Strict).context("voucher JSON")?;
    let key = shared::keys::load_signer(&a.key)?;
    let chain = read_certs(&a.cert)?;
    if shared::pki::spki_der(&chain[0]) != key.public_key_der() {
        anyhow::bail!("the key {} does not belong to the first certificate in {}", a.key, a.cert);
    }
    let signed = v::sign_voucher(&data, format, key.as_ref(), &chain)?;
    let bytes = if a.base64 {
        shared::b64::encode_wrapped(signed.bytes(), 76).into_bytes()
    } else {
        signed.bytes().to_vec()
    };
    match &a.out {
        Some(path) => std::fs::write(path, &bytes).with_context(|| format!("writing {path}"))?,
        None => std::io::stdout().lock().write_all(&bytes)?,
    }
    Ok(ExitCode::SUCCESS)
}
