//! The seam between the EST front end and whatever issues certificates: the [`Authority`]
//! trait, and [`LocalCa`], an authority that signs with a local CA key and records every
//! certificate in the [`Store`] before handing it out.

use crate::wire::CsrAttr;
use shared::keys::Signer;
use shared::pki::{build_csr, issued_record, CertificateAuthority, Csr, Profile};
use shared::store::{AuditEvent, Store, StoreError};
use shared::Verified;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use x509_cert::Certificate;

/// The boxed `Send` future every asynchronous [`Authority`] method returns (keeps the trait
/// object-safe: servers hold an `Arc<dyn Authority>`).
pub type AuthorityFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Which EST operation a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `/simpleenroll`.
    Enroll,
    /// `/simplereenroll` (renew or rekey).
    Reenroll,
    /// `/serverkeygen`.
    ServerKeygen,
}

impl Operation {
    /// The path segment of the operation (`simpleenroll`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Enroll => "simpleenroll",
            Operation::Reenroll => "simplereenroll",
            Operation::ServerKeygen => "serverkeygen",
        }
    }
}

/// Who the client proved to be on this request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// Subject of the validated TLS client certificate, if one was presented and accepted.
    pub client_cert_subject: Option<String>,
    /// Serial (lower-case hex) of that client certificate.
    pub client_cert_serial: Option<String>,
    /// The HTTP Basic user name, if the password checked out.
    pub basic_user: Option<String>,
    /// The validated TLS client certificate itself (an authority may look inside it, e.g. a
    /// BRSKI registrar reads the IDevID's serialNumber).
    pub client_cert: Option<Certificate>,
}

impl Identity {
    /// A one-line description for logs and audit records (`anonymous` if nothing was proved).
    pub fn describe(&self) -> String {
        match (&self.client_cert_subject, &self.basic_user) {
            (Some(s), Some(u)) => format!("cert:{s} basic:{u}"),
            (Some(s), None) => format!("cert:{s}"),
            (None, Some(u)) => format!("basic:{u}"),
            (None, None) => "anonymous".to_string(),
        }
    }
}

/// Everything an authority needs to decide on an enrollment request.
#[derive(Debug)]
pub struct EnrollContext<'a> {
    /// The CA label ("" = the default label).
    pub label: &'a str,
    /// Which operation the request came through.
    pub operation: Operation,
    /// Who the client authenticated as.
    pub identity: &'a Identity,
    /// The CSR, signature checked.
    pub csr: &'a Verified<Csr>,
    /// A stable key for this request: SHA-256 over the label, the operation and the CSR's
    /// public key, so an identical retry after a 202 maps to the same pending entry.
    pub request_key: [u8; 32],
}

impl EnrollContext<'_> {
    /// Computes the [`EnrollContext::request_key`] for a label, operation and CSR.
    pub fn request_key_for(label: &str, operation: Operation, csr: &Csr) -> [u8; 32] {
        let mut input = Vec::new();
        for part in [label.as_bytes(), operation.as_str().as_bytes(), &csr.public_key_der()] {
            input.extend_from_slice(&(part.len() as u64).to_be_bytes());
            input.extend_from_slice(part);
        }
        shared::crypto::sha256(&input)
    }
}

/// What an authority decided about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Issue now.
    Approve,
    /// Not yet decided (e.g. manual approval): answer 202 with `Retry-After`.
    Pending {
        /// Seconds the client must wait before sending the same request again.
        retry_after_secs: u64,
    },
    /// Refused (403), with a reason the client may see.
    Deny(String),
}

/// Why an authority could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    /// The authority does not serve this label.
    #[error("no CA is configured for label '{0}'")]
    UnknownLabel(String),
    /// The request conflicts with the issuance profile (client error).
    #[error("the issuance profile refused the request: {0}")]
    Refused(String),
    /// Signing or encoding failed (server error).
    #[error("certificate issuance failed: {0}")]
    Issue(String),
    /// The store could not be read or written (nothing was handed out).
    #[error("the certificate store failed: {0}")]
    Store(#[from] StoreError),
}

