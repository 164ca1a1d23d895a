//! `brski est serve --dev`: a standalone EST CA for trying EST and for interop testing. It
//! creates (or reuses) a CA and a server certificate for 127.0.0.1 / localhost under the state
//! directory, records every issued certificate in the store, and prints how to enroll.

use anyhow::{bail, Context};
use clap::Args;
use est::authority::LocalCa;
use est::http::server_tls_config;
use est::server::{
    hash_password, router, AuthRequirement, BindingPolicy, EstFileConfig, EstServerConfig, LabelPolicy,
};
use shared::keys::{generate_key_file, load_key_file, Algorithm, Signer};
use shared::pki::{self, CertificateAuthority, Profile, San};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use store::SqliteStore;
use x509_cert::Certificate;

const DAY: Duration = Duration::from_secs(86400);

#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    /// Configuration file (TOML; see est/est-serve.example.toml).
    #[arg(long, conflicts_with_all = ["dev", "state", "user", "password", "require_binding"])]
    config: Option<PathBuf>,
    /// Zero-config development mode: own CA and server certificate in --state.
    #[arg(long, requires = "state")]
    dev: bool,
    /// State directory of --dev: ca.pem, ca.key, server.pem, server.key, brski.db.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8443", conflicts_with = "config")]
    listen: SocketAddr,
    /// HTTP Basic user accepted for enrollment.
    #[arg(long, requires = "password")]
    user: Option<String>,
    /// Password of --user (stored only as an argon2 hash in memory).
    #[arg(long, requires = "user")]
    password: Option<String>,
    /// Require RFC 9266 channel binding in every CSR (default: checked when present).
    #[arg(long)]
    require_binding: bool,
}

/// Runs the server until the process is stopped.
pub(super) async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    match (&a.config, &a.state) {
        (Some(path), _) => serve_config(path).await,
        (None, Some(state)) if a.dev => serve_dev(&a, state).await,
        _ => bail!("give --config FILE, or --dev --state DIR"),
    }
}

/// `--config FILE`: an existing (or first-start created) CA, labels and users from the file.
async fn serve_config(path: &Path) -> anyhow::Result<()> {
    let cfg = EstFileConfig::load(path)?;
    std::fs::create_dir_all(&cfg.state).with_context(|| format!("creating {}", cfg.state.display()))?;
    let ca = config_ca(&cfg)?;
    let (chain, key) = config_tls(&cfg, &ca)?;
    let store = Arc::new(SqliteStore::open(&cfg.state.join("brski.db")).await?);
    let config = cfg.server_config(ca.certificate())?;
    let labels: Vec<String> =
        config.labels.keys().map(|l| if l.is_empty() { "(default)".into() } else { l.clone() }).collect();
    let authority = Arc::new(LocalCa::new(ca, store.clone(), config.profiles()));
    let app = observed(router(config, authority.clone())?, store, authority)?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("listening on {}", cfg.listen))?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "brski EST server on https://{} (labels: {})",
        listener.local_addr()?,
        labels.join(", ")
    );
    drop(out);
    est::http::serve_with(
        listener,
        Arc::new(server_tls_config(chain, key)?),
        app,
        cfg.limits.serve_options(),
    )
    .await?;
    Ok(())
}

/// The CA of a config file: loaded, or created when absent and `create_subject` is set.
fn config_ca(cfg: &EstFileConfig) -> anyhow::Result<CertificateAuthority> {
    let key_path = file_key_path(&cfg.ca.key);
    if !cfg.ca.cert.exists() {
        let (Some(subject), Some(key_path)) = (&cfg.ca.create_subject, &key_path) else {
            bail!(
                "{} does not exist (set ca.create_subject and a file: key to create a CA)",
                cfg.ca.cert.display()
            );
        };
        let key = generate_key_file(key_path, Algorithm::Es256)?;
        let cert = pki::create_ca(subject, &key, 3650 * DAY, Some(0))?;
        std::fs::write(&cfg.ca.cert, pki::cert_to_pem(&cert)?)?;
        return Ok(CertificateAuthority::new(cert, Box::new(key))?);
    }
    let cert = pki::cert_from_pem(&std::fs::read_to_string(&cfg.ca.cert)?)?;
    Ok(CertificateAuthority::new(cert, shared::keys::load_signer(&cfg.ca.key)?)?)
}

