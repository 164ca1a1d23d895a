//! What a bootstrapped pledge keeps in its state directory, and `brski pledge status`:
//! `ldevid.key` (0600), `ldevid.pem` (LDevID then chain), `domain-ca.pem` (the domain's CA
//! certificates from /cacerts), `voucher.<vcj|vjj|vch>` and `pledge-status.json`; while
//! `brski pledge serve` runs, `agent.sock` (the Agent API, unless `--socket` moves it).

use crate::enroll::Enrolled;
use serde::{Deserialize, Serialize};
use shared::pki;
use shared::rfc3339;
use shared::signed::Format;
use std::path::{Path, PathBuf};
use time::OffsetDateTime;
use x509_cert::Certificate;

pub use crate::ldevid_key::{LDEVID_KEY, LDEVID_KEY_URI};
/// The LDevID certificate (and chain) file.
pub const LDEVID_CERT: &str = "ldevid.pem";
/// The domain trust anchors file.
pub const DOMAIN_CA: &str = "domain-ca.pem";
/// The summary file.
pub(crate) const STATUS_FILE: &str = "pledge-status.json";

/// The summary of the last bootstrap, as JSON in `pledge-status.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Summary {
    /// `brski` or `est-only`.
    pub mode: String,
    /// Why that mode.
    pub mode_reason: String,
    /// The server enrolled with.
    pub server: String,
    /// The pledge serial number.
    pub serial: String,
    /// When (RFC 3339).
    pub bootstrapped_at: String,
    /// LDevID subject.
    pub ldevid_subject: String,
    /// LDevID notAfter (RFC 3339).
    pub ldevid_not_after: String,
    /// Voucher format, when BRSKI ran.
    pub voucher_format: Option<String>,
}

/// Files written by [`write_outcome`].
#[derive(Debug, Clone)]
pub struct Written {
    /// The LDevID key (`ldevid.key`, or `ldevid.key-uri` for a TPM key).
    pub key: PathBuf,
    /// The LDevID and its chain.
    pub cert: PathBuf,
    /// The domain's CA certificates.
    pub domain_ca: PathBuf,
    /// The voucher, when BRSKI ran.
    pub voucher: Option<PathBuf>,
    /// The summary.
    pub status: PathBuf,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> std::io::Error + '_ {
    move |e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn pem(certs: &[Certificate]) -> String {
    certs.iter().filter_map(|c| pki::cert_to_pem(c).ok()).collect()
}

/// Writes the outcome of a bootstrap: the key (a 0600 file or a TPM key reference, replacing an
/// older one atomically), the
/// certificates, the voucher and the summary.
pub(crate) fn write_outcome(
    state: &Path,
    enrolled: &Enrolled,
    voucher: Option<(&[u8], Format)>,
    summary: &Summary,
) -> std::io::Result<Written> {
    std::fs::create_dir_all(state).map_err(io(state))?;
    let key = enrolled.key.commit(state).map_err(io(state))?;
    let cert = state.join(LDEVID_CERT);
    std::fs::write(&cert, pem(&enrolled.chain)).map_err(io(&cert))?;
    let domain_ca = state.join(DOMAIN_CA);
    std::fs::write(&domain_ca, pem(&enrolled.ca_certs)).map_err(io(&domain_ca))?;
    let voucher = match voucher {
        Some((bytes, format)) => {
            let p = state.join(format!("voucher.{}", format.file_extension()));
            std::fs::write(&p, bytes).map_err(io(&p))?;
            Some(p)
        }
        None => None,
    };
    let status = state.join(STATUS_FILE);
    let json = serde_json::to_vec_pretty(summary).map_err(std::io::Error::other)?;
    std::fs::write(&status, json).map_err(io(&status))?;
    Ok(Written { key, cert, domain_ca, voucher, status })
}

/// A summary for an enrolled LDevID.
pub(crate) fn summary(
    mode: &str,
    mode_reason: &str,
    server: &str,
    serial: &str,
    ldevid: &Certificate,
    format: Option<Format>,
) -> Summary {
    let tbs = ldevid.tbs_certificate();
    let not_after = OffsetDateTime::from(tbs.validity().not_after.to_system_time());
    Summary {
        mode: mode.into(),
        mode_reason: mode_reason.into(),
        server: server.into(),
        serial: serial.into(),
        bootstrapped_at: rfc3339::format(&OffsetDateTime::now_utc()),
        ldevid_subject: tbs.subject().to_string(),
        ldevid_not_after: rfc3339::format(&not_after),
        voucher_format: format.map(|f| f.to_string()),
    }
}

/// The text `brski pledge status` prints: what the pledge holds and when it expires.
pub fn status_text(state: &Path) -> std::io::Result<String> {
    let mut out = String::new();
    let idevid = std::fs::read(state.join("idevid.pem")).ok().and_then(|b| pki::certs_from_pem(&b).ok());
    match idevid.as_ref().and_then(|c| c.first()) {
        Some(c) => out.push_str(&format!(
            "IDevID:   {} (serial {})\n",
            c.tbs_certificate().subject(),
            pki::serial_number(c).unwrap_or_default()
        )),
        None => out.push_str("IDevID:   none found (idevid.pem)\n"),
    }
    let ldevid = std::fs::read(state.join(LDEVID_CERT)).ok().and_then(|b| pki::certs_from_pem(&b).ok());
    match ldevid.as_ref().and_then(|c| c.first()) {
        Some(c) => {
            let tbs = c.tbs_certificate();
            let not_after = OffsetDateTime::from(tbs.validity().not_after.to_system_time());
            let left = not_after - OffsetDateTime::now_utc();
            let when = if left.is_negative() {
                "EXPIRED".to_string()
            } else {
                format!("{} days left", left.whole_days())
            };
            out.push_str(&format!(
                "LDevID:   {}\n          issued by {}\n          expires {} ({when})\n",
                tbs.subject(),
                tbs.issuer(),
                rfc3339::format(&not_after)
            ));
        }
        None => out.push_str("LDevID:   none (not bootstrapped)\n"),
    }
    if let Some(n) = std::fs::read(state.join(DOMAIN_CA)).ok().and_then(|b| pki::certs_from_pem(&b).ok()) {
        out.push_str(&format!(
            "Domain:   {} trust anchor(s) in {}\n",
            n.len(),
            state.join(DOMAIN_CA).display()
        ));
    }
    if let Some(s) =
        std::fs::read(state.join(STATUS_FILE)).ok().and_then(|b| serde_json::from_slice::<Summary>(&b).ok())
    {
        out.push_str(&format!(
            "Last:     {} via {} at {} ({})\n",
            s.mode, s.server, s.bootstrapped_at, s.mode_reason
        ));
    }
    Ok(out)
}
