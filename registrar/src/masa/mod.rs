//! The registrar's calls to a MASA (RFC 8995 §5.4, §5.8): which MASA (the manufacturer's
//! override, else the IDevID's id-pe-masa-url), which TLS anchors (per manufacturer), and the
//! registrar's own certificate as TLS client identity. The link is a value the registrar holds
//! ([`MasaLink`], `reg.masa()`), not a function of the whole registrar: it keeps one
//! [`MasaClient`] per MASA, so its keep-alive connections and TLS session cache serve every
//! pledge of that manufacturer instead of two new handshakes per bootstrap.

use crate::config::Manufacturer;
use crate::error::RegistrarError;
use shared::brski::{masa_base_url, AuditLog};
use shared::keys::Signer;
use shared::pki;
use shared::signed::Format;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use x509_cert::Certificate;

mod client;
pub use client::{MasaClient, MasaClientError, MasaReply};

/// More distinct MASAs than this and the cache starts over (the URL comes from the IDevIDs).
const MAX_CLIENTS: usize = 64;

/// The registrar's link to the MASAs: its TLS client identity, the per-exchange timeout, and
/// the kept clients by (manufacturer, MASA base URL). The anchors and the registrar identity
/// of a manufacturer do not change while the registrar runs.
pub struct MasaLink {
    identity: (Vec<Certificate>, Arc<dyn Signer>),
    timeout: Duration,
    clients: Mutex<HashMap<(String, String), MasaClient>>,
}

impl std::fmt::Debug for MasaLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kept = self.clients.lock().unwrap_or_else(PoisonError::into_inner).len();
        f.debug_struct("MasaLink").field("clients", &kept).field("timeout", &self.timeout).finish()
    }
}

/// The base URL (`https://host:port/.well-known/brski`) of the pledge's MASA.
pub(crate) fn masa_url_for(m: &Manufacturer, idevid: &Certificate) -> Result<String, RegistrarError> {
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

/// A voucher from the MASA: its media type and bytes.
pub struct MasaVoucher {
    /// Content-Type the MASA answered with.
    pub content_type: String,
    /// The signed voucher.
    pub bytes: Vec<u8>,
}

impl MasaLink {
    /// A link presenting `chain` (the registrar certificate, then the domain CA) with `key`,
    /// each exchange bounded by `timeout`.
    pub fn new(chain: Vec<Certificate>, key: Arc<dyn Signer>, timeout: Duration) -> Self {
        MasaLink { identity: (chain, key), timeout, clients: Mutex::default() }
    }

    /// The client of the pledge's MASA: the kept one, or a new one that is then kept.
    fn client(&self, m: &Manufacturer, idevid: &Certificate) -> Result<MasaClient, RegistrarError> {
        let url = masa_url_for(m, idevid)?;
        let key = (m.name.clone(), url);
        let lock = || self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = lock().get(&key) {
            return Ok(c.clone());
        }
        let c = MasaClient::new(&key.1, m.masa_anchors.clone(), Some(self.identity.clone()))
            .map(|c| c.with_timeout(self.timeout))
            .map_err(|e| RegistrarError::MasaUnreachable(format!("{}: {e}", key.1)))?;
        let mut clients = lock();
        if clients.len() >= MAX_CLIENTS {
            clients.clear();
        }
        Ok(clients.entry(key).or_insert(c).clone())
    }

    /// POSTs the registrar voucher-request and returns the voucher, or the MASA's refusal.
    pub async fn request_voucher(
        &self,
        m: &Manufacturer,
        idevid: &Certificate,
        rvr: &[u8],
        format: Format,
        accept: &[Format],
    ) -> Result<MasaVoucher, RegistrarError> {
        let c = self.client(m, idevid)?;
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
        &self,
        m: &Manufacturer,
        idevid: &Certificate,
        rvr: &[u8],
        format: Format,
    ) -> Result<AuditLog, RegistrarError> {
        let c = self.client(m, idevid)?;
        c.request_audit_log(rvr, format).await.map_err(|e| RegistrarError::MasaUnreachable(e.to_string()))
    }
}