/// The TLS identity of a config file: loaded, or issued by the CA when absent and `names` is set.
fn config_tls(cfg: &EstFileConfig, ca: &CertificateAuthority) -> anyhow::Result<ServerIdentity> {
    let key_path = file_key_path(&cfg.tls.key).context("tls.key must be a file: key URI")?;
    let key = if key_path.exists() {
        load_key_file(&key_path)?
    } else {
        generate_key_file(&key_path, Algorithm::Es256)?
    };
    if !cfg.tls.cert.exists() {
        if cfg.tls.names.is_empty() {
            bail!("{} does not exist (set tls.names to issue one from the CA)", cfg.tls.cert.display());
        }
        let cert = issue_server_cert(ca, &key, &cfg.tls.names)?;
        std::fs::write(&cfg.tls.cert, pki::cert_to_pem(&cert)?)?;
    }
    let certs = pki::certs_from_pem(&std::fs::read(&cfg.tls.cert)?)?;
    identity(&certs, ca, &key)
}

fn file_key_path(uri: &str) -> Option<PathBuf> {
    match uri.parse::<shared::keys::KeyUri>() {
        Ok(shared::keys::KeyUri::File(p)) => Some(p),
        _ => None,
    }
}

async fn serve_dev(a: &ServeArgs, state: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(state).with_context(|| format!("creating {}", state.display()))?;
    let ca = dev_ca(state)?;
    let (server_chain, server_key) = dev_server_cert(state, &ca)?;
    let store = Arc::new(SqliteStore::open(&state.join("brski.db")).await?);
    let mut profile = Profile::end_entity(365 * DAY);
    profile.extended_key_usage = vec![const_oid::db::rfc5280::ID_KP_CLIENT_AUTH];
    let mut policy = LabelPolicy::new(profile);
    policy.client_cert_anchors = vec![ca.certificate().clone()];
    policy.auth = AuthRequirement::Either;
    policy.binding = if a.require_binding { BindingPolicy::Require } else { BindingPolicy::Accept };
    policy.serverkeygen = true;
    if let (Some(u), Some(p)) = (&a.user, &a.password) {
        policy.basic_users.insert(u.clone(), hash_password(p)?);
    }
    let config = EstServerConfig::default().with_label("", policy);
    let ca_cert = ca.certificate().clone();
    let authority = Arc::new(LocalCa::new(ca, store.clone(), config.profiles()));
    let app = observed(router(config, authority.clone())?, store, authority)?;
    let tls = Arc::new(server_tls_config(server_chain, server_key)?);
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .with_context(|| format!("listening on {}", a.listen))?;
    print_banner(a, state, &ca_cert, listener.local_addr()?);
    est::http::serve(listener, tls, app).await?;
    Ok(())
}

