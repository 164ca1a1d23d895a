//! Certificate path validation at a chosen time (RFC 5280 §6, the parts BRSKI relies on):
//! name chaining, signatures, validity, CA basic constraints and key usage, path length, and
//! refusal of critical extensions this code does not understand.

use super::idevid::subject_key_id;
use crate::crypto::PublicKey;
use const_oid::db::rfc5280::{
    ID_CE_AUTHORITY_KEY_IDENTIFIER, ID_CE_BASIC_CONSTRAINTS, ID_CE_EXT_KEY_USAGE, ID_CE_KEY_USAGE,
    ID_CE_SUBJECT_ALT_NAME, ID_CE_SUBJECT_KEY_IDENTIFIER,
};
use const_oid::ObjectIdentifier;
use der::Encode;
use time::OffsetDateTime;
use x509_cert::ext::pkix::{AuthorityKeyIdentifier, BasicConstraints, KeyUsage, KeyUsages};
use x509_cert::Certificate;

/// Longest path accepted (leaf + intermediates + anchor).
const MAX_DEPTH: usize = 8;

/// Critical extensions this validator processes; any other critical extension fails the path.
const UNDERSTOOD_CRITICAL: [ObjectIdentifier; 7] = [
    ID_CE_BASIC_CONSTRAINTS,
    ID_CE_KEY_USAGE,
    ID_CE_EXT_KEY_USAGE,
    ID_CE_SUBJECT_ALT_NAME,
    ID_CE_SUBJECT_KEY_IDENTIFIER,
    ID_CE_AUTHORITY_KEY_IDENTIFIER,
    super::IDEVID_MASA_URL_OID,
];

/// Why a certificate path does not validate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// A certificate had expired at the verification time.
    #[error("certificate '{subject}' expired at {not_after} (checked at {at})")]
    Expired {
        /// Its subject.
        subject: String,
        /// Its notAfter.
        not_after: String,
        /// The verification time.
        at: String,
    },
    /// A certificate was not yet valid at the verification time.
    #[error("certificate '{subject}' is not valid before {not_before} (checked at {at})")]
    NotYetValid {
        /// Its subject.
        subject: String,
        /// Its notBefore.
        not_before: String,
        /// The verification time.
        at: String,
    },
    /// No trusted issuer found for a certificate.
    #[error("certificate '{subject}' was not issued by a trusted anchor (issuer '{issuer}' not found or its signature does not verify)")]
    UntrustedIssuer {
        /// The subject whose issuer is missing.
        subject: String,
        /// The issuer name it names.
        issuer: String,
    },
    /// An issuing certificate is not a CA.
    #[error("certificate '{0}' signs other certificates but is not a CA (basicConstraints/keyUsage)")]
    NotCa(String),
    /// A critical extension this code cannot process.
    #[error("certificate '{subject}' has an unknown critical extension {oid}")]
    UnknownCriticalExtension {
        /// Its subject.
        subject: String,
        /// The extension's OID.
        oid: String,
    },
    /// The path is longer than allowed or exceeds a pathLenConstraint.
    #[error("certificate path too long at '{0}'")]
    PathTooLong(String),
    /// A certificate could not be read.
    #[error("malformed certificate: {0}")]
    Malformed(String),
}

/// Verifies that `leaf` chains to one of `anchors` through `intermediates`, with every
/// certificate valid at `at`. Returns the path, leaf first, anchor last. A leaf that is itself
/// a trust anchor (a pinned end-entity certificate) validates as a path of one.
pub fn verify_chain(
    leaf: &Certificate,
    intermediates: &[Certificate],
    anchors: &[Certificate],
    at: OffsetDateTime,
) -> Result<Vec<Certificate>, ChainError> {
    check_cert(leaf, at)?;
    if anchors.iter().any(|a| a == leaf) {
        return Ok(vec![leaf.clone()]);
    }
    let mut path = vec![leaf.clone()];
    loop {
        let current = path.last().cloned().ok_or_else(|| ChainError::Malformed("empty path".into()))?;
        if path.len() >= MAX_DEPTH {
            return Err(ChainError::PathTooLong(subject_of(&current)));
        }
        if let Some(anchor) = anchors.iter().find(|a| issued_by(&current, a)) {
            check_issuer(anchor, at, path.len() - 1)?;
            path.push(anchor.clone());
            return Ok(path);
        }
        let next = intermediates
            .iter()
            .filter(|c| !path.contains(c))
            .find(|c| issued_by(&current, c))
            .cloned()
            .ok_or_else(|| ChainError::UntrustedIssuer {
                subject: subject_of(&current),
                issuer: current.tbs_certificate().issuer().to_string(),
            })?;
        check_issuer(&next, at, path.len() - 1)?;
        path.push(next);
    }
}

