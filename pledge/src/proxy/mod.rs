//! The Identity Proxy (`brski pledge serve`): after bootstrapping, the pledge serves the Agent
//! API of `docs/agent-api.md` to local agents and forwards their credential requests to the
//! Identity Server (the registrar) over mutual TLS with its LDevID.
//!
//! - [`agent_api`]: the HTTP/1.1 server on a Unix socket (mode 0660, optional group; loopback
//!   TCP only when asked), the `Agent-Identity-Api: true` check, body limits, problem bodies.
//! - [`peer`]: who is calling (`SO_PEERCRED` uid/gid/pid) and the SHA-256 of its executable.
//! - [`evidence`]: the EAT signed with the LDevID key that binds the server nonce, the ACR hash
//!   and the caller.
//! - [`upstream`]: keep-alive mTLS connections to the registrar.
//! - [`renew`]: LDevID renewal (EST simplereenroll at two thirds of its life; a new BRSKI
//!   bootstrap when it has expired, e.g. after the host slept).
//!
//! The proxy never sees an agent's private key: agents sign their own requests (the ACR's
//! proof of possession) and the proxy only checks and forwards them.

pub(crate) mod agent_api;
pub(crate) mod attest;
pub(crate) mod evidence;
pub(crate) mod listen;
pub(crate) mod peer;
pub(crate) mod renew;
pub(crate) mod upstream;

use crate::config::PledgeConfig;
use crate::files::{self, DOMAIN_CA, LDEVID_CERT, STATUS_FILE};
use crate::identity::Idevid;
use serde_json::Value;
use shared::keys::Signer;
use shared::pki;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use x509_cert::Certificate;

/// File name of the Agent API socket in the state directory.
pub(crate) const AGENT_SOCKET: &str = "agent.sock";

/// How long the trust bundle fetched from the server is reused.
pub(crate) const BUNDLE_TTL: Duration = Duration::from_secs(300);

/// How the proxy runs.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The pledge state directory (LDevID, domain CA, status).
    pub state: PathBuf,
    /// The Unix socket path (default `<state>/agent.sock`).
    pub socket: Option<PathBuf>,
    /// A group (name or number) that may use the socket (mode 0660).
    pub socket_group: Option<String>,
    /// Also listen on this loopback TCP address (callers then have no uid/pid).
    pub tcp_listen: Option<SocketAddr>,
    /// The Identity Server URL (default: the server of the last bootstrap in
    /// `pledge-status.json`).
    pub registrar: Option<String>,
    /// Timeout of each upstream step (connect, handshake, request).
    pub timeout: Duration,
    /// Renew the LDevID before it expires (and re-bootstrap when it has expired).
    pub renew: bool,
    /// The pledge configuration used to bootstrap again when the LDevID has expired (None:
    /// the proxy only renews with simplereenroll and says when it cannot).
    pub bootstrap: Option<PledgeConfig>,
    /// Most simultaneous Agent API connections.
    pub max_connections: usize,
    /// The owner gateway for model 2 requests: its URL and the SHA-256 of its certificate.
    pub gateway: Option<(String, [u8; 32])>,
    /// The TPM attestation key whose quotes go into the evidence (None: no quote).
    pub attestation: Option<attest::Attestation>,
}

impl ProxyConfig {
    /// Defaults for a bootstrapped state directory.
    pub fn in_dir(state: &Path) -> Self {
        ProxyConfig {
            state: state.to_path_buf(),
            socket: None,
            socket_group: None,
            tcp_listen: None,
            registrar: None,
            timeout: Duration::from_secs(30),
            renew: true,
            bootstrap: None,
            max_connections: 64,
            gateway: None,
            attestation: None,
        }
    }

    /// The socket path in effect.
    pub fn socket_path(&self) -> PathBuf {
        self.socket.clone().unwrap_or_else(|| self.state.join(AGENT_SOCKET))
    }
}

/// Why the proxy cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The state directory does not hold a usable enrollment.
    #[error("{0}")]
    State(String),
    /// Configuration problem.
    #[error("{0}")]
    Config(String),
    /// A socket could not be set up.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// The proxy's enrolled identity: its LDevID (leaf first), key and the domain's CA. Only
