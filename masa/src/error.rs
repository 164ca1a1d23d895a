//! Every way a MASA operation can fail: one enum, [`MasaError`], and its single mapping to HTTP
//! (`impl From<&MasaError> for Problem`: status, and a body that is RFC 9457 problem JSON or
//! plain UTF-8 text by negotiation).
//!
//! RFC 8995 §5.6 says the MASA's error body MUST be human-readable plain text; brski's standard
//! is RFC 9457. Both are served: a client whose `Accept` names `application/problem+json`
//! ([`est::http::MEDIA_PROBLEM`]) gets the problem object, every other client gets
//! `text/plain; charset=utf-8` with the same detail.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use est::http::{Area, Problem};
/// Media type of the RFC 8995 plain-text error body.
pub(crate) const MEDIA_TEXT: &str = "text/plain; charset=utf-8";

/// Every way a MASA operation can fail: request refusals (each RFC 8995 check its own
/// variant) and the operator-side failures of init, minting and claiming.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MasaError {
    /// Content-Type is not a voucher-request media type.
    #[error(
        "Content-Type must be a voucher-request media type (application/voucher-cms+json, \
         application/voucher-jws+json or application/voucher+cose), got '{0}'"
    )]
    UnsupportedMediaType(String),
    /// The body is over the limit.
    #[error("request body exceeds the limit of {0} bytes")]
    PayloadTooLarge(usize),
    /// The body could not be read.
    #[error("cannot read the request body: {0}")]
    BodyRead(String),
    /// A member of the TLS client certificate chain is not an X.509 certificate.
    #[error("the TLS client certificate chain is refused: {0}")]
    ClientCertRejected(String),
    /// The whole body did not arrive in time (seconds; RFC 9110 §15.5.9).
    #[error("the request body did not arrive within {0} s")]
    BodyTimeout(u64),
    /// No voucher format in `Accept` that this MASA can issue.
    #[error(
        "none of the media types in Accept ('{0}') can be issued; this MASA issues \
         application/voucher-cms+json, application/voucher-jws+json and application/voucher+cose"
    )]
    NotAcceptable(String),
    /// The body is not a signed voucher-request.
    #[error("the registrar voucher-request cannot be parsed: {0}")]
    MalformedRequest(String),
    /// The body's signature format differs from its Content-Type.
    #[error("the body is a {found} artifact but Content-Type says {declared}")]
    FormatMismatch {
        /// Format named by Content-Type.
        declared: String,
        /// Format of the body.
        found: String,
    },
    /// The registrar voucher-request's signature does not verify with the chain it carries.
    #[error(
        "registrar voucher-request signature does not verify with the certificate chain it carries: {0}"
    )]
    BadSignature(String),
    /// The registrar voucher-request's signer lacks id-kp-cmcRA.
    #[error(
        "the registrar voucher-request signer '{0}' lacks extended key usage id-kp-cmcRA \
         (1.3.6.1.5.5.7.3.28), so it is not a registrar certificate (RFC 8995 §5.5.4)"
    )]
    NotRegistrar(String),
    /// The signed payload is not a voucher-request.
    #[error("the signed payload is a {0}, not a voucher-request")]
    NotARequest(String),
    /// The voucher-request names no serial-number.
    #[error("the registrar voucher-request has no serial-number")]
    MissingSerialNumber,
    /// The registrar voucher-request carries a proximity-registrar-cert.
    #[error("a registrar voucher-request must not carry proximity-registrar-cert (RFC 8995 §5.5)")]
    ProximityCertInRequest,
    /// The prior-signed-voucher-request cannot be parsed or decoded.
    #[error("prior-signed-voucher-request is not a signed voucher-request: {0}")]
    PvrMalformed(String),
    /// The PVR is not signed by the key of the IDevID it carries.
    #[error("prior-signed-voucher-request is not signed by the IDevID it carries: {0}")]
    PvrBadSignature(String),
    /// The PVR's IDevID was not issued by this MASA's manufacturer CA.
    #[error("the pledge's IDevID was not issued by this manufacturer's CA: {0}")]
    ForeignDevice(String),
    /// The PVR signer's serialNumber differs from the RVR serial-number.
    #[error("serial-number {rvr:?} of the registrar request differs from the pledge's IDevID serialNumber {idevid:?}")]
    SerialMismatch {
        /// The RVR's serial-number.
        rvr: String,
        /// The pledge IDevID's (or the PVR's) serial number.
        idevid: String,
    },
    /// idevid-issuer of the RVR does not name the IDevID's issuer.
    #[error("idevid-issuer of the registrar request does not match the authority key identifier of the pledge's IDevID")]
    IdevidIssuerMismatch,
    /// PVR and RVR nonces differ.
    #[error("nonce of the registrar voucher-request does not match the pledge's nonce")]
    NonceMismatch,
    /// The PVR's proximity-registrar-cert is not in the RVR signer chain.
    #[error("proximity check failed: {0}")]
    ProximityMismatch(String),
    /// The serial number is not a device this MASA minted.
    #[error("serial-number {0:?} is not a device of this manufacturer")]
    UnknownDevice(String),
    /// No ownership record and no allow-any-owner policy.
    #[error(
        "serial {0} has no ownership record at this MASA; the manufacturer must record its owner \
         (brski masa claim) before vouchers are issued"
    )]
    NoOwner(String),
    /// The requesting domain is not the recorded owner.
    #[error("serial {0} is claimed by another domain")]
    OwnedByOther(String),
    /// A nonceless voucher was asked for and is not allowed.
    #[error("nonceless voucher refused: {0}")]
    NoncelessRefused(String),
    /// The requesting domain may not read the device's audit log.
    #[error("serial {0} has no audit log for this domain: it never received a voucher for it and is not its owner")]
    AuditLogDenied(String),
    /// A value given by the operator is not usable (serial number, URL, ...).
    #[error("{0}")]
    Invalid(String),
    /// The state directory is already initialised.
    #[error("{0} already exists: the MASA state is initialised there; refusing to overwrite keys")]
    AlreadyInitialised(String),
    /// The serial number was minted before.
    #[error("serial {0} was already minted by this MASA; serial numbers are unique")]
    AlreadyMinted(String),
    /// The configuration file is not valid.
    #[error("{0}")]
    Config(String),
    /// A file of the state directory could not be read or written.
    #[error("{path}: {detail}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// The store failed; nothing was issued.
    #[error("the MASA store is unavailable: {0}")]
    Store(String),
    /// The request took longer than allowed.
    #[error("the request took too long to process")]
    Timeout,
    /// A bug or a failure the client cannot fix (details only in the log).
    #[error("internal error: {0}")]
    Internal(String),
}

