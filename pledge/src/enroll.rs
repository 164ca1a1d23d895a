//! EST after the voucher (RFC 8995 §5.9): the domain's CA certificates, the CSR attributes, a
//! CSR for a fresh LDevID key with the connection's tls-exporter in challengePassword (RFC
//! 9266), simpleenroll (waiting out 202 answers), a check that the LDevID chains to the
//! domain's anchors and holds the new key; and the status reports (`voucher_status`,
//! `enrollstatus`).

use crate::ldevid_key::{LdevidKeys, NewKey};
use est::binding::csr_with_challenge_password;
use est::client::{ClientError, Enrollment, EstConnection};
use shared::brski::{StatusReport, PATH_ENROLL_STATUS, PATH_VOUCHER_STATUS};
use shared::pki::{self, verify_chain};
use std::time::{Duration, Instant};
use x509_cert::Certificate;

/// What EST enrollment produced.
pub(crate) struct Enrolled {
    /// The new key (never left the pledge; in its TPM when the IDevID is there).
    pub key: NewKey,
    /// The LDevID, then its chain as returned.
    pub chain: Vec<Certificate>,
    /// The domain's CA certificates from /cacerts.
    pub ca_certs: Vec<Certificate>,
}

/// Why enrollment failed.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// An EST exchange failed.
    #[error("EST {step}: {source}")]
    Est {
        /// Which step.
        step: &'static str,
        /// The error.
        source: ClientError,
    },
    /// The result is unusable.
    #[error("EST: {0}")]
    Invalid(String),
}

fn est(step: &'static str) -> impl Fn(ClientError) -> EnrollError {
    move |source| EnrollError::Est { step, source }
}

/// Runs cacerts, csrattrs and simpleenroll on `conn` for a subject equal to the IDevID's
/// (it carries the serialNumber the registrar checks), with a new key from `keys`.
pub(crate) async fn enroll(
    conn: &mut EstConnection,
    subject: &x509_cert::name::Name,
    keys: &LdevidKeys,
    max_wait: Duration,
) -> Result<Enrolled, EnrollError> {
    let ca_certs = conn.cacerts().await.map_err(est("cacerts"))?;
    if ca_certs.is_empty() {
        return Err(EnrollError::Invalid("/cacerts returned no certificate".into()));
    }
    let attrs = conn.csrattrs().await.map_err(est("csrattrs"))?;
    tracing::debug!(count = attrs.len(), "CSR attributes");
    let key = keys.generate().map_err(|e| EnrollError::Invalid(format!("making the LDevID key: {e}")))?;
    let binding = conn.channel_binding();
    let csr = match binding.as_deref() {
        Some(b) => csr_with_challenge_password(subject, &[], key.signer.as_ref(), b)
            .map_err(|e| EnrollError::Invalid(format!("building the CSR: {e}")))?,
        None => pki::build_csr(subject, &[], key.signer.as_ref())
            .map_err(|e| EnrollError::Invalid(format!("building the CSR: {e}")))?,
    };
    let started = Instant::now();
    let chain = loop {
        match conn.simpleenroll(&csr).await.map_err(est("simpleenroll"))? {
            Enrollment::Done(chain) => break chain,
            Enrollment::Pending { retry_after } => {
                if started.elapsed() + retry_after > max_wait {
                    return Err(EnrollError::Invalid(
                        "enrollment still pending after the maximum wait".into(),
                    ));
                }
                tracing::info!(secs = retry_after.as_secs(), "enrollment pending; retrying");
                tokio::time::sleep(retry_after.min(Duration::from_secs(60))).await;
            }
        }
    };
    check_ldevid(&chain, &ca_certs, key.signer.as_ref())?;
    Ok(Enrolled { key, chain, ca_certs })
}

/// The LDevID must hold our key and chain to one of the domain's CA certificates.
fn check_ldevid(
    chain: &[Certificate],
    anchors: &[Certificate],
    key: &dyn shared::keys::Signer,
) -> Result<(), EnrollError> {
    let leaf = chain.first().ok_or_else(|| EnrollError::Invalid("no certificate was returned".into()))?;
    if pki::spki_der(leaf) != key.public_key_der() {
        return Err(EnrollError::Invalid("the returned certificate is not for our key".into()));
    }
    verify_chain(leaf, &chain[1..], anchors, time::OffsetDateTime::now_utc())
        .map(|_| ())
        .map_err(|e| EnrollError::Invalid(format!("the LDevID does not chain to the domain CA: {e}")))
}

/// POSTs a status report to `path`; the answer is logged and otherwise ignored (RFC 8995 §5.7).
async fn post_status(conn: &mut EstConnection, path: &str, report: &StatusReport) {
    match conn.post_raw(path, "application/json", None, report.to_json()).await {
        Ok(r) if r.status.is_success() => tracing::debug!(path, "status report accepted"),
        Ok(r) => {
            tracing::warn!(path, status = r.status.as_u16(), detail = %r.detail(), "status report refused")
        }
        Err(e) => tracing::warn!(path, error = %e, "status report not delivered"),
    }
}

/// voucher_status.
pub(crate) async fn voucher_status(conn: &mut EstConnection, report: &StatusReport) {
    post_status(conn, PATH_VOUCHER_STATUS, report).await;
}

/// enrollstatus.
pub(crate) async fn enroll_status(conn: &mut EstConnection, report: &StatusReport) {
    post_status(conn, PATH_ENROLL_STATUS, report).await;
}
