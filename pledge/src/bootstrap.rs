//! The bootstrap flow: BRSKI (or EST-only when the pledge holds a server trust anchor),
//! attempts with exponential backoff and a fresh nonce each, the voucher-request answered by
//! 202 resent identically after Retry-After (clamped to 60 s), and the results on disk.
//! Without a configured registrar URL, each attempt first discovers registrars by mDNS
//! ([`crate::discover`]) and tries them in turn: the next address of the same registrar when
//! it cannot be reached, the next registrar on any other failure.

use crate::config::PledgeConfig;
use crate::discover::{self, SERVICE_TYPE};
use crate::enroll::{self, EnrollError, Enrolled};
use crate::files::{self, Written};
use crate::identity::Idevid;
use crate::imprint::{verify_voucher, ImprintError};
use crate::request::{fresh_nonce, pledge_request};
use est::client::{ClientError, EstClient, EstConnection, RawReply};
use est::tls::{client_config, ServerTrust};
use shared::brski::{StatusReport, PATH_REQUEST_VOUCHER};
use shared::signed::Format;
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use x509_cert::Certificate;

/// RFC 8995 §5.6: a pledge clamps Retry-After to at most 60 seconds.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// What a successful bootstrap produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// `brski` or `est-only`.
    pub mode: &'static str,
    /// The LDevID and its chain.
    pub chain: Vec<Certificate>,
    /// The domain CA certificates.
    pub ca_certs: Vec<Certificate>,
    /// Files written.
    pub files: Written,
    /// Attempts used.
    pub attempts: u32,
    /// The registrar (or EST server) URL it enrolled with.
    pub server: String,
    /// The mDNS instance name, when the registrar was discovered rather than configured.
    pub discovered: Option<String>,
}

/// Why bootstrapping failed.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// Configuration or identity problem (not retried).
    #[error("{0}")]
    Setup(String),
    /// Could not talk to the registrar.
    #[error("registrar unreachable: {0}")]
    Connect(ClientError),
    /// The registrar refused the voucher-request.
    #[error("the registrar refused the voucher-request ({status}): {detail}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Its reason.
        detail: String,
    },
    /// Still pending approval after the maximum wait.
    #[error("still waiting for approval after {0:?}")]
    PendingTooLong(Duration),
    /// The voucher was refused.
    #[error(transparent)]
    Voucher(#[from] ImprintError),
    /// EST enrollment failed.
    #[error(transparent)]
    Enroll(#[from] EnrollError),
    /// Files could not be written.
    #[error("writing the results: {0}")]
    Files(std::io::Error),
    /// mDNS discovery could not run.
    #[error("registrar discovery failed: {0}")]
    Discovery(String),
    /// No registrar URL is configured and discovery found none.
    #[error(
        "no registrar URL is configured and mDNS discovery found no {SERVICE_TYPE} service within {0:?}"
    )]
    NoRegistrar(Duration),
    /// Every registrar found by discovery failed.
    #[error("all {tried} registrars found by mDNS failed; the last one: {last}")]
    AllFailed {
        /// How many registrars were tried.
        tried: usize,
        /// The last failure.
        last: Box<BootstrapError>,
    },
}

impl BootstrapError {
    /// Whether another attempt (with a fresh nonce) may succeed.
    fn retryable(&self) -> bool {
        match self {
            BootstrapError::Setup(_) | BootstrapError::Files(_) => false,
            BootstrapError::AllFailed { last, .. } => last.retryable(),
            _ => true,
        }
    }
}