impl MasaError {
    /// HTTP status, problem type slug and title: the one mapping from errors to HTTP.
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        use MasaError::*;
        use StatusCode as S;
        match self {
            UnsupportedMediaType(_) => {
                (S::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", "Unsupported media type")
            }
            PayloadTooLarge(_) => (S::PAYLOAD_TOO_LARGE, "payload-too-large", "Request body too large"),
            BodyRead(_) => (S::BAD_REQUEST, "body-read", "Unreadable request body"),
            BodyTimeout(_) => (S::REQUEST_TIMEOUT, "body-timeout", "Request body too slow"),
            ClientCertRejected(_) => {
                (S::FORBIDDEN, "client-certificate-rejected", "Client certificate refused")
            }
            NotAcceptable(_) => (S::NOT_ACCEPTABLE, "not-acceptable", "No acceptable voucher format"),
            MalformedRequest(_) => (S::BAD_REQUEST, "malformed-request", "Malformed voucher-request"),
            FormatMismatch { .. } => (S::BAD_REQUEST, "format-mismatch", "Body does not match Content-Type"),
            BadSignature(_) => (S::FORBIDDEN, "bad-signature", "Voucher-request signature invalid"),
            NotRegistrar(_) => (S::FORBIDDEN, "not-registrar", "Signer is not a registrar"),
            NotARequest(_) => (S::BAD_REQUEST, "not-a-request", "Not a voucher-request"),
            MissingSerialNumber => (S::BAD_REQUEST, "missing-serial-number", "No serial-number"),
            ProximityCertInRequest => {
                (S::BAD_REQUEST, "proximity-cert-in-request", "proximity-registrar-cert not allowed")
            }
            PvrMalformed(_) => (S::FORBIDDEN, "pvr-malformed", "Invalid pledge voucher-request"),
            PvrBadSignature(_) => (S::FORBIDDEN, "pvr-bad-signature", "Pledge signature invalid"),
            ForeignDevice(_) => (S::FORBIDDEN, "foreign-device", "Not this manufacturer's device"),
            SerialMismatch { .. } => (S::FORBIDDEN, "serial-mismatch", "Serial number mismatch"),
            IdevidIssuerMismatch => (S::FORBIDDEN, "idevid-issuer-mismatch", "idevid-issuer mismatch"),
            NonceMismatch => (S::FORBIDDEN, "nonce-mismatch", "Nonce mismatch"),
            ProximityMismatch(_) => (S::FORBIDDEN, "proximity-mismatch", "Proximity check failed"),
            UnknownDevice(_) => (S::NOT_FOUND, "unknown-device", "Unknown device"),
            NoOwner(_) => (S::FORBIDDEN, "no-owner", "No ownership record"),
            OwnedByOther(_) => (S::FORBIDDEN, "not-owner", "Domain does not own the device"),
            NoncelessRefused(_) => (S::FORBIDDEN, "nonceless-refused", "Nonceless voucher refused"),
            AuditLogDenied(_) => (S::NOT_FOUND, "audit-log-denied", "No audit log for this domain"),
            Invalid(_) => (S::BAD_REQUEST, "invalid", "Invalid value"),
            AlreadyInitialised(_) | AlreadyMinted(_) => (S::CONFLICT, "exists", "Already exists"),
            Config(_) | Io { .. } => (S::INTERNAL_SERVER_ERROR, "internal", "Internal server error"),
            Store(_) => (S::SERVICE_UNAVAILABLE, "unavailable", "MASA unavailable"),
            Timeout => (S::SERVICE_UNAVAILABLE, "timeout", "Request processing timed out"),
            Internal(_) => (S::INTERNAL_SERVER_ERROR, "internal", "Internal server error"),
        }
    }

