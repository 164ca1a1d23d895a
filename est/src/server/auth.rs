//! Authentication of enrollment requests: TLS client certificates (chained to the label's
//! anchors, or to this CA for re-enrollment, and not revoked) and HTTP Basic credentials
//! (argon2, with recently verified credentials answered from the [`CredentialCache`]).

use super::config::{AuthRequirement, LabelPolicy};
use super::credential_cache::CredentialCache;
use super::error::EstError;
use super::password::PasswordChecks;
use super::state::ServerState;
use crate::authority::Identity;
use crate::http::{ConnectionInfo, FailureLimiter};
use axum::http::{header, HeaderMap};
use shared::pki::verify_chain;
use std::time::Instant;
use x509_cert::Certificate;

/// The client certificate chain of the connection, parsed by the one rule
/// ([`ConnectionInfo::peer_chain`]): (leaf, the rest), or none.
fn peer_chain(conn: &ConnectionInfo) -> Result<Option<(Certificate, Vec<Certificate>)>, EstError> {
    let mut certs = conn.peer_chain().map_err(|e| EstError::ClientCertRejected(e.to_string()))?;
    if certs.is_empty() {
        return Ok(None);
    }
    let leaf = certs.remove(0);
    Ok(Some((leaf, certs)))
}

/// The certificate's serial number in hex, as the store and the logs name it.
pub(crate) fn serial_hex(cert: &Certificate) -> String {
    hex::encode(cert.tbs_certificate().serial_number().as_bytes())
}

/// Validates a client certificate against `anchors` now and, when this CA issued it (the
/// certificate above it in the path is one of `label`'s CA certificates), the store's
/// revocations: they list this CA's serial numbers only, so another CA's certificate (a
/// manufacturer's IDevID) that happens to share a serial is not refused, and costs no lookup.
async fn validate_client_cert(
    st: &ServerState,
    label: &str,
    leaf: &Certificate,
    rest: &[Certificate],
    anchors: &[Certificate],
) -> Result<(), String> {
    if anchors.is_empty() {
        return Err("no trust anchors are configured for client certificates on this label".into());
    }
    let path =
        verify_chain(leaf, rest, anchors, time::OffsetDateTime::now_utc()).map_err(|e| e.to_string())?;
    let ours = st.authority.ca_certs(label);
    // A pinned end-entity anchor (a path of one) is checked too: it may be one of ours.
    let issued_here = path.get(1).is_none_or(|issuer| ours.contains(issuer));
    if !issued_here {
        return Ok(());
    }
    match st.authority.is_revoked(&serial_hex(leaf)).await {
        Ok(false) => Ok(()),
        Ok(true) => Err(format!("certificate {} has been revoked", serial_hex(leaf))),
        Err(e) => Err(format!("revocation status unavailable: {e}")),
    }
}

/// The Basic credentials of a request: `None` without an Authorization Basic header,
/// `Some(Err)` for a malformed one.
fn basic_credentials(headers: &HeaderMap) -> Option<Result<(String, String), ()>> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = shared::b64::decode_lenient(rest.trim()).ok().and_then(|b| String::from_utf8(b).ok());
    Some(decoded.and_then(|s| s.split_once(':').map(|(u, p)| (u.to_string(), p.to_string()))).ok_or(()))
}

/// Why Basic credentials did not authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BasicFailure {
    /// Unknown user, wrong password or a malformed header (401).
    Wrong,
    /// Refused before checking: too many failures (429), or no slot for argon2 (503).
    Refused(EstError),
}

/// What a Basic check runs under: the cache of recently verified credentials, the bound on
/// argon2 checks at once, and the failure counters.
pub(crate) struct BasicGuards<'a> {
    pub(crate) cache: &'a CredentialCache,
    pub(crate) work: &'a PasswordChecks,
    pub(crate) failures: &'a FailureLimiter,
}

impl<'a> BasicGuards<'a> {
    /// The server's guards.
    pub(crate) fn of(st: &'a ServerState) -> Self {
        BasicGuards { cache: &st.verified_basic, work: &st.password_checks, failures: &st.failures }
    }
}

