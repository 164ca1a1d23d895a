//! The one idle-connection pool ([`PooledClient`]) against a real TLS server on loopback: a
//! router that answers each request with the client port of its connection shows which
//! connection carried it. The registrar's MASA link kept connections for 20 s at most; the
//! Identity Proxy's upstream kept them for ever: both now follow one rule, pinned here.

use axum::extract::Request;
use axum::routing::{get, post};
use axum::Router;
use est::client::{EstClient, IdleRules, PooledClient};
use est::http::{serve, server_tls_config, ConnectionInfo};
use est::tls::{client_config, ServerTrust};
use shared::keys::{Algorithm, SoftwareKey};
use shared::pki::*;
use std::sync::Arc;
use std::time::Duration;
use x509_cert::Certificate;

/// The client port of the connection a request arrived on.
async fn port(req: Request) -> String {
    let conn = req.extensions().get::<Arc<ConnectionInfo>>().cloned().unwrap_or_default();
    conn.remote.map(|r| r.port().to_string()).unwrap_or_default()
}

async fn start() -> (String, Certificate) {
    let key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let ca_cert = create_ca("CN=Pool Test CA", &key, Duration::from_secs(3600), None).unwrap();
    let ca = CertificateAuthority::new(ca_cert.clone(), Box::new(key)).unwrap();
    let srv_key = SoftwareKey::generate(Algorithm::Es256).unwrap();
    let csr =
        build_csr(&parse_name("CN=localhost").unwrap(), &[San::Ip("127.0.0.1".parse().unwrap())], &srv_key);
    let cert =
        ca.issue(&Csr::verify_der(&csr.unwrap()).unwrap(), &Profile::end_entity(Duration::from_secs(3600)));
    let chain = vec![rustls::pki_types::CertificateDer::from(cert_to_der(&cert.unwrap()).unwrap())];
    let pkcs8 = rustls::pki_types::PrivateKeyDer::Pkcs8(srv_key.to_pkcs8_der().unwrap().to_vec().into());
    let tls = Arc::new(server_tls_config(chain, pkcs8).unwrap());
    let app = Router::new().route("/port", get(port)).route("/port", post(port));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    tokio::spawn(serve(listener, tls, app));
    (url, ca_cert)
}

fn client(url: &str, ca: &Certificate) -> EstClient {
    let tls = client_config(&ServerTrust::Explicit(vec![ca.clone()]), None).unwrap();
    EstClient::new(url, None, tls).unwrap().with_timeout(Duration::from_secs(5))
}

async fn port_of(pool: &PooledClient) -> String {
    let r = pool.get_raw("/port", None).await.unwrap();
    assert_eq!(r.status, 200);
    String::from_utf8(r.body.to_vec()).unwrap()
}

#[tokio::test]
async fn a_connection_is_reused_while_young_and_replaced_when_old() {
    let (url, ca) = start().await;
    let opts = IdleRules { max_idle: 4, max_idle_age: Duration::from_millis(300) };
    let pool = PooledClient::new(client(&url, &ca), opts);
    let first = port_of(&pool).await;
    assert_eq!(pool.idle_connections(), 1);
    let posted = pool.post_raw("/port", "text/plain", None, b"x").await.unwrap();
    assert_eq!(String::from_utf8(posted.body.to_vec()).unwrap(), first, "a young idle connection is reused");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let later = port_of(&pool).await;
    assert_ne!(later, first, "an idle connection older than max_idle_age is not reused");
    assert_eq!(pool.idle_connections(), 1, "the old connection is dropped, the new one kept");
}

#[tokio::test]
async fn a_new_client_drops_the_connections_of_the_old_one() {
    let (url, ca) = start().await;
    let pool = PooledClient::new(client(&url, &ca), IdleRules::default());
    let first = port_of(&pool).await;
    assert_eq!(port_of(&pool).await, first);
    pool.replace_client(client(&url, &ca));
    assert_eq!(pool.idle_connections(), 0);
    assert_ne!(port_of(&pool).await, first);
}

#[tokio::test]
async fn at_most_max_idle_connections_are_kept() {
    let (url, ca) = start().await;
    let pool =
        Arc::new(PooledClient::new(client(&url, &ca), IdleRules { max_idle: 2, ..IdleRules::default() }));
    let calls: Vec<_> = (0..6)
        .map(|_| {
            tokio::spawn({
                let p = pool.clone();
                async move { port_of(&p).await }
            })
        })
        .collect();
    for c in calls {
        c.await.unwrap();
    }
    assert!(pool.idle_connections() <= 2, "{} idle connections kept", pool.idle_connections());
}