/// [`Identity::new`] and [`Identity::load`] make one, so the chain is never empty.
#[non_exhaustive]
pub struct Identity {
    /// The LDevID and its chain.
    pub chain: Vec<Certificate>,
    /// The LDevID key.
    pub key: Arc<dyn Signer>,
    /// The domain CA certificates (trust anchors for the registrar).
    pub domain_ca: Vec<Certificate>,
    /// b64url(SHA-256(DER of the LDevID)): `proxy.ldevid_sha256` of the forwarded request.
    pub ldevid_sha256: String,
    /// The device's UEID (type RAND, 0x01 || SHA-256 of its serial number).
    pub ueid: Vec<u8>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").field("ldevid_sha256", &self.ldevid_sha256).finish_non_exhaustive()
    }
}

impl Identity {
    /// Loads the LDevID key (`ldevid.key`, 0600, or the TPM key `ldevid.key-uri` names),
    /// `ldevid.pem` and `domain-ca.pem` from `state`.
    pub fn load(state: &Path) -> Result<Self, ProxyError> {
        let certs = |name: &str| {
            let p = state.join(name);
            std::fs::read(&p)
                .map_err(|e| format!("{}: {e}", p.display()))
                .and_then(|b| pki::certs_from_pem(&b).map_err(|e| format!("{}: {e}", p.display())))
                .map_err(|e| ProxyError::State(format!("{e} (has `brski pledge bootstrap` run?)")))
        };
        let chain = certs(LDEVID_CERT)?;
        let domain_ca = certs(DOMAIN_CA)?;
        let key = crate::ldevid_key::load(state).map_err(ProxyError::State)?;
        Self::new(chain, key, domain_ca)
    }

    /// An identity from parts; the key must belong to the LDevID.
    pub fn new(
        chain: Vec<Certificate>,
        key: Arc<dyn Signer>,
        domain_ca: Vec<Certificate>,
    ) -> Result<Self, ProxyError> {
        let leaf = chain.first().ok_or_else(|| ProxyError::State("no LDevID certificate".into()))?;
        if pki::spki_der(leaf) != key.public_key_der() {
            return Err(ProxyError::State("the LDevID key does not belong to the LDevID certificate".into()));
        }
        if domain_ca.is_empty() {
            return Err(ProxyError::State("no domain CA certificate".into()));
        }
        let der = pki::cert_to_der(leaf).map_err(|e| ProxyError::State(e.to_string()))?;
        let ldevid_sha256 = shared::b64::encode_url(&shared::crypto::sha256(&der));
        let serial = pki::serial_number(leaf).unwrap_or_else(|| hex::encode(pki::spki_der(leaf)));
        let mut ueid = vec![0x01];
        ueid.extend_from_slice(&shared::crypto::sha256(serial.as_bytes()));
        Ok(Identity { chain, key, domain_ca, ldevid_sha256, ueid })
    }

    /// The LDevID certificate.
    pub fn leaf(&self) -> &Certificate {
        &self.chain[0]
    }

    /// The LDevID's notBefore and notAfter (Unix seconds).
    pub fn validity(&self) -> (i64, i64) {
        let v = self.leaf().tbs_certificate().validity();
        (v.not_before.to_unix_duration().as_secs() as i64, v.not_after.to_unix_duration().as_secs() as i64)
    }
}

/// A request this proxy forwarded that the server answered with 202, and who asked.
#[derive(Debug, Clone)]
struct PendingRequest {
    uid: Option<u32>,
    created: Instant,
    via_gateway: bool,
}

/// How long the proxy remembers a pending request for polling.
const PENDING_KEEP: Duration = Duration::from_secs(3600);

/// The shared state of a running proxy.
pub struct Proxy {
    state: PathBuf,
    identity: RwLock<Arc<Identity>>,
    upstream: upstream::Upstream,
    gateway: Option<upstream::Upstream>,
    bundle: tokio::sync::Mutex<Option<(Instant, Arc<shared::agent::wire::Bundle>)>>,
    /// Server nonces fetched in a batch and not handed out yet: (b64url nonce, expiry).
    nonces: Mutex<std::collections::VecDeque<(String, i64)>>,
    pending: Mutex<HashMap<String, PendingRequest>>,
    exe: peer::ExeCache,
    metrics: Arc<shared::metrics::Metrics>,
    attestation: Option<attest::Attestation>,
    /// The LDevID key or the attestation key is in a TPM: evidence is made off the async
    /// workers (each TPM command is a blocking round trip).
    tpm_evidence: bool,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").field("state", &self.state).finish_non_exhaustive()
    }
}