/// Reuses DIR/ca.pem + DIR/ca.key, or creates them.
fn dev_ca(dir: &Path) -> anyhow::Result<CertificateAuthority> {
    let (cert_path, key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
    if cert_path.exists() && key_path.exists() {
        let cert = pki::cert_from_pem(&std::fs::read_to_string(&cert_path)?)?;
        return Ok(CertificateAuthority::new(cert, Box::new(load_key_file(&key_path)?))?);
    }
    let key = generate_key_file(&key_path, Algorithm::Es256)?;
    let cert = pki::create_ca("CN=brski EST development CA", &key, 3650 * DAY, Some(0))?;
    std::fs::write(&cert_path, pki::cert_to_pem(&cert)?)?;
    Ok(CertificateAuthority::new(cert, Box::new(key))?)
}

type ServerIdentity =
    (Vec<rustls::pki_types::CertificateDer<'static>>, rustls::pki_types::PrivateKeyDer<'static>);

/// Reuses or issues DIR/server.pem (127.0.0.1, ::1, localhost; serverAuth + cmcRA) and its key.
fn dev_server_cert(dir: &Path, ca: &CertificateAuthority) -> anyhow::Result<ServerIdentity> {
    let (cert_path, key_path) = (dir.join("server.pem"), dir.join("server.key"));
    let key = if key_path.exists() {
        load_key_file(&key_path)?
    } else {
        generate_key_file(&key_path, Algorithm::Es256)?
    };
    let cert = match std::fs::read_to_string(&cert_path) {
        Ok(pem) => pki::cert_from_pem(&pem)?,
        Err(_) => {
            let cert = issue_server_cert(ca, &key, &["127.0.0.1".into(), "::1".into(), "localhost".into()])?;
            std::fs::write(&cert_path, pki::cert_to_pem(&cert)?)?;
            cert
        }
    };
    identity(&[cert], ca, &key)
}

/// The rustls chain (server certificate(s), then the CA) and key.
fn identity(
    certs: &[Certificate],
    ca: &CertificateAuthority,
    key: &shared::keys::SoftwareKey,
) -> anyhow::Result<ServerIdentity> {
    let chain = certs
        .iter()
        .chain(std::iter::once(ca.certificate()))
        .map(|c| pki::cert_to_der(c).map(rustls::pki_types::CertificateDer::from))
        .collect::<Result<Vec<_>, _>>()?;
    let pkcs8 = key.to_pkcs8_der()?;
    Ok((chain, rustls::pki_types::PrivateKeyDer::Pkcs8(pkcs8.to_vec().into())))
}

/// A server certificate (serverAuth + cmcRA) for DNS names and IP addresses.
fn issue_server_cert(
    ca: &CertificateAuthority,
    key: &dyn Signer,
    names: &[String],
) -> anyhow::Result<Certificate> {
    let mut profile = Profile::end_entity(825 * DAY);
    profile.extended_key_usage = vec![
        const_oid::db::rfc5280::ID_KP_SERVER_AUTH,
        const_oid::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.28"),
    ];
    profile.san =
        names.iter().map(|n| n.parse().map(San::Ip).unwrap_or_else(|_| San::Dns(n.clone()))).collect();
    let csr = pki::Csr::verify_der(&pki::build_csr(&pki::parse_name("CN=localhost")?, &[], key)?)?;
    Ok(ca.issue(&csr, &profile)?)
}

/// Prints what was made and how to enroll. Write errors (a closed stdout) are ignored: the
/// server must keep serving when nobody reads its banner.
fn print_banner(a: &ServeArgs, state: &Path, ca: &Certificate, addr: SocketAddr) {
    let _ = write_banner(&mut std::io::stdout().lock(), a, state, ca, addr);
}

fn write_banner(
    out: &mut impl Write,
    a: &ServeArgs,
    state: &Path,
    ca: &Certificate,
    addr: SocketAddr,
) -> std::io::Result<()> {
    let der = pki::cert_to_der(ca).unwrap_or_default();
    let ca_pem = state.join("ca.pem");
    let url = format!("https://{addr}/.well-known/est");
    writeln!(out, "brski EST development server on https://{addr}")?;
    writeln!(
        out,
        "  CA:       {} (SHA-256 {})",
        ca_pem.display(),
        hex::encode(shared::crypto::sha256(&der))
    )?;
    writeln!(out, "  server:   {} (127.0.0.1, ::1, localhost)", state.join("server.pem").display())?;
    writeln!(out, "  store:    {}", state.join("brski.db").display())?;
    let auth = match (&a.user, &a.password) {
        (Some(u), Some(p)) => format!("-u '{u}:{p}'"),
        _ => "--cert client.pem --key client.key".into(),
    };
    writeln!(out, "\nEnroll with curl and openssl:")?;
    writeln!(out, "  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout device.key -subj /CN=device-1 -outform DER | openssl base64 > device.csr.b64")?;
    writeln!(out, "  curl --cacert {} {auth} -H 'Content-Type: application/pkcs10' --data-binary @device.csr.b64 {url}/simpleenroll | openssl base64 -d | openssl pkcs7 -inform DER -print_certs", ca_pem.display())?;
    writeln!(out, "or with brski:")?;
    let basic = match (&a.user, &a.password) {
        (Some(u), Some(p)) => format!(" --user '{u}' --password '{p}'"),
        _ => String::new(),
    };
    writeln!(
        out,
        "  brski est enroll --server https://{addr} --ca {}{basic} --subject CN=device-1 --out-dir device-1",
        ca_pem.display()
    )?;
    out.flush()
}

/// Adds request ids, `brski_*` metrics, `/metrics`, `/healthz` and `/readyz` (store reachable,
/// CA key signs) to the EST router.
fn observed(app: axum::Router, store: Arc<SqliteStore>, ca: Arc<LocalCa>) -> anyhow::Result<axum::Router> {
    let metrics = Arc::new(shared::metrics::Metrics::new("est"));
    let ready: est::http::ReadyCheck = Arc::new(move || {
        let (store, ca) = (store.clone(), ca.clone());
        Box::pin(async move {
            use shared::store::Store;
            store.schema_version().await.map_err(|e| format!("store: {e}"))?;
            ca.ca().signer().sign(b"readyz").map_err(|e| format!("CA key: {e}"))?;
            Ok(())
        })
    });
    Ok(est::http::observed(app, metrics, ready))
}