/// Checks Basic credentials against the label's users. In order, so that a flood costs as
/// little as possible: credentials that passed argon2 on this label less than the cache's TTL
/// ago are accepted from the cache; past the failure limits of the client `address` or the
/// user name, 429 without argon2; otherwise argon2 under the work bound (503 when no slot is
/// free in time). Every attempt counts as a failure until it succeeds; only a success is cached.
async fn check_basic(
    g: &BasicGuards<'_>,
    policy: &LabelPolicy,
    label: &str,
    headers: &HeaderMap,
    address: &str,
) -> Option<Result<String, BasicFailure>> {
    let creds = basic_credentials(headers)?;
    let now = Instant::now();
    let Ok((user, pass)) = creds else {
        return Some(Err(match g.failures.attempt(address, "", now) {
            Ok(()) => BasicFailure::Wrong,
            Err(e) => BasicFailure::Refused(e.into()),
        }));
    };
    let key = CredentialCache::key(label, &user, &pass);
    if key.is_some_and(|k| g.cache.contains(&k, now)) {
        return Some(Ok(user));
    }
    let named = format!("{label}\u{0}{user}");
    if let Err(e) = g.failures.attempt(address, &named, now) {
        return Some(Err(BasicFailure::Refused(e.into())));
    }
    // An unknown user costs argon2 too (against a fixed hash), so timing does not tell
    // which user names exist.
    let known = policy.basic_users.get(&user).cloned();
    let phc = known.clone().unwrap_or_else(|| UNKNOWN_USER_PHC.to_string());
    let ok = match g.work.verify(phc, pass).await {
        Ok(ok) => ok && known.is_some(),
        Err(busy) => {
            // Not checked, so not a failure of the client's.
            g.failures.succeeded(address, &named);
            return Some(Err(BasicFailure::Refused(busy.into())));
        }
    };
    if !ok {
        return Some(Err(BasicFailure::Wrong));
    }
    g.failures.succeeded(address, &named);
    if let Some(k) = key {
        g.cache.insert(k, Instant::now());
    }
    Some(Ok(user))
}

/// An argon2id hash (default parameters) of a random password nobody knows: what an unknown
/// user's password is checked against.
const UNKNOWN_USER_PHC: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$1yfA8WWpJEF04yyaaMsZrw$3LawIcm2dFaMULQ9rnwmtHtHes67SgHQ+/PV7kSxpAU";

/// Authenticates simpleenroll / serverkeygen per the label's [`AuthRequirement`].
pub(crate) async fn authenticate_enroll(
    st: &ServerState,
    policy: &LabelPolicy,
    label: &str,
    conn: &ConnectionInfo,
    headers: &HeaderMap,
) -> Result<Identity, EstError> {
    let cert = match peer_chain(conn)? {
        None => None,
        Some((leaf, rest)) => Some(
            validate_client_cert(st, label, &leaf, &rest, &policy.client_cert_anchors).await.map(|()| leaf),
        ),
    };
    let basic = match policy.auth {
        AuthRequirement::ClientCert => None,
        _ => {
            let address = conn.remote.map(|r| r.ip().to_string()).unwrap_or_default();
            check_basic(&BasicGuards::of(st), policy, label, headers, &address).await
        }
    };
    let mut id = Identity::default();
    if let Some(Ok(leaf)) = &cert {
        id.client_cert_subject = Some(leaf.tbs_certificate().subject().to_string());
        id.client_cert_serial = Some(serial_hex(leaf));
        id.client_cert = Some(leaf.clone());
    }
    if let Some(Ok(user)) = &basic {
        id.basic_user = Some(user.clone());
    }
    let cert_problem = || match &cert {
        Some(Err(r)) => EstError::ClientCertRejected(r.clone()),
        _ => EstError::ClientCertRequired("a TLS client certificate is required for this label".into()),
    };
    let basic_problem = || match &basic {
        Some(Err(BasicFailure::Wrong)) => EstError::AuthRequired("wrong user name or password".into()),
        Some(Err(BasicFailure::Refused(e))) => e.clone(),
        _ => EstError::AuthRequired("HTTP Basic credentials are required".into()),
    };
    let cert_ok = id.client_cert_subject.is_some();
    let basic_ok = id.basic_user.is_some();
    match policy.auth {
        AuthRequirement::ClientCert if !cert_ok => Err(cert_problem()),
        AuthRequirement::Basic if !basic_ok => Err(basic_problem()),
        AuthRequirement::Both if !cert_ok => Err(cert_problem()),
        AuthRequirement::Both if !basic_ok => Err(basic_problem()),
        AuthRequirement::Either if !cert_ok && !basic_ok => match (&basic, &cert) {
            (Some(Err(_)), _) => Err(basic_problem()),
            (_, Some(Err(r))) => Err(EstError::AuthRequired(format!(
                "client certificate refused ({r}); present a valid certificate or HTTP Basic credentials"
            ))),
            _ => Err(EstError::AuthRequired(
                "present a TLS client certificate or HTTP Basic credentials".into(),
            )),
        },
        _ => Ok(id),
    }
}