impl Proxy {
    /// A proxy for the enrollment in `cfg.state`, talking to `cfg.registrar` (or the server
    /// recorded in `pledge-status.json`).
    pub fn new(cfg: &ProxyConfig) -> Result<Arc<Self>, ProxyError> {
        let identity = Identity::load(&cfg.state)?;
        let url = match &cfg.registrar {
            Some(u) => u.clone(),
            None => registrar_from_status(&cfg.state)?,
        };
        let mut proxy = Self::build(&cfg.state, identity, &url, cfg.timeout)?;
        if let Some((gw, pin)) = &cfg.gateway {
            let identity = proxy.identity();
            proxy.gateway = Some(upstream::Upstream::pinned(gw, Some(*pin), &identity, cfg.timeout)?);
        }
        proxy.tpm_evidence |= cfg.attestation.is_some();
        proxy.attestation = cfg.attestation.clone();
        Ok(Arc::new(proxy))
    }

    /// A proxy from an identity already in memory.
    pub fn with_identity(
        state: &Path,
        identity: Identity,
        registrar: &str,
        timeout: Duration,
    ) -> Result<Arc<Self>, ProxyError> {
        Self::build(state, identity, registrar, timeout).map(Arc::new)
    }

    fn build(
        state: &Path,
        identity: Identity,
        registrar: &str,
        timeout: Duration,
    ) -> Result<Self, ProxyError> {
        let upstream = upstream::Upstream::new(registrar, &identity, timeout)?;
        Ok(Proxy {
            state: state.to_path_buf(),
            identity: RwLock::new(Arc::new(identity)),
            upstream,
            gateway: None,
            bundle: tokio::sync::Mutex::new(None),
            nonces: Mutex::new(std::collections::VecDeque::new()),
            pending: Mutex::new(HashMap::new()),
            exe: peer::ExeCache::default(),
            metrics: Arc::new(shared::metrics::Metrics::new("proxy")),
            attestation: None,
            tpm_evidence: crate::ldevid_key::current_uri(state).is_some(),
        })
    }

    /// The evidence for one request ([`evidence::build`], with a TPM quote when an attestation
    /// key is configured); TPM work runs on a blocking thread.
    pub(crate) async fn evidence(
        &self,
        identity: &Arc<Identity>,
        server_nonce: &[u8],
        acr_hash: &[u8],
        agent_id: &str,
        caller: &evidence::Caller,
        now: i64,
    ) -> Result<Value, shared::agent::AgentError> {
        if !self.tpm_evidence {
            let att = self.attestation.as_ref();
            return evidence::build(identity, server_nonce, acr_hash, agent_id, caller, att, now);
        }
        let (identity, att, caller) = (identity.clone(), self.attestation.clone(), caller.clone());
        let (nonce, hash, agent) = (server_nonce.to_vec(), acr_hash.to_vec(), agent_id.to_string());
        tokio::task::spawn_blocking(move || {
            evidence::build(&identity, &nonce, &hash, &agent, &caller, att.as_ref(), now)
        })
        .await
        .map_err(|e| shared::agent::AgentError::Evidence(format!("making the evidence: {e}")))?
    }

