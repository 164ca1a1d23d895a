//! Every way a BRSKI request to the registrar can fail, and its one mapping to HTTP
//! (`impl From<&RegistrarError> for Problem`): the status RFC 8995 §5.3 asks for, and an
//! RFC 9457 problem body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use est::http::{Area, Problem};

/// A refused or failed BRSKI request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrarError {
    /// Content-Type is not a voucher-request (or status) media type.
    #[error("unsupported Content-Type '{0}'")]
    UnsupportedMediaType(String),
    /// Body over the limit.
    #[error("request body exceeds the limit of {0} bytes")]
    TooLarge(usize),
    /// Body could not be read.
    #[error("cannot read the request body: {0}")]
    Body(String),
    /// The whole body did not arrive in time (RFC 9110 §15.5.9).
    #[error("the request body did not arrive within {0} s")]
    BodyTimeout(u64),
    /// A member of the TLS client chain is not an X.509 certificate.
    #[error("the TLS client certificate chain is refused: {0}")]
    ClientCertRejected(String),
    /// No IDevID client certificate on the TLS connection.
    #[error("a TLS client certificate (the pledge's IDevID) is required")]
    NoClientCert,
    /// The client certificate does not chain to a trusted manufacturer.
    #[error("the IDevID does not chain to a trusted manufacturer: {0}")]
    UnknownManufacturer(String),
    /// The IDevID has no serialNumber in its subject.
    #[error("the IDevID subject has no serialNumber")]
    NoSerial,
    /// The voucher-request is malformed or badly signed.
    #[error("the voucher-request is not valid: {0}")]
    BadRequest(String),
    /// The voucher-request is signed by another key than the TLS client certificate's.
    #[error("the voucher-request is signed by a key other than the TLS client certificate's")]
    SignerMismatch,
    /// proximity-registrar-cert is not this registrar's certificate (RFC 8995 §5.3: 401).
    #[error("proximity-registrar-cert is not this registrar's certificate")]
    ProximityMismatch,
    /// The voucher-request's serial-number differs from the IDevID's.
    #[error("serial-number {request} in the voucher-request differs from the IDevID's {idevid}")]
    SerialMismatch {
        /// In the request.
        request: String,
        /// In the IDevID.
        idevid: String,
    },
    /// The nonce was used before.
    #[error("replayed voucher-request: its nonce was already used")]
    Replay,
    /// Policy refuses the pledge.
    #[error("the pledge is not authorized in this domain: {0}")]
    NotAuthorized(String),
    /// Waiting for an operator.
    #[error("the pledge is waiting for approval")]
    Pending {
        /// Seconds to wait.
        retry_after: u64,
    },
    /// The MASA refused or failed.
    #[error("the MASA refused the voucher-request ({status}): {reason}")]
    Masa {
        /// Status the MASA answered (passed on for 4xx; 502 otherwise).
        status: u16,
        /// Its reason.
        reason: String,
    },
    /// The MASA could not be reached.
    #[error("the MASA could not be reached: {0}")]
    MasaUnreachable(String),
    /// The pledge is unknown (status reports).
    #[error("no voucher-request is on record for this pledge")]
    UnknownPledge,
    /// Storage failed.
    #[error("the registrar's store failed: {0}")]
    Store(String),
    /// Anything else on our side.
    #[error("internal error: {0}")]
    Internal(String),
}

impl RegistrarError {
    /// The HTTP status (RFC 8995 §5.3, §5.6).
    pub fn status(&self) -> StatusCode {
        use RegistrarError::*;
        match self {
            UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Body(_) | BadRequest(_) | NoSerial => StatusCode::BAD_REQUEST,
            BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            NoClientCert | ProximityMismatch => StatusCode::UNAUTHORIZED,
            ClientCertRejected(_)
            | UnknownManufacturer(_)
            | SignerMismatch
            | SerialMismatch { .. }
            | Replay
            | NotAuthorized(_) => StatusCode::FORBIDDEN,
            Pending { .. } => StatusCode::ACCEPTED,
            Masa { status, .. } if (400..500).contains(status) => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
            }
            Masa { .. } | MasaUnreachable(_) => StatusCode::BAD_GATEWAY,
            UnknownPledge => StatusCode::NOT_FOUND,
            Store(_) | Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short machine-readable reason, for the problem type and the audit log.
    pub fn code(&self) -> &'static str {
        use RegistrarError::*;
        match self {
            UnsupportedMediaType(_) => "unsupported-media-type",
            TooLarge(_) => "too-large",
            Body(_) => "body",
            BodyTimeout(_) => "body-timeout",
            ClientCertRejected(_) => "client-certificate-rejected",
            NoClientCert => "no-client-certificate",
            UnknownManufacturer(_) => "unknown-manufacturer",
            NoSerial => "no-serial-number",
            BadRequest(_) => "bad-voucher-request",
            SignerMismatch => "signer-mismatch",
            ProximityMismatch => "proximity-mismatch",
            SerialMismatch { .. } => "serial-mismatch",
            Replay => "replay",
            NotAuthorized(_) => "not-authorized",
            Pending { .. } => "pending",
            Masa { .. } => "masa-refused",
            MasaUnreachable(_) => "masa-unreachable",
            UnknownPledge => "unknown-pledge",
            Store(_) => "store",
            Internal(_) => "internal",
        }
    }
}

/// A body the one reader could not read, as a BRSKI refusal.
impl From<&est::http::BodyError> for RegistrarError {
    fn from(e: &est::http::BodyError) -> Self {
        match e {
            est::http::BodyError::TooLarge(n) => RegistrarError::TooLarge(*n),
            est::http::BodyError::Timeout(t) => RegistrarError::BodyTimeout(t.as_secs()),
            est::http::BodyError::Read(r) => RegistrarError::Body(r.clone()),
        }
    }
}

/// The one mapping from a BRSKI refusal to HTTP.
impl From<&RegistrarError> for Problem {
    fn from(e: &RegistrarError) -> Self {
        let p = Problem::new(Area::Brski, e.code(), e.status(), e.to_string());
        match e {
            RegistrarError::Pending { retry_after } => p.with_retry_after(*retry_after),
            // RFC 8995 §5.3: an on-path attacker; the registrar closes the connection.
            RegistrarError::ProximityMismatch => p.with_connection_close(),
            _ => p,
        }
    }
}

impl IntoResponse for RegistrarError {
    fn into_response(self) -> Response {
        Problem::from(&self).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header;

    #[test]
    fn statuses_follow_rfc8995() {
        assert_eq!(RegistrarError::ProximityMismatch.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(RegistrarError::Replay.status(), StatusCode::FORBIDDEN);
        assert_eq!(RegistrarError::Masa { status: 404, reason: "x".into() }.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            RegistrarError::Masa { status: 500, reason: "x".into() }.status(),
            StatusCode::BAD_GATEWAY
        );
        let r = RegistrarError::Pending { retry_after: 7 }.into_response();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        assert_eq!(r.headers()[header::RETRY_AFTER], "7");
    }
}