    /// The stable reason code (problem type suffix, metrics label).
    pub fn code(&self) -> &'static str {
        self.parts().1
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        self.parts().0
    }

    /// The RFC 9457 problem `type` URI of this error.
    pub fn problem_type(&self) -> String {
        Problem::from(self).type_uri()
    }

    /// The detail shown to the client: the message, except for server-side failures, whose
    /// details stay in the log and the audit record.
    pub fn detail(&self) -> String {
        match self {
            MasaError::Internal(_) | MasaError::Config(_) | MasaError::Io { .. } => {
                "internal error; the MASA log has the details".to_string()
            }
            MasaError::Store(_) => {
                "the MASA store is unavailable; nothing was issued, retry later".to_string()
            }
            other => other.to_string(),
        }
    }

    /// The HTTP answer: RFC 9457 problem JSON when `problem_json`, else RFC 8995 plain text.
    pub fn to_response(&self, problem_json: bool) -> Response {
        let problem = Problem::from(self);
        if !problem_json {
            let text = format!("{}\n", problem.detail());
            return (problem.status(), [(header::CONTENT_TYPE, MEDIA_TEXT)], text).into_response();
        }
        problem.into_response()
    }
}

/// The one mapping from a MASA error to HTTP (the RFC 8995 §5.6 text body is the same
/// problem's `detail`).
impl From<&MasaError> for Problem {
    fn from(e: &MasaError) -> Self {
        let (status, slug, title) = e.parts();
        Problem::new(Area::Masa, slug, status, e.detail()).with_title(title)
    }
}

impl From<shared::store::StoreError> for MasaError {
    fn from(e: shared::store::StoreError) -> Self {
        MasaError::Store(e.to_string())
    }
}

impl From<shared::pki::PkiError> for MasaError {
    fn from(e: shared::pki::PkiError) -> Self {
        MasaError::Internal(e.to_string())
    }
}

impl From<shared::keys::KeyError> for MasaError {
    fn from(e: shared::keys::KeyError) -> Self {
        MasaError::Internal(e.to_string())
    }
}

/// Maps an I/O error on `path` to [`MasaError::Io`].
pub(crate) fn io_error(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> MasaError + '_ {
    move |e| MasaError::Io { path: path.display().to_string(), detail: e.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use est::http::MEDIA_PROBLEM;

    #[test]
    fn bodies_are_negotiated() {
        let e = MasaError::OwnedByOther("SN-1".into());
        let text = e.to_response(false);
        assert_eq!(text.status(), StatusCode::FORBIDDEN);
        assert_eq!(text.headers()[header::CONTENT_TYPE], MEDIA_TEXT);
        let problem = e.to_response(true);
        assert_eq!(problem.headers()[header::CONTENT_TYPE], MEDIA_PROBLEM);
        assert_eq!(MasaError::UnknownDevice("x".into()).status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn internal_details_stay_inside() {
        let e = MasaError::Internal("disk on fire at /secret/path".into());
        assert!(!e.detail().contains("/secret"));
    }
}