    /// The current identity.
    pub fn identity(&self) -> Arc<Identity> {
        match self.identity.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Replaces the identity (after a renewal) and the upstream connections with it.
    pub fn set_identity(&self, identity: Identity) -> Result<(), ProxyError> {
        self.upstream.set_identity(&identity)?;
        if let Some(g) = &self.gateway {
            g.set_identity(&identity)?;
        }
        let new = Arc::new(identity);
        match self.identity.write() {
            Ok(mut g) => *g = new,
            Err(p) => *p.into_inner() = new,
        }
        Ok(())
    }

    /// Reloads the identity from the state directory.
    pub fn reload(&self) -> Result<(), ProxyError> {
        self.set_identity(Identity::load(&self.state)?)
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state
    }

    /// The proxy's Prometheus metrics (also served at `GET /metrics` on the Agent API).
    pub fn metrics(&self) -> &Arc<shared::metrics::Metrics> {
        &self.metrics
    }

    /// The upstream client.
    pub fn upstream(&self) -> &upstream::Upstream {
        &self.upstream
    }

    /// The owner gateway (model 2), when configured.
    pub fn gateway(&self) -> Option<&upstream::Upstream> {
        self.gateway.as_ref()
    }

    fn remember_pending(&self, id: &str, uid: Option<u32>, via_gateway: bool) {
        let Ok(mut m) = self.pending.lock() else { return };
        m.retain(|_, p| p.created.elapsed() < PENDING_KEEP);
        m.insert(id.to_string(), PendingRequest { uid, created: Instant::now(), via_gateway });
    }

    /// Who submitted pending request `id` and whether it went through the gateway (None: this
    /// proxy did not forward it, or forgot).
    fn pending_owner(&self, id: &str) -> Option<(Option<u32>, bool)> {
        let m = self.pending.lock().ok()?;
        m.get(id).filter(|p| p.created.elapsed() < PENDING_KEEP).map(|p| (p.uid, p.via_gateway))
    }

    fn forget_pending(&self, id: &str) {
        if let Ok(mut m) = self.pending.lock() {
            m.remove(id);
        }
    }
}

/// The server URL of the last bootstrap, from `pledge-status.json`.
pub fn registrar_from_status(state: &Path) -> Result<String, ProxyError> {
    let p = state.join(STATUS_FILE);
    let bytes = std::fs::read(&p).map_err(|e| {
        ProxyError::State(format!("{}: {e}; bootstrap first or give the registrar URL", p.display()))
    })?;
    let summary: files::Summary =
        serde_json::from_slice(&bytes).map_err(|e| ProxyError::State(format!("{}: {e}", p.display())))?;
    Ok(summary.server)
}

/// A running proxy: its listeners and background tasks. Dropping it stops them and removes
/// the socket file.
pub struct RunningProxy {
    /// The shared state.
    pub proxy: Arc<Proxy>,
    /// The Unix socket path.
    pub socket: PathBuf,
    /// The loopback TCP address, when enabled.
    pub tcp: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for RunningProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningProxy").field("socket", &self.socket).field("tcp", &self.tcp).finish()
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl RunningProxy {
    /// Waits until a listener stops (it only stops on a fatal error).
    pub async fn wait(&mut self) {
        if let Some(t) = self.tasks.first_mut() {
            let _ = t.await;
        }
    }
}

/// Starts the proxy: loads the enrollment, binds the socket (and TCP when asked), and starts
/// the renewal task. `idevid` is needed only to bootstrap again after the LDevID expired.
pub async fn start(cfg: &ProxyConfig, idevid: Option<Idevid>) -> Result<RunningProxy, ProxyError> {
    let proxy = Proxy::new(cfg)?;
    start_with(cfg, proxy, idevid).await
}

/// Like [`start`], for a proxy built by the caller.
pub async fn start_with(
    cfg: &ProxyConfig,
    proxy: Arc<Proxy>,
    idevid: Option<Idevid>,
) -> Result<RunningProxy, ProxyError> {
    let socket = cfg.socket_path();
    let listener = listen::bind_unix(&socket, cfg.socket_group.as_deref())?;
    let limit = Arc::new(tokio::sync::Semaphore::new(cfg.max_connections.max(1)));
    let mut tasks = vec![tokio::spawn(listen::serve_unix(proxy.clone(), listener, limit.clone()))];
    let mut tcp = None;
    if let Some(addr) = cfg.tcp_listen {
        if !addr.ip().is_loopback() {
            return Err(ProxyError::Config(format!(
                "--tcp-listen {addr}: the Agent API listens on loopback addresses only"
            )));
        }
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ProxyError::Io { what: format!("binding {addr}"), source })?;
        tcp = l.local_addr().ok();
        tracing::warn!(addr = ?tcp, "Agent API also on loopback TCP: callers there have no uid/pid");
        tasks.push(tokio::spawn(listen::serve_tcp(proxy.clone(), l, limit)));
    }
    if cfg.renew {
        let bootstrap = cfg.bootstrap.clone().zip(idevid);
        tasks.push(tokio::spawn(renew::run(proxy.clone(), bootstrap, cfg.timeout)));
    }
    tracing::info!(socket = %socket.display(), "Agent API listening");
    Ok(RunningProxy { proxy, socket, tcp, tasks })
}
