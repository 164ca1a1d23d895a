//! What every handler of the registrar shares ([`Registrar`]): configuration, store, its TLS
//! and signing identity, the domain CA behind the EST authority, the link to the MASAs, agent
//! issuance and metrics. The routes and the accept loop that serve it are `server`'s.

use crate::authority::RegistrarAuthority;
use crate::config::RegistrarConfig;
use crate::masa::MasaLink;
use est::authority::LocalCa;
use shared::brski::domain_id;
use shared::keys::Signer;
use shared::pki::{CertificateAuthority, Profile};
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
    masa: MasaLink,
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
        let masa = MasaLink::new(chain.clone(), key.clone(), config.masa_timeout);
        Registrar {
            config,
            store,
            chain,
            key,
            authority,
            own_domain_ids,
            masa,
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

    /// The metrics, shared with the `/metrics` route.
    pub(crate) fn metrics_handle(&self) -> Arc<shared::metrics::Metrics> {
        self.metrics.clone()
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

    /// The registrar's link to the MASAs (one kept client per MASA).
    pub(crate) fn masa(&self) -> &MasaLink {
        &self.masa
    }

    /// The EST authority that enrolls pledges holding a voucher.
    pub(crate) fn authority(&self) -> &Arc<RegistrarAuthority> {
        &self.authority
    }

    /// The audit-log domainIDs that mean this domain (the domain CA's and the registrar's).
    pub fn own_domain_ids(&self) -> &[String] {
        &self.own_domain_ids
    }
}

/// The LDevID profile: clientAuth + serverAuth, subject from the CSR (checked to carry the
/// IDevID's serialNumber), the configured lifetime.
pub(crate) fn ldevid_profile(config: &RegistrarConfig) -> Profile {
    let mut p = Profile::end_entity(config.ldevid_validity);
    p.extended_key_usage =
        vec![const_oid::db::rfc5280::ID_KP_CLIENT_AUTH, const_oid::db::rfc5280::ID_KP_SERVER_AUTH];
    p
}
