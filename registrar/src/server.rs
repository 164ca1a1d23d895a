//! The registrar as a running service: its identity and policy ([`Registrar`]), the router that
//! serves BRSKI (`/.well-known/brski/...`) and EST (`/.well-known/est/...`) on one TLS port,
//! and the accept loop (TLS 1.3/1.2, IDevID client certificates accepted provisionally and
//! judged by the handlers).

use crate::authority::RegistrarAuthority;
use crate::config::RegistrarConfig;
use crate::handlers;
use crate::masa::MasaClients;
use axum::routing::post;
use axum::Router;
use est::authority::LocalCa;
use est::server::{AuthRequirement, BindingPolicy, ConfigError, EstServerConfig, LabelPolicy};
use shared::brski::{domain_id, PATH_ENROLL_STATUS, PATH_REQUEST_VOUCHER, PATH_VOUCHER_STATUS};
use shared::keys::Signer;
use shared::pki::{self, CertificateAuthority, Profile};
use shared::store::Store;
use std::sync::Arc;
use x509_cert::Certificate;

/// A registrar: configuration, store, its TLS/signing identity and the domain CA.
pub struct Registrar {
    config: RegistrarConfig,
    store: Arc<dyn Store>,
    chain: Vec<Certificate>,
    key: Arc<dyn Signer>,
    authority: Arc<RegistrarAuthority>,
    own_domain_ids: Vec<String>,
    masa_clients: MasaClients,
    agent: Option<Arc<crate::agent::AgentService>>,
    metrics: Arc<shared::metrics::Metrics>,
}

impl std::fmt::Debug for Registrar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registrar").field("listen", &self.config.listen).finish_non_exhaustive()
    }
}