/// Bootstraps with `cfg`: EST-only when it names a server trust anchor, BRSKI otherwise.
/// Attempts are retried with backoff (fresh nonce each) up to `cfg.max_attempts`.
pub async fn bootstrap(cfg: &PledgeConfig, id: &Idevid) -> Result<Outcome, BootstrapError> {
    let mut backoff = cfg.initial_backoff;
    let mut attempt = 1;
    loop {
        match &cfg.est_server_anchor {
            Some(anchor) => {
                tracing::info!(anchor = %anchor.display(), "EST-only: a server trust anchor is configured, BRSKI is not needed")
            }
            None => tracing::info!(
                "BRSKI: no EST server trust anchor is configured; the voucher will establish trust"
            ),
        }
        let configured = match cfg.est_server_anchor {
            Some(_) => cfg.est_server.as_ref().or(cfg.registrar.as_ref()),
            None => cfg.registrar.as_ref(),
        };
        let result = match configured {
            Some(url) => with_server(cfg, id, url).await,
            None => with_discovered(cfg, id).await,
        };
        match result {
            Ok(mut o) => {
                o.attempts = attempt;
                return Ok(o);
            }
            Err(e) if e.retryable() && attempt < cfg.max_attempts => {
                tracing::warn!(attempt, error = %e, wait = ?backoff, "bootstrap attempt failed; retrying with a fresh nonce");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(cfg.max_backoff);
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// One attempt against `url`: EST-only or BRSKI.
async fn with_server(cfg: &PledgeConfig, id: &Idevid, url: &str) -> Result<Outcome, BootstrapError> {
    match cfg.est_server_anchor {
        Some(_) => est_only(cfg, id, url).await,
        None => brski(cfg, id, url).await,
    }
}

/// One attempt with the registrars found by mDNS, in the order [`discover::discover`] gives
/// (IPv4-reachable first, then by instance name): the next address of a registrar when it
/// cannot be reached, the next registrar on any other failure.
async fn with_discovered(cfg: &PledgeConfig, id: &Idevid) -> Result<Outcome, BootstrapError> {
    let candidates = discover::discover(cfg.discovery_timeout)
        .await
        .map_err(|e| BootstrapError::Discovery(e.to_string()))?;
    if candidates.is_empty() {
        return Err(BootstrapError::NoRegistrar(cfg.discovery_timeout));
    }
    let tried = candidates.len();
    let mut last = None;
    for (i, c) in candidates.iter().enumerate() {
        for url in &c.urls {
            tracing::info!(
                instance = %c.instance,
                host = %c.host,
                %url,
                candidate = i + 1,
                of = tried,
                "trying a registrar found by mDNS (registrars reachable over IPv4 first, then by instance name; IPv4 addresses first)"
            );
            match with_server(cfg, id, url).await {
                Ok(mut o) => {
                    o.discovered = Some(c.instance.clone());
                    return Ok(o);
                }
                Err(e @ BootstrapError::Files(_)) => return Err(e),
                Err(e) => {
                    let unreachable = matches!(e, BootstrapError::Connect(_));
                    tracing::warn!(instance = %c.instance, %url, error = %e, "the registrar found by mDNS failed");
                    last = Some(e);
                    if !unreachable {
                        break;
                    }
                }
            }
        }
    }
    match last {
        Some(last) if tried == 1 => Err(last),
        Some(last) => Err(BootstrapError::AllFailed { tried, last: Box::new(last) }),
        None => Err(BootstrapError::NoRegistrar(cfg.discovery_timeout)),
    }
}

fn est_client(
    url: &str,
    trust: &ServerTrust,
    identity: (Vec<Certificate>, Arc<dyn shared::keys::Signer>),
    timeout: Duration,
) -> Result<EstClient, BootstrapError> {
    let tls = client_config(trust, Some(identity)).map_err(|e| BootstrapError::Setup(e.to_string()))?;
    EstClient::new(url, None, tls)
        .map(|c| c.with_timeout(timeout))
        .map_err(|e| BootstrapError::Setup(e.to_string()))
}

/// One BRSKI attempt.
async fn brski(cfg: &PledgeConfig, id: &Idevid, url: &str) -> Result<Outcome, BootstrapError> {
    let client =
        est_client(url, &ServerTrust::InsecureBootstrap, (id.chain.clone(), id.signer.clone()), cfg.timeout)?;
    let mut conn = client.connect().await.map_err(BootstrapError::Connect)?;
    let registrar_chain = conn.server_chain().to_vec();
    let registrar = registrar_chain
        .first()
        .cloned()
        .ok_or_else(|| BootstrapError::Setup("the registrar sent no certificate".into()))?;
    let nonce = fresh_nonce();
    let pvr = pledge_request(id, &registrar, &nonce, cfg.format)
        .map_err(|e| BootstrapError::Setup(e.to_string()))?;
    let voucher = request_voucher(cfg, &client, &mut conn, &registrar, pvr).await?;
    let now = cfg.trusted_clock.then(OffsetDateTime::now_utc);
    if let Err(e) = verify_voucher(&voucher, id, &nonce, &registrar_chain, now) {
        tracing::warn!(error = %e, "voucher refused");
        enroll::voucher_status(&mut conn, &StatusReport::failure(voucher_failure_reason(&e))).await;
        return Err(e.into());
    }
    tracing::info!("voucher verified; the registrar's certificate chains to the pinned domain certificate");
    enroll::voucher_status(&mut conn, &StatusReport::success()).await;
    let subject = id.certificate().tbs_certificate().subject().clone();
    let enrolled = match enroll::enroll(&mut conn, &subject, &cfg.ldevid_keys(), cfg.max_pending_wait).await {
        Ok(e) => e,
        Err(e) => {
            enroll::enroll_status(&mut conn, &StatusReport::failure(e.to_string())).await;
            return Err(e.into());
        }
    };
    drop(conn);
    report_enrolled(cfg, url, &enrolled).await;
    finish(
        cfg,
        id,
        "brski",
        "no EST server trust anchor configured; trust came from the voucher",
        url,
        enrolled,
        Some((&voucher, cfg.format)),
    )
    .await
}

/// A reason for voucher_status that does not help an attacker.
fn voucher_failure_reason(e: &ImprintError) -> String {
    match e {
        ImprintError::Pin(_) => "the registrar is not the one the voucher pins".into(),
        ImprintError::Signature(_) => "the voucher signature did not verify".into(),
        _ => "the voucher did not validate".into(),
    }
}

/// POSTs the voucher-request; on 202 waits (Retry-After, at most 60 s) and resends the
/// identical request, on a new connection if needed, to the same registrar certificate.
async fn request_voucher(
    cfg: &PledgeConfig,
    client: &EstClient,
    conn: &mut EstConnection,
    registrar: &Certificate,
    pvr: Vec<u8>,
) -> Result<Vec<u8>, BootstrapError> {
    let started = Instant::now();
    let media = cfg.format.media_type();
    loop {
        let reply = match conn.post_raw(PATH_REQUEST_VOUCHER, media, Some(media), pvr.clone()).await {
            Ok(r) => r,
            Err(_) => {
                // The registrar may have closed the connection while we waited: reconnect.
                *conn = reconnect(client, registrar).await?;
                conn.post_raw(PATH_REQUEST_VOUCHER, media, Some(media), pvr.clone())
                    .await
                    .map_err(BootstrapError::Connect)?
            }
        };
        match reply.status.as_u16() {
            200 => return Ok(reply.body.to_vec()),
            202 => wait_pending(cfg, &reply, started).await?,
            status => return Err(BootstrapError::Refused { status, detail: reply.detail() }),
        }
    }
}

async fn wait_pending(cfg: &PledgeConfig, reply: &RawReply, started: Instant) -> Result<(), BootstrapError> {
    let wait = reply.retry_after.unwrap_or(MAX_RETRY_AFTER).min(MAX_RETRY_AFTER);
    if started.elapsed() + wait > cfg.max_pending_wait {
        return Err(BootstrapError::PendingTooLong(cfg.max_pending_wait));
    }
    tracing::info!(secs = wait.as_secs(), "voucher-request pending approval at the registrar; waiting");
    eprintln!("pending approval at the registrar; retrying in {} s", wait.as_secs());
    tokio::time::sleep(wait).await;
    Ok(())
}

/// A new connection to the same registrar (its certificate must not change).
async fn reconnect(client: &EstClient, registrar: &Certificate) -> Result<EstConnection, BootstrapError> {
    let conn = client.connect().await.map_err(BootstrapError::Connect)?;
    if conn.server_chain().first() != Some(registrar) {
        return Err(BootstrapError::Setup("the registrar's certificate changed between connections".into()));
    }
    Ok(conn)
}

/// RFC 8995 §5.9.4: on success, reconnect with the new LDevID (the registrar is now trusted
/// through the domain CA) and report.
async fn report_enrolled(cfg: &PledgeConfig, url: &str, enrolled: &Enrolled) {
    let signer: Arc<dyn shared::keys::Signer> = enrolled.key.signer.clone();
    let client = match est_client(
        url,
        &ServerTrust::Explicit(enrolled.ca_certs.clone()),
        (enrolled.chain.clone(), signer),
        cfg.timeout,
    ) {
        Ok(c) => c,
        Err(e) => return tracing::warn!(error = %e, "enrollstatus not sent"),
    };
    match client.connect().await {
        Ok(mut c) => enroll::enroll_status(&mut c, &StatusReport::success()).await,
        Err(e) => tracing::warn!(error = %e, "enrollstatus not sent: cannot reconnect with the LDevID"),
    }
}

/// EST-only: the server is trusted through the configured anchor; enroll with the IDevID.
async fn est_only(cfg: &PledgeConfig, id: &Idevid, url: &str) -> Result<Outcome, BootstrapError> {
    let anchor = cfg.est_server_anchor.as_ref().expect("est_only needs an anchor");
    let anchors = std::fs::read(anchor)
        .ok()
        .and_then(|b| shared::pki::certs_from_pem(&b).ok())
        .filter(|a| !a.is_empty())
        .ok_or_else(|| BootstrapError::Setup(format!("{}: no certificate", anchor.display())))?;
    let client =
        est_client(url, &ServerTrust::Explicit(anchors), (id.chain.clone(), id.signer.clone()), cfg.timeout)?;
    let mut conn = client.connect().await.map_err(BootstrapError::Connect)?;
    let subject = id.certificate().tbs_certificate().subject().clone();
    let enrolled = enroll::enroll(&mut conn, &subject, &cfg.ldevid_keys(), cfg.max_pending_wait).await?;
    let reason = format!("EST server trust anchor configured ({})", anchor.display());
    finish(cfg, id, "est-only", &reason, url, enrolled, None).await
}

/// Writes the outcome (key, certificates, voucher, summary) off the async workers: the key is
/// synced to disk, and a worker blocked on fsync would stall every other connection.
async fn finish(
    cfg: &PledgeConfig,
    id: &Idevid,
    mode: &'static str,
    reason: &str,
    server: &str,
    enrolled: Enrolled,
    voucher: Option<(&[u8], Format)>,
) -> Result<Outcome, BootstrapError> {
    let summary = files::summary(mode, reason, server, &id.serial, &enrolled.chain[0], voucher.map(|v| v.1));
    let state = cfg.state.clone();
    let voucher = voucher.map(|(bytes, format)| (bytes.to_vec(), format));
    let (enrolled, written) = tokio::task::spawn_blocking(move || {
        let v = voucher.as_ref().map(|(bytes, format)| (bytes.as_slice(), *format));
        let written = files::write_outcome(&state, &enrolled, v, &summary);
        (enrolled, written)
    })
    .await
    .map_err(|e| BootstrapError::Files(std::io::Error::other(format!("writing the outcome: {e}"))))?;
    let written = written.map_err(BootstrapError::Files)?;
    Ok(Outcome {
        mode,
        chain: enrolled.chain,
        ca_certs: enrolled.ca_certs,
        files: written,
        attempts: 1,
        server: server.to_string(),
        discovered: None,
    })
}
