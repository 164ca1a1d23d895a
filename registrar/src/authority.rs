//! The registrar's EST authority: the domain CA ([`LocalCa`]) behind a gate that enrolls a
//! pledge authenticated by its IDevID only once it holds a voucher (RFC 8995 §5.9: a pending,
//! denied or refused pledge gets 403), and its CSR names the IDevID's serial number.
//! Clients holding a certificate of the domain CA (an LDevID renewing) pass the gate.

use crate::pledges::{self, PledgeState};
use est::authority::{Authority, AuthorityError, AuthorityFuture, Decision, EnrollContext, LocalCa};
use est::wire::CsrAttr;
use shared::keys::Signer;
use shared::pki::{self, verify_chain, Csr};
use shared::store::Store;
use shared::Verified;
use std::sync::Arc;
use x509_cert::Certificate;

/// The domain CA, gated on the pledge's voucher.
pub(crate) struct RegistrarAuthority {
    inner: LocalCa,
    store: Arc<dyn Store>,
}

impl RegistrarAuthority {
    /// The domain CA.
    pub(crate) fn ca(&self) -> &shared::pki::CertificateAuthority {
        self.inner.ca()
    }

    /// Gates `inner` with the pledge records in `store`.
    pub(crate) fn new(inner: LocalCa, store: Arc<dyn Store>) -> Self {
        RegistrarAuthority { inner, store }
    }

    fn domain_ca(&self) -> &Certificate {
        self.inner.ca().certificate()
    }

    /// The decision for a request authenticated with client certificate `cert`.
    async fn decide(&self, cert: &Certificate, csr: &Verified<Csr>) -> Decision {
        let now = time::OffsetDateTime::now_utc();
        if verify_chain(cert, &[], std::slice::from_ref(self.domain_ca()), now).is_ok() {
            // An LDevID renewing or enrolling again: only for its own serialNumber.
            return match pki::serial_number(cert) {
                Some(serial) => check_csr_serial(csr, &serial),
                None => Decision::Approve,
            };
        }
        let Some(serial) = pki::serial_number(cert) else {
            return Decision::Deny("the client certificate has no serialNumber".into());
        };
        let record = match pledges::get(self.store.as_ref(), &serial).await {
            Ok(Some(r)) => r,
            Ok(None) => return Decision::Deny(format!("pledge {serial} has no voucher: run BRSKI first")),
            Err(e) => return Decision::Deny(format!("pledge record unavailable: {e}")),
        };
        let fingerprint = pki::cert_to_der(cert).map(|d| hex::encode(shared::crypto::sha256(&d))).ok();
        if record.idevid_sha256.is_some() && record.idevid_sha256 != fingerprint {
            return Decision::Deny(format!("pledge {serial} obtained its voucher with another IDevID"));
        }
        if !record.state().holds_voucher() {
            let why = match record.state() {
                PledgeState::Pending => "is waiting for approval".to_string(),
                PledgeState::Refused | PledgeState::Denied => {
                    format!("was refused: {}", record.reason.as_deref().unwrap_or("by policy"))
                }
                _ => "has no voucher".to_string(),
            };
            return Decision::Deny(format!("pledge {serial} {why}; EST enrollment is refused"));
        }
        check_csr_serial(csr, &serial)
    }
}

/// RFC 8995 §5.9.2: the CSR must match what the registrar asked for; the LDevID subject must
/// carry the IDevID's serialNumber.
fn check_csr_serial(csr: &Verified<Csr>, serial: &str) -> Decision {
    let found: Option<String> = csr
        .subject()
        .by_oid::<x509_cert::ext::pkix::name::DirectoryString>(const_oid::db::rfc4519::SERIAL_NUMBER)
        .ok()
        .flatten()
        .map(|v| v.value().to_string());
    match found {
        Some(s) if s == serial => Decision::Approve,
        Some(s) => Decision::Deny(format!("the CSR's serialNumber {s} is not the IDevID's {serial}")),
        None => Decision::Deny(format!("the CSR subject must carry serialNumber={serial}")),
    }
}

impl Authority for RegistrarAuthority {
    fn ca_certs(&self, label: &str) -> Vec<Certificate> {
        self.inner.ca_certs(label)
    }

    fn csr_attrs(&self, label: &str) -> Vec<CsrAttr> {
        self.inner.csr_attrs(label)
    }

    fn authorize<'a>(&'a self, req: &'a EnrollContext<'a>) -> AuthorityFuture<'a, Decision> {
        Box::pin(async move {
            match &req.identity.client_cert {
                Some(cert) => self.decide(cert, req.csr).await,
                None => Decision::Deny("enrollment needs a TLS client certificate (IDevID or LDevID)".into()),
            }
        })
    }

    fn issue<'a>(
        &'a self,
        label: &'a str,
        csr: &'a Verified<Csr>,
    ) -> AuthorityFuture<'a, Result<Certificate, AuthorityError>> {
        self.inner.issue(label, csr)
    }

    fn issue_for_key<'a>(
        &'a self,
        label: &'a str,
        csr: &'a Verified<Csr>,
        key: &'a dyn Signer,
    ) -> AuthorityFuture<'a, Result<Certificate, AuthorityError>> {
        self.inner.issue_for_key(label, csr, key)
    }

    fn is_revoked<'a>(&'a self, serial_hex: &'a str) -> AuthorityFuture<'a, Result<bool, AuthorityError>> {
        self.inner.is_revoked(serial_hex)
    }
}