/// Authenticates simplereenroll: the client certificate must be one this CA issued, valid now
/// and not revoked. Returns the identity and the current certificate.
pub(crate) async fn authenticate_reenroll(
    st: &ServerState,
    conn: &ConnectionInfo,
    label: &str,
) -> Result<(Identity, Certificate), EstError> {
    let (leaf, rest) = peer_chain(conn)?.ok_or_else(|| {
        EstError::ClientCertRequired(
            "simplereenroll requires the TLS client certificate being renewed (RFC 7030 §3.3.2)".into(),
        )
    })?;
    let anchors = st.authority.ca_certs(label);
    validate_client_cert(st, label, &leaf, &rest, &anchors)
        .await
        .map_err(|r| EstError::ClientCertRejected(format!("not a current certificate of this CA: {r}")))?;
    let id = Identity {
        client_cert_subject: Some(leaf.tbs_certificate().subject().to_string()),
        client_cert_serial: Some(serial_hex(&leaf)),
        basic_user: None,
        client_cert: Some(leaf.clone()),
    };
    Ok((id, leaf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::WorkBound;
    use crate::server::password::hash_password;
    use axum::http::HeaderValue;
    use shared::pki::Profile;
    use std::time::Duration;

    fn basic(user: &str, password: &str) -> HeaderMap {
        let token = shared::b64::encode(format!("{user}:{password}").as_bytes());
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Basic {token}")).unwrap());
        h
    }

    #[tokio::test]
    async fn basic_success_is_cached_and_failure_is_not() {
        let mut policy = LabelPolicy::new(Profile::end_entity(Duration::from_secs(60)));
        policy.basic_users.insert("alice".into(), hash_password("s3cret").unwrap());
        let cache = CredentialCache::default();
        let (work, failures) = (
            PasswordChecks::new(WorkBound::new(1, Duration::from_secs(5))),
            FailureLimiter::new(Default::default()),
        );
        let g = BasicGuards { cache: &cache, work: &work, failures: &failures };

        let wrong = check_basic(&g, &policy, "", &basic("alice", "wrong"), "a").await;
        assert_eq!(wrong, Some(Err(BasicFailure::Wrong)));
        assert_eq!(cache.len(), 0, "a failed check is not cached");

        let ok = check_basic(&g, &policy, "", &basic("alice", "s3cret"), "a").await;
        assert_eq!(ok, Some(Ok("alice".to_string())));
        assert_eq!(cache.len(), 1);

        // Make argon2 fail for everyone: only a cache hit can still accept alice now.
        policy.basic_users.insert("alice".into(), "not a PHC string".into());
        let hit = check_basic(&g, &policy, "", &basic("alice", "s3cret"), "a").await;
        assert_eq!(hit, Some(Ok("alice".to_string())), "served from the cache, argon2 skipped");
        let wrong = check_basic(&g, &policy, "", &basic("alice", "wrong"), "a").await;
        assert_eq!(
            wrong,
            Some(Err(BasicFailure::Wrong)),
            "a wrong password misses the cache and fails argon2"
        );
        let other_label = check_basic(&g, &policy, "lab", &basic("alice", "s3cret"), "a").await;
        assert_eq!(other_label, Some(Err(BasicFailure::Wrong)), "entries are per label");
        assert_eq!(cache.len(), 1);
    }

    #[tokio::test]
    async fn past_the_failure_limit_no_argon2_runs_and_the_answer_is_429() {
        let mut policy = LabelPolicy::new(Profile::end_entity(Duration::from_secs(60)));
        policy.basic_users.insert("alice".into(), hash_password("s3cret").unwrap());
        let cache = CredentialCache::default();
        let limits =
            crate::http::FailureLimits { per_address: 2, per_user: 100, window: Duration::from_secs(60) };
        let (work, failures) =
            (PasswordChecks::new(WorkBound::new(1, Duration::from_secs(5))), FailureLimiter::new(limits));
        let g = BasicGuards { cache: &cache, work: &work, failures: &failures };
        // alice verified before the flood: the cache still answers her.
        assert_eq!(
            check_basic(&g, &policy, "", &basic("alice", "s3cret"), "10.0.0.1").await,
            Some(Ok("alice".into()))
        );
        for _ in 0..2 {
            assert_eq!(
                check_basic(&g, &policy, "", &basic("mallory", "x"), "10.0.0.1").await,
                Some(Err(BasicFailure::Wrong))
            );
        }
        let refused = check_basic(&g, &policy, "", &basic("alice", "guess"), "10.0.0.1").await;
        assert!(
            matches!(refused, Some(Err(BasicFailure::Refused(EstError::TooManyFailures(_))))),
            "{refused:?}"
        );
        assert_eq!(
            check_basic(&g, &policy, "", &basic("alice", "s3cret"), "10.0.0.1").await,
            Some(Ok("alice".into()))
        );
    }
}