/// The back end of an EST server: CA certificates, CSR attributes, authorization and issuance.
///
/// Object-safe; asynchronous methods return boxed `Send` futures ([`AuthorityFuture`]).
pub trait Authority: Send + Sync {
    /// The certificates `/cacerts` returns for `label`: the issuing CA, every intermediate and
    /// the root. Empty when the label is unknown.
    fn ca_certs(&self, label: &str) -> Vec<Certificate>;

    /// CSR attributes the authority wants for `label` (the server adds challengePassword when
    /// the label requires channel binding).
    fn csr_attrs(&self, label: &str) -> Vec<CsrAttr>;

    /// Decides on an enrollment request.
    fn authorize<'a>(&'a self, req: &'a EnrollContext<'a>) -> AuthorityFuture<'a, Decision>;

    /// Issues a certificate for the CSR under `label`'s profile. The issued certificate is
    /// committed to durable storage before this returns.
    fn issue<'a>(
        &'a self,
        label: &'a str,
        csr: &'a Verified<Csr>,
    ) -> AuthorityFuture<'a, Result<Certificate, AuthorityError>>;

    /// Issues a certificate for a key the server generated (`/serverkeygen`): the subject and
    /// subjectAltName come from the client's `csr`, the public key from `key`. The default
    /// builds a CSR for `key` with those names and calls [`Authority::issue`].
    fn issue_for_key<'a>(
        &'a self,
        label: &'a str,
        csr: &'a Verified<Csr>,
        key: &'a dyn Signer,
    ) -> AuthorityFuture<'a, Result<Certificate, AuthorityError>> {
        Box::pin(async move {
            let der = build_csr(csr.subject(), &csr.requested_san(), key)
                .map_err(|e| AuthorityError::Issue(e.to_string()))?;
            let fresh = Csr::verify_der(&der).map_err(|e| AuthorityError::Issue(e.to_string()))?;
            self.issue(label, &fresh).await
        })
    }

    /// True when the certificate with this serial (lower-case hex) has been revoked.
    fn is_revoked<'a>(&'a self, serial_hex: &'a str) -> AuthorityFuture<'a, Result<bool, AuthorityError>>;

    /// Who signs server-generated keys that are returned encrypted under `label` (RFC 7030
    /// §4.4.2: the key travels in a SignedData "signed by the party that generated the private
    /// key", inside an EnvelopedData). The default, `None`, means this authority cannot sign
    /// key packages: serverkeygen requests asking for key encryption are then answered 501.
    fn key_generator(&self, label: &str) -> Option<KeyGenerator<'_>> {
        let _ = label;
        None
    }
}

/// The signing identity of a key generator: the key and its certificate chain (the signer's
/// certificate first, then the certificates above it for the client's path building).
pub struct KeyGenerator<'a> {
    /// Signs the key package.
    pub signer: &'a dyn Signer,
    /// The signer's certificate, then its chain.
    pub chain: Vec<Certificate>,
}

impl std::fmt::Debug for KeyGenerator<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let subject = self.chain.first().map(|c| c.tbs_certificate().subject().to_string());
        f.debug_struct("KeyGenerator").field("signer", &subject).finish_non_exhaustive()
    }
}

/// An [`Authority`] over a local [`CertificateAuthority`]: one CA key for every label, a
/// [`Profile`] per label, every issued certificate recorded in the [`Store`] (and audited)
/// before it is returned. Requests are approved unless an approval hook says otherwise.
pub struct LocalCa {
    ca: CertificateAuthority,
    /// Certificates above the issuing CA (intermediates, root), sent by `/cacerts`.
    chain_above: Vec<Certificate>,
    store: Arc<dyn Store>,
    profiles: HashMap<String, Profile>,
    csr_attrs: HashMap<String, Vec<CsrAttr>>,
    approve: Option<ApprovalHook>,
}

