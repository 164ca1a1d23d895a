//! Checks on a verified CSR before anything is issued: its key (not the CA's, an allowed
//! algorithm), its channel binding, and for re-enrollment its names.

use crate::binding::challenge_password_for;
use crate::http::ConnectionInfo;
use crate::server::config::{BindingPolicy, LabelPolicy};
use crate::server::error::EstError;
use crate::server::state::ServerState;
use der::Encode;
use shared::pki::{spki_der, Csr, San};
use x509_cert::Certificate;

/// The names of `v` in a canonical order, for comparing two name sets.
fn sorted_san(mut v: Vec<San>) -> Vec<String> {
    let mut s: Vec<String> = v.drain(..).map(|x| format!("{x:?}")).collect();
    s.sort();
    s
}

/// RFC 7030 §4.2.2: subject and subjectAltName of a re-enrollment equal the current cert's.
pub(crate) fn check_same_names(csr: &Csr, current: &Certificate) -> Result<(), EstError> {
    let cur = current.tbs_certificate().subject();
    if csr.subject().to_der().ok() != cur.to_der().ok() {
        return Err(EstError::NameChanged(format!(
            "the CSR subject '{}' differs from the current certificate's '{cur}'",
            csr.subject()
        )));
    }
    if sorted_san(csr.requested_san()) != sorted_san(shared::pki::certificate_san(current)) {
        return Err(EstError::NameChanged(
            "the CSR's subjectAltName differs from the current certificate's".into(),
        ));
    }
    Ok(())
}

/// Checks the CSR's challengePassword against this connection's exporter per `policy`.
pub(crate) fn check_binding(policy: BindingPolicy, csr: &Csr, conn: &ConnectionInfo) -> Result<(), EstError> {
    if policy == BindingPolicy::Ignore {
        return Ok(());
    }
    let Some(given) = csr.challenge_password() else {
        return match policy {
            BindingPolicy::Require => Err(EstError::BindingRequired),
            _ => Ok(()),
        };
    };
    let expected = conn.exporter.map(|e| challenge_password_for(&e)).ok_or(EstError::BindingUnavailable)?;
    let same: bool = subtle_eq(given.trim().as_bytes(), expected.as_bytes());
    if same {
        Ok(())
    } else {
        Err(EstError::BindingMismatch)
    }
}

/// Constant-time equality of two byte strings (the length is not secret).
fn subtle_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks on a CSR whose key will be certified: not the CA's key, an allowed algorithm, and
/// no more subjectAltName entries than the label allows.
pub(crate) fn check_key(
    st: &ServerState,
    policy: &LabelPolicy,
    label: &str,
    csr: &Csr,
) -> Result<(), EstError> {
    let key = csr.public_key_der();
    if st.authority.ca_certs(label).iter().any(|c| spki_der(c) == key) {
        return Err(EstError::CaKeyReuse);
    }
    let sans = csr.requested_san().len();
    if sans > policy.max_sans {
        return Err(EstError::BadCsr(format!(
            "the CSR asks for {sans} subjectAltName entries; this label certifies at most {}",
            policy.max_sans
        )));
    }
    if !policy.allowed_key_algorithms.is_empty() {
        let alg = shared::crypto::PublicKey::from_spki_der(&key).ok().and_then(|k| k.algorithm());
        match alg {
            Some(a) if policy.allowed_key_algorithms.contains(&a) => {}
            Some(a) => return Err(EstError::KeyAlgorithm(a.to_string())),
            None => return Err(EstError::KeyAlgorithm("RSA or unknown".into())),
        }
    }
    Ok(())
}
