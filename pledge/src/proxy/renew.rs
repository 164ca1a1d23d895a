//! LDevID renewal while the proxy serves: EST `simplereenroll` (RFC 7030 §4.2.2) over mutual
//! TLS with the current LDevID once two thirds of its life have passed, with a fresh key and
//! the connection's tls-exporter in the CSR; the new files replace the old ones atomically and
//! the proxy switches to them. When the LDevID has already expired (the host slept through
//! the renewal window), the registrar no longer accepts it, so the pledge bootstraps again
//! with its IDevID (BRSKI), when it was given one.
//!
//! The clock is looked at every minute (a sleeping host does not advance Tokio's timers), and
//! failures are retried with backoff.

use super::{Identity, Proxy};
use crate::config::PledgeConfig;
use crate::enroll::{EnrollError, Enrolled};
use crate::files;
use crate::identity::Idevid;
use crate::ldevid_key::LdevidKeys;
use est::binding::csr_with_challenge_password;
use est::client::{Enrollment, EstClient};
use est::tls::{client_config, ServerTrust};
use shared::pki::{self, verify_chain};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the renewal task looks at the clock.
const TICK: Duration = Duration::from_secs(60);
/// First wait after a failed renewal (doubles up to [`MAX_BACKOFF`]).
const FIRST_BACKOFF: Duration = Duration::from_secs(30);
/// Longest wait after failed renewals.
const MAX_BACKOFF: Duration = Duration::from_secs(1800);
/// Longest wait for a pending (202) reenrollment.
const MAX_PENDING: Duration = Duration::from_secs(600);

/// When to renew a certificate valid from `not_before` to `not_after` (Unix seconds): after
/// two thirds of its life.
pub fn renew_at(not_before: i64, not_after: i64) -> i64 {
    not_before + (not_after - not_before).max(0) * 2 / 3
}

/// What the renewal task should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Nothing yet; look again later.
    Wait,
    /// Renew with simplereenroll.
    Reenroll,
    /// The LDevID has expired: bootstrap again.
    Rebootstrap,
}

/// The decision for an LDevID valid from `not_before` to `not_after` at `now`.
pub fn due(not_before: i64, not_after: i64, now: i64) -> Due {
    if now >= not_after {
        Due::Rebootstrap
    } else if now >= renew_at(not_before, not_after) {
        Due::Reenroll
    } else {
        Due::Wait
    }
}

