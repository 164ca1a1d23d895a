//! The registrar as a running service: the router that serves BRSKI (`/.well-known/brski/...`),
//! EST (`/.well-known/est/...`) and, when configured, agent issuance on one TLS port, and the
//! accept loop (TLS 1.3/1.2, IDevID client certificates accepted provisionally and judged by
//! the handlers).

use crate::handlers;
use crate::state::{ldevid_profile, Registrar};
use axum::routing::post;
use axum::Router;
use est::server::{AuthRequirement, BindingPolicy, ConfigError, EstServerConfig, LabelPolicy};
use shared::brski::{PATH_ENROLL_STATUS, PATH_REQUEST_VOUCHER, PATH_VOUCHER_STATUS};
use shared::pki;
use std::sync::Arc;

impl Registrar {
    /// The EST policy of the default label: client certificates from the manufacturers
    /// (IDevIDs) or the domain CA (LDevIDs), channel binding as configured.
    fn est_config(&self) -> EstServerConfig {
        let mut policy = LabelPolicy::new(ldevid_profile(self.config()));
        policy.auth = AuthRequirement::ClientCert;
        policy.binding =
            if self.config().require_binding { BindingPolicy::Require } else { BindingPolicy::Accept };
        policy.client_cert_anchors =
            self.config().manufacturers.iter().flat_map(|m| m.idevid_anchors.iter().cloned()).collect();
        policy.client_cert_anchors.push(self.domain_ca().clone());
        EstServerConfig::default().with_label("", policy)
    }

    /// BRSKI and EST routes on one router.
    pub fn router(self: &Arc<Self>) -> Result<Router, ConfigError> {
        let est = est::server::router(self.est_config(), self.authority().clone())?;
        let brski = Router::new()
            .route(PATH_REQUEST_VOUCHER, post(handlers::request_voucher))
            .route(PATH_VOUCHER_STATUS, post(handlers::voucher_status))
            .route(PATH_ENROLL_STATUS, post(handlers::enroll_status))
            .with_state(self.clone());
        let router = brski.merge(est);
        let router = match self.agent() {
            Some(_) => router.merge(crate::agent::routes(self.clone())),
            None => router,
        };
        Ok(est::http::observed(router, self.metrics_handle(), self.ready_check()))
    }

    /// Ready when the store answers and the domain CA key signs.
    fn ready_check(self: &Arc<Self>) -> est::http::ReadyCheck {
        let reg = self.clone();
        Arc::new(move || {
            let reg = reg.clone();
            Box::pin(async move {
                reg.store().schema_version().await.map_err(|e| format!("store: {e}"))?;
                reg.domain_ca_authority().signer().sign(b"readyz").map_err(|e| format!("CA key: {e}"))?;
                Ok(())
            })
        })
    }

    /// The TLS server configuration: the registrar chain and key, client certificates optional.
    pub fn tls_config(&self) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
        let chain = self
            .chain()
            .iter()
            .map(|c| pki::cert_to_der(c).map(rustls::pki_types::CertificateDer::from))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        Ok(Arc::new(est::http::server_tls_config_with_signer(chain, self.key())?))
    }

    /// Serves on `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        let router = self.router().map_err(std::io::Error::other)?;
        let tls = self.tls_config().map_err(std::io::Error::other)?;
        est::http::serve(listener, tls, router).await
    }
}