/// Checks validity at `at` and critical extensions of one certificate.
fn check_cert(cert: &Certificate, at: OffsetDateTime) -> Result<(), ChainError> {
    let v = cert.tbs_certificate().validity();
    let secs = |t: &x509_cert::time::Time| t.to_unix_duration().as_secs() as i128;
    let now = at.unix_timestamp() as i128;
    if now < secs(&v.not_before) {
        return Err(ChainError::NotYetValid {
            subject: subject_of(cert),
            not_before: v.not_before.to_string(),
            at: at.to_string(),
        });
    }
    if now > secs(&v.not_after) {
        return Err(ChainError::Expired {
            subject: subject_of(cert),
            not_after: v.not_after.to_string(),
            at: at.to_string(),
        });
    }
    for ext in cert.tbs_certificate().extensions().map(|e| e.as_slice()).unwrap_or_default() {
        if ext.critical && !UNDERSTOOD_CRITICAL.contains(&ext.extn_id) {
            return Err(ChainError::UnknownCriticalExtension {
                subject: subject_of(cert),
                oid: ext.extn_id.to_string(),
            });
        }
    }
    Ok(())
}

/// Checks that `issuer` may issue: valid, a CA, key usage allows it, path length respected.
fn check_issuer(issuer: &Certificate, at: OffsetDateTime, certs_below: usize) -> Result<(), ChainError> {
    check_cert(issuer, at)?;
    let tbs = issuer.tbs_certificate();
    let bc: Option<BasicConstraints> = tbs.get_extension().ok().flatten().map(|(_, bc)| bc);
    let is_v1_root = tbs.extensions().is_none() && tbs.subject() == tbs.issuer();
    match bc {
        Some(bc) if bc.ca => {
            if let Some(max) = bc.path_len_constraint {
                // certs_below counts the leaf; intermediates below this CA = certs_below - 1.
                if certs_below > usize::from(max) + 1 {
                    return Err(ChainError::PathTooLong(subject_of(issuer)));
                }
            }
        }
        None if is_v1_root => {}
        _ => return Err(ChainError::NotCa(subject_of(issuer))),
    }
    let ku: Option<KeyUsage> = tbs.get_extension().ok().flatten().map(|(_, ku)| ku);
    if ku.is_some_and(|k| !k.0.contains(KeyUsages::KeyCertSign)) {
        return Err(ChainError::NotCa(subject_of(issuer)));
    }
    Ok(())
}

/// True when `issuer`'s name (and key identifier, when both sides carry one) matches
/// `cert`'s issuer and `issuer`'s key verifies `cert`'s signature.
fn issued_by(cert: &Certificate, issuer: &Certificate) -> bool {
    if cert.tbs_certificate().issuer() != issuer.tbs_certificate().subject() {
        return false;
    }
    let aki: Option<AuthorityKeyIdentifier> =
        cert.tbs_certificate().get_extension().ok().flatten().map(|(_, a)| a);
    if let Some(kid) = aki.and_then(|a| a.key_identifier) {
        let has_ski = issuer
            .tbs_certificate()
            .extensions()
            .is_some_and(|e| e.iter().any(|x| x.extn_id == ID_CE_SUBJECT_KEY_IDENTIFIER));
        if has_ski && kid.as_bytes() != subject_key_id(issuer).as_slice() {
            return false;
        }
    }
    signature_ok(cert, issuer)
}

/// Whether `issuer`'s key verifies `cert`'s signature. A verified (issuer key, signed bytes,
/// algorithm, signature) is remembered in [`VerifiedSignatures`]: servers check the same
/// certificates (their own, a registrar's, a pledge's IDevID) several times per exchange.
fn signature_ok(cert: &Certificate, issuer: &Certificate) -> bool {
    let Ok(spki) = issuer.tbs_certificate().subject_public_key_info().to_der() else { return false };
    let Ok(tbs) = cert.tbs_certificate().to_der() else { return false };
    let Some(sig) = cert.signature().as_bytes() else { return false };
    let alg = &cert.signature_algorithm().oid;
    let id = VerifiedSignatures::id(&spki, alg, &tbs, sig);
    if VERIFIED.contains(&id) {
        return true;
    }
    let Ok(key) = PublicKey::from_spki_der(&spki) else { return false };
    let ok = key.verify_x509(alg, &tbs, sig).is_ok();
    if ok {
        VERIFIED.insert(id);
    }
    ok
}

/// Certificate signatures this process has verified, by the SHA-256 of everything the
/// verification depended on (the issuer's SubjectPublicKeyInfo, the algorithm, the signed
/// bytes and the signature), so a hit means the same computation succeeded before. Only
/// successes are kept; validity, names and constraints are still checked on every path. At
/// most [`MAX_VERIFIED`] entries: when full it starts over.
struct VerifiedSignatures(std::sync::Mutex<std::collections::HashSet<[u8; 32]>>);

/// Entries kept by [`VERIFIED`].
const MAX_VERIFIED: usize = 4096;

static VERIFIED: std::sync::LazyLock<VerifiedSignatures> =
    std::sync::LazyLock::new(|| VerifiedSignatures(std::sync::Mutex::default()));

impl VerifiedSignatures {
    fn id(spki: &[u8], alg: &ObjectIdentifier, tbs: &[u8], sig: &[u8]) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for part in [spki, alg.as_bytes(), tbs, sig] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        h.finalize().into()
    }

    fn contains(&self, id: &[u8; 32]) -> bool {
        self.0.lock().is_ok_and(|set| set.contains(id))
    }

    fn insert(&self, id: [u8; 32]) {
        if let Ok(mut set) = self.0.lock() {
            if set.len() >= MAX_VERIFIED {
                set.clear();
            }
            set.insert(id);
        }
    }
}

fn subject_of(cert: &Certificate) -> String {
    cert.tbs_certificate().subject().to_string()
}