/// Runs forever: renews the proxy's LDevID when it is due. `bootstrap` (the pledge's
/// configuration and IDevID) is used when the LDevID has expired.
pub(crate) async fn run(proxy: Arc<Proxy>, bootstrap: Option<(PledgeConfig, Idevid)>, timeout: Duration) {
    let mut backoff = FIRST_BACKOFF;
    let mut next_try = Instant::now();
    loop {
        if Instant::now() < next_try {
            tokio::time::sleep(TICK).await;
            continue;
        }
        match renew_once(&proxy, bootstrap.as_ref(), timeout, shared::agent::jwt::unix_now()).await {
            Ok(Due::Wait) => tokio::time::sleep(TICK).await,
            Ok(_) => {
                let (_, na) = proxy.identity().validity();
                tracing::info!(not_after = na, "LDevID renewed; the proxy uses the new one");
                backoff = FIRST_BACKOFF;
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "LDevID renewal failed");
                next_try = Instant::now() + backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Does what is due at `now` (Unix seconds): nothing, a simplereenroll, or a new bootstrap
/// (when `bootstrap` is given); on success the proxy switches to the new LDevID. Returns what
/// was due.
pub async fn renew_once(
    proxy: &Proxy,
    bootstrap: Option<&(PledgeConfig, Idevid)>,
    timeout: Duration,
    now: i64,
) -> Result<Due, String> {
    let id = proxy.identity();
    let (nb, na) = id.validity();
    let decision = due(nb, na, now);
    match decision {
        Due::Wait => return Ok(Due::Wait),
        Due::Reenroll => {
            tracing::info!(not_after = na, "LDevID at two thirds of its life: renewing (simplereenroll)");
            reenroll(proxy, &id, timeout).await.map_err(|e| e.to_string())?;
        }
        Due::Rebootstrap => match bootstrap {
            Some((cfg, idevid)) => {
                tracing::warn!("the LDevID has expired (did the host sleep?): bootstrapping again");
                crate::bootstrap(cfg, idevid).await.map_err(|e| e.to_string())?;
            }
            None => {
                return Err("the LDevID has expired and no IDevID was given to bootstrap again; \
                            run `brski pledge bootstrap`"
                    .to_string())
            }
        },
    }
    proxy.reload().map_err(|e| e.to_string())?;
    Ok(decision)
}

/// Renews `id` with EST simplereenroll at the proxy's server and writes the new files.
pub async fn reenroll(proxy: &Proxy, id: &Identity, timeout: Duration) -> Result<(), EnrollError> {
    let invalid = |e: &dyn std::fmt::Display| EnrollError::Invalid(e.to_string());
    let est = |step: &'static str| move |source| EnrollError::Est { step, source };
    let url = proxy.upstream().url().to_string();
    let tls =
        client_config(&ServerTrust::Explicit(id.domain_ca.clone()), Some((id.chain.clone(), id.key.clone())))
            .map_err(|e| invalid(&e))?;
    let client = EstClient::new(&url, None, tls).map_err(|e| invalid(&e))?.with_timeout(timeout);
    let mut conn = client.connect().await.map_err(est("connect"))?;
    let ca_certs = match conn.cacerts().await {
        Ok(c) if !c.is_empty() => c,
        _ => id.domain_ca.clone(),
    };
    let key = LdevidKeys::for_state(proxy.state_dir(), None).generate().map_err(|e| invalid(&e))?;
    let subject = id.leaf().tbs_certificate().subject().clone();
    let csr = match conn.channel_binding() {
        Some(b) => {
            csr_with_challenge_password(&subject, &[], key.signer.as_ref(), &b).map_err(|e| invalid(&e))?
        }
        None => pki::build_csr(&subject, &[], key.signer.as_ref()).map_err(|e| invalid(&e))?,
    };
    let started = Instant::now();
    let chain = loop {
        match conn.simplereenroll(&csr).await.map_err(est("simplereenroll"))? {
            Enrollment::Done(chain) => break chain,
            Enrollment::Pending { retry_after } => {
                let wait = retry_after.clamp(Duration::from_secs(1), Duration::from_secs(60));
                if started.elapsed() + wait > MAX_PENDING {
                    return Err(EnrollError::Invalid("reenrollment still pending after 10 minutes".into()));
                }
                tokio::time::sleep(wait).await;
            }
        }
    };
    let leaf = chain.first().ok_or_else(|| EnrollError::Invalid("no certificate was returned".into()))?;
    if pki::spki_der(leaf) != key.signer.public_key_der() {
        return Err(EnrollError::Invalid("the returned certificate is not for our new key".into()));
    }
    verify_chain(leaf, &chain[1..], &ca_certs, time::OffsetDateTime::now_utc())
        .map_err(|e| EnrollError::Invalid(format!("the new LDevID does not chain to the domain CA: {e}")))?;
    let enrolled = Enrolled { key, chain, ca_certs };
    let state = proxy.state_dir();
    let old = std::fs::read(state.join(files::STATUS_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice::<files::Summary>(&b).ok());
    let (mode, serial) = match &old {
        Some(s) => (s.mode.clone(), s.serial.clone()),
        None => ("brski".to_string(), pki::serial_number(&enrolled.chain[0]).unwrap_or_default()),
    };
    let summary =
        files::summary(&mode, "renewed with EST simplereenroll", &url, &serial, &enrolled.chain[0], None);
    let summary = files::Summary { voucher_format: old.and_then(|s| s.voucher_format), ..summary };
    files::write_outcome(state, &enrolled, None, &summary)
        .map_err(|e| EnrollError::Invalid(format!("writing the renewed LDevID: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_at_two_thirds_and_bootstrap_after_expiry() {
        assert_eq!(renew_at(0, 300), 200);
        assert_eq!(due(0, 300, 100), Due::Wait);
        assert_eq!(due(0, 300, 199), Due::Wait);
        assert_eq!(due(0, 300, 200), Due::Reenroll);
        assert_eq!(due(0, 300, 299), Due::Reenroll);
        assert_eq!(due(0, 300, 300), Due::Rebootstrap);
        assert_eq!(due(0, 300, 10_000), Due::Rebootstrap);
    }
}
