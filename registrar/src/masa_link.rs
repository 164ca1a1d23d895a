//! The registrar's calls to a MASA (RFC 8995 §5.4, §5.8): which MASA (the manufacturer's
//! override, else the IDevID's id-pe-masa-url), which TLS anchors (per manufacturer), and the
//! registrar's own certificate as TLS client identity.

use crate::config::Manufacturer;
use crate::error::RegistrarError;
use crate::server::Registrar;
use masa::client::MasaClient;
use shared::brski::{masa_base_url, AuditLog};
use shared::pki;
use shared::signed::Format;
use x509_cert::Certificate;

/// The base URL (`https://host:port/.well-known/brski`) of the pledge's MASA.
pub fn masa_url_for(m: &Manufacturer, idevid: &Certificate) -> Result<String, RegistrarError> {
    let raw = match &m.masa_url {
        Some(u) => u.clone(),
        None => pki::masa_url(idevid).ok_or_else(|| {
            RegistrarError::NotAuthorized(format!(
                "the IDevID has no id-pe-masa-url and manufacturer '{}' has no masa_url configured",
                m.name
            ))
        })?,
    };
    Ok(masa_base_url(&raw))
}

fn client(reg: &Registrar, m: &Manufacturer, idevid: &Certificate) -> Result<MasaClient, RegistrarError> {
    let url = masa_url_for(m, idevid)?;
    MasaClient::new(&url, m.masa_anchors.clone(), Some((reg.chain().to_vec(), reg.key())))
        .map(|c| c.with_timeout(reg.config().masa_timeout))
        .map_err(|e| RegistrarError::MasaUnreachable(format!("{url}: {e}")))
}

/// A voucher from the MASA: its media type and bytes.
pub struct MasaVoucher {
    /// Content-Type the MASA answered with.
    pub content_type: String,
    /// The signed voucher.
    pub bytes: Vec<u8>,
}

/// POSTs the registrar voucher-request and returns the voucher, or the MASA's refusal.
pub async fn request_voucher(
    reg: &Registrar,
    m: &Manufacturer,
    idevid: &Certificate,
    rvr: &[u8],
    format: Format,
    accept: &[Format],
) -> Result<MasaVoucher, RegistrarError> {
    let c = client(reg, m, idevid)?;
    let reply = c
        .request_voucher(rvr, format, accept)
        .await
        .map_err(|e| RegistrarError::MasaUnreachable(e.to_string()))?;
    if reply.status != axum::http::StatusCode::OK {
        let reason = reply.reason.unwrap_or_else(|| "no reason given".into());
        return Err(RegistrarError::Masa { status: reply.status.as_u16(), reason });
    }
    Ok(MasaVoucher { content_type: reply.content_type, bytes: reply.body })
}

/// POSTs the same registrar voucher-request to `requestauditlog`.
pub async fn request_audit_log(
    reg: &Registrar,
    m: &Manufacturer,
    idevid: &Certificate,
    rvr: &[u8],
    format: Format,
) -> Result<AuditLog, RegistrarError> {
    let c = client(reg, m, idevid)?;
    c.request_audit_log(rvr, format).await.map_err(|e| RegistrarError::MasaUnreachable(e.to_string()))
}