impl Registrar {
    /// A registrar issuing LDevIDs from `ca`, identified by `cert` (cmcRA + serverAuth +
    /// clientAuth, issued by `ca`) with `key`.
    pub fn new(
        config: RegistrarConfig,
        store: Arc<dyn Store>,
        ca: CertificateAuthority,
        cert: Certificate,
        key: Arc<dyn Signer>,
    ) -> Self {
        let domain_ca = ca.certificate().clone();
        let chain = vec![cert.clone(), domain_ca.clone()];
        let own_domain_ids = vec![domain_id(&domain_ca), domain_id(&cert)];
        let profiles = [(String::new(), ldevid_profile(&config))].into_iter().collect();
        let authority =
            Arc::new(RegistrarAuthority::new(LocalCa::new(ca, store.clone(), profiles), store.clone()));
        Registrar {
            config,
            store,
            chain,
            key,
            authority,
            own_domain_ids,
            masa_clients: MasaClients::default(),
            agent: None,
            metrics: Arc::new(shared::metrics::Metrics::new("registrar")),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RegistrarConfig {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The registrar certificate, then the domain CA.
    pub fn chain(&self) -> &[Certificate] {
        &self.chain
    }

    /// The registrar's TLS certificate.
    pub fn certificate(&self) -> &Certificate {
        &self.chain[0]
    }

    /// The domain CA certificate.
    pub fn domain_ca(&self) -> &Certificate {
        &self.chain[1]
    }

    /// The registrar's key.
    pub fn key(&self) -> Arc<dyn Signer> {
        self.key.clone()
    }

    /// Adds agent issuance (the `/agent/v1/*` and `/owner/v1/*` routes).
    pub fn with_agent(mut self, agent: crate::agent::AgentService) -> Self {
        self.agent = Some(Arc::new(agent));
        self
    }

    /// The registrar's Prometheus metrics.
    pub fn metrics(&self) -> &shared::metrics::Metrics {
        &self.metrics
    }

    /// Sets `brski_pending_approvals`: pledges waiting for an operator plus agent requests
    /// waiting for an owner.
    pub async fn refresh_pending_gauge(&self) {
        let pledges = crate::pledges::list(self.store.as_ref())
            .await
            .map(|l| l.iter().filter(|r| r.state() == crate::pledges::PledgeState::Pending).count())
            .unwrap_or(0);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let agents = self.agent.as_ref().map(|a| a.pending.waiting(now)).unwrap_or(0);
        self.metrics.set_pending((pledges + agents) as i64);
    }

    /// Agent issuance, when configured.
    pub fn agent(&self) -> Option<&crate::agent::AgentService> {
        self.agent.as_deref()
    }

    /// The domain CA (for agent certificates).
    pub fn domain_ca_authority(&self) -> &CertificateAuthority {
        self.authority.ca()
    }

    /// The kept MASA clients (keep-alive connections, TLS sessions).
    pub(crate) fn masa_clients(&self) -> &MasaClients {
        &self.masa_clients
    }

    /// The audit-log domainIDs that mean this domain (the domain CA's and the registrar's).
    pub fn own_domain_ids(&self) -> &[String] {
        &self.own_domain_ids
    }

    /// The EST policy of the default label: client certificates from the manufacturers
    /// (IDevIDs) or the domain CA (LDevIDs), channel binding as configured.
    fn est_config(&self) -> EstServerConfig {
        let mut policy = LabelPolicy::new(ldevid_profile(&self.config));
        policy.auth = AuthRequirement::ClientCert;
        policy.binding =
            if self.config.require_binding { BindingPolicy::Require } else { BindingPolicy::Accept };
        policy.client_cert_anchors =
            self.config.manufacturers.iter().flat_map(|m| m.idevid_anchors.iter().cloned()).collect();
        policy.client_cert_anchors.push(self.domain_ca().clone());
        EstServerConfig::default().with_label("", policy)
    }

    /// BRSKI and EST routes on one router.
    pub fn router(self: &Arc<Self>) -> Result<Router, ConfigError> {
        let est = est::server::router(self.est_config(), self.authority.clone())?;
        let brski = Router::new()
            .route(PATH_REQUEST_VOUCHER, post(handlers::request_voucher))
            .route(PATH_VOUCHER_STATUS, post(handlers::voucher_status))
            .route(PATH_ENROLL_STATUS, post(handlers::enroll_status))
            .with_state(self.clone());
        let router = brski.merge(est);
        let router = match self.agent {
            Some(_) => router.merge(crate::agent::routes(self.clone())),
            None => router,
        };
        Ok(est::server::observed(router, self.metrics.clone(), self.ready_check()))
    }

    /// Ready when the store answers and the domain CA key signs.
    fn ready_check(self: &Arc<Self>) -> est::server::ReadyCheck {
        let reg = self.clone();
        Arc::new(move || {
            let reg = reg.clone();
            Box::pin(async move {
                reg.store.schema_version().await.map_err(|e| format!("store: {e}"))?;
                reg.domain_ca_authority().signer().sign(b"readyz").map_err(|e| format!("CA key: {e}"))?;
                Ok(())
            })
        })
    }

    /// The TLS server configuration: the registrar chain and key, client certificates optional.
    pub fn tls_config(&self) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
        let chain = self
            .chain
            .iter()
            .map(|c| pki::cert_to_der(c).map(rustls::pki_types::CertificateDer::from))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        Ok(Arc::new(est::server::server_tls_config_with_signer(chain, self.key.clone())?))
    }

    /// Serves on `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        let router = self.router().map_err(std::io::Error::other)?;
        let tls = self.tls_config().map_err(std::io::Error::other)?;
        est::server::serve(listener, tls, router).await
    }
}

/// The LDevID profile: clientAuth + serverAuth, subject from the CSR (checked to carry the
/// IDevID's serialNumber), the configured lifetime.
fn ldevid_profile(config: &RegistrarConfig) -> Profile {
    let mut p = Profile::end_entity(config.ldevid_validity);
    p.extended_key_usage =
        vec![const_oid::db::rfc5280::ID_KP_CLIENT_AUTH, const_oid::db::rfc5280::ID_KP_SERVER_AUTH];
    p
}