/// A synchronous approval policy for [`LocalCa`] (e.g. a test's or a UI queue's decision).
pub type ApprovalHook = Arc<dyn Fn(&EnrollContext<'_>) -> Decision + Send + Sync>;

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCa")
            .field("ca", &self.ca)
            .field("labels", &self.profiles.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl LocalCa {
    /// A local CA serving the labels in `profiles` ("" = the default label).
    pub fn new(ca: CertificateAuthority, store: Arc<dyn Store>, profiles: HashMap<String, Profile>) -> Self {
        LocalCa { ca, chain_above: Vec::new(), store, profiles, csr_attrs: HashMap::new(), approve: None }
    }

    /// Adds the certificates above the issuing CA (intermediates then root) for `/cacerts`.
    pub fn with_chain_above(mut self, certs: Vec<Certificate>) -> Self {
        self.chain_above = certs;
        self
    }

    /// Sets the CSR attributes advertised for `label`.
    pub fn with_csr_attrs(mut self, label: &str, attrs: Vec<CsrAttr>) -> Self {
        self.csr_attrs.insert(label.to_string(), attrs);
        self
    }

    /// Installs an approval hook (default: approve everything the server authenticated).
    pub fn with_approval(mut self, hook: ApprovalHook) -> Self {
        self.approve = Some(hook);
        self
    }

    /// The issuing CA.
    pub fn ca(&self) -> &CertificateAuthority {
        &self.ca
    }
}

impl Authority for LocalCa {
    fn ca_certs(&self, label: &str) -> Vec<Certificate> {
        if !self.profiles.contains_key(label) {
            return Vec::new();
        }
        let mut v = vec![self.ca.certificate().clone()];
        v.extend(self.chain_above.iter().cloned());
        v
    }

    fn csr_attrs(&self, label: &str) -> Vec<CsrAttr> {
        self.csr_attrs.get(label).cloned().unwrap_or_default()
    }

    fn authorize<'a>(&'a self, req: &'a EnrollContext<'a>) -> AuthorityFuture<'a, Decision> {
        let d = match &self.approve {
            Some(hook) => hook(req),
            None => Decision::Approve,
        };
        Box::pin(std::future::ready(d))
    }

    fn issue<'a>(
        &'a self,
        label: &'a str,
        csr: &'a Verified<Csr>,
    ) -> AuthorityFuture<'a, Result<Certificate, AuthorityError>> {
        Box::pin(async move {
            let profile =
                self.profiles.get(label).ok_or_else(|| AuthorityError::UnknownLabel(label.to_string()))?;
            let profile_name = if label.is_empty() { "est".to_string() } else { format!("est:{label}") };
            // A serial collision (127 random bits) is next to impossible; draw again once if so.
            for attempt in 0..2 {
                let cert = self.ca.issue(csr, profile).map_err(|e| match e {
                    shared::pki::PkiError::Refused(r) => AuthorityError::Refused(r),
                    other => AuthorityError::Issue(other.to_string()),
                })?;
                let record =
                    issued_record(&cert, &profile_name).map_err(|e| AuthorityError::Issue(e.to_string()))?;
                let event = AuditEvent {
                    actor: format!("est:{}", if label.is_empty() { "default" } else { label }),
                    action: "est.cert.issued".to_string(),
                    subject: record.serial_hex.clone(),
                    detail: serde_json::json!({
                        "subject": record.subject,
                        "label": label,
                        "not_after": record.not_after.unix_timestamp(),
                    }),
                    at: time::OffsetDateTime::now_utc(),
                };
                // The certificate and its audit record are committed together, before the
                // certificate leaves this function.
                match self.store.record_certificate_audited(&record, &event).await {
                    Ok(_) => {}
                    Err(StoreError::Duplicate { .. }) if attempt == 0 => continue,
                    Err(e) => return Err(e.into()),
                }
                return Ok(cert);
            }
            Err(AuthorityError::Issue("serial number collided twice".into()))
        })
    }

    fn is_revoked<'a>(&'a self, serial_hex: &'a str) -> AuthorityFuture<'a, Result<bool, AuthorityError>> {
        Box::pin(async move { Ok(self.store.revocation(serial_hex).await?.is_some()) })
    }

    /// The local CA generates server-side keys, so its key signs the key packages (with its
    /// certificate and the chain above it, as `/cacerts` returns them).
    fn key_generator(&self, label: &str) -> Option<KeyGenerator<'_>> {
        self.profiles
            .contains_key(label)
            .then(|| KeyGenerator { signer: self.ca.signer(), chain: self.ca_certs(label) })
    }
}
