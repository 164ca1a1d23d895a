//! Authentication of enrollment requests: TLS client certificates (chained to the label's
//! anchors, or to this CA for re-enrollment, and not revoked) and HTTP Basic credentials
//! (argon2, with recently verified credentials answered from the [`CredentialCache`]).

use super::config::{AuthRequirement, LabelPolicy};
use super::credential_cache::CredentialCache;
use super::error::EstError;
use super::password::verify_password;
use super::state::ServerState;
use crate::authority::Identity;
use crate::http::ConnectionInfo;
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

/// Checks Basic credentials against the label's users (argon2 off the async threads).
/// Credentials that passed argon2 on this label less than the cache's TTL ago are accepted
/// from `cache` without argon2; a miss runs argon2 as always, and only a success is cached.
async fn check_basic(
    cache: &CredentialCache,
    policy: &LabelPolicy,
    label: &str,
    headers: &HeaderMap,
) -> Option<Result<String, ()>> {
    let creds = basic_credentials(headers)?;
    let Ok((user, pass)) = creds else { return Some(Err(())) };
    let Some(phc) = policy.basic_users.get(&user).cloned() else { return Some(Err(())) };
    let key = CredentialCache::key(label, &user, &pass);
    if key.is_some_and(|k| cache.contains(&k, Instant::now())) {
        return Some(Ok(user));
    }
    let ok = tokio::task::spawn_blocking(move || verify_password(&phc, &pass)).await.unwrap_or(false);
    if let (true, Some(k)) = (ok, key) {
        cache.insert(k, Instant::now());
    }
    Some(if ok { Ok(user) } else { Err(()) })
}

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
        _ => check_basic(&st.verified_basic, policy, label, headers).await,
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
        Some(Err(())) => EstError::AuthRequired("wrong user name or password".into()),
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
            (Some(Err(())), _) => Err(basic_problem()),
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

        let wrong = check_basic(&cache, &policy, "", &basic("alice", "wrong")).await;
        assert_eq!(wrong, Some(Err(())));
        assert_eq!(cache.len(), 0, "a failed check is not cached");

        let ok = check_basic(&cache, &policy, "", &basic("alice", "s3cret")).await;
        assert_eq!(ok, Some(Ok("alice".to_string())));
        assert_eq!(cache.len(), 1);

        // Make argon2 fail for everyone: only a cache hit can still accept alice now.
        policy.basic_users.insert("alice".into(), "not a PHC string".into());
        let hit = check_basic(&cache, &policy, "", &basic("alice", "s3cret")).await;
        assert_eq!(hit, Some(Ok("alice".to_string())), "served from the cache, argon2 skipped");
        let wrong = check_basic(&cache, &policy, "", &basic("alice", "wrong")).await;
        assert_eq!(wrong, Some(Err(())), "a wrong password misses the cache and fails argon2");
        let other_label = check_basic(&cache, &policy, "lab", &basic("alice", "s3cret")).await;
        assert_eq!(other_label, Some(Err(())), "entries are per label");
        assert_eq!(cache.len(), 1);
    }
}
