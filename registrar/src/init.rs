//! Creating and opening a registrar's state: the domain CA, the registrar certificate (cmcRA +
//! serverAuth + clientAuth, issued by the domain CA, for the names it is reached by), the
//! commented `registrar.toml`, and the store.

use crate::config::{RegistrarFile, CONFIG_FILE};
use crate::state::Registrar;
use shared::brski::ID_KP_CMC_RA;
use shared::conf::toml_string;
use shared::keys::{generate_key_file, load_signer, redact_pin, write_private, Algorithm, Existing, Signer};
use shared::pki::{self, CertificateAuthority, Profile, San};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use store::open_url;
use x509_cert::Certificate;

const DAY: Duration = Duration::from_secs(86400);

/// Why a registrar's state could not be created or opened.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InitError(pub String);

fn e(context: &str) -> impl Fn(String) -> InitError + '_ {
    move |m| InitError(format!("{context}: {m}"))
}

/// What `init` needs.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// State directory (created).
    pub dir: PathBuf,
    /// Subject of the domain CA, e.g. `CN=Example Campus Domain CA`.
    pub domain_subject: String,
    /// DNS names and IP addresses the registrar is reached by.
    pub names: Vec<String>,
    /// Listen address written to the config.
    pub listen: SocketAddr,
    /// Trusted manufacturers: name and a PEM file of IDevID anchors (copied into the state).
    pub manufacturers: Vec<(String, PathBuf)>,
    /// The agent trust domain: with it, agent issuance is enabled (`agent-policy.toml`).
    pub trust_domain: Option<String>,
    /// The domain CA key as a key URI (e.g. `pkcs11:...`, an HSM key), written to the config as
    /// `domain_ca_key`; default: a new `domain-ca.key` file.
    pub domain_ca_key: Option<String>,
    /// The registrar's own TLS key as a key URI (e.g. `pkcs11:...`), for which the registrar
    /// certificate is issued, written to the config as `registrar_key`; default: a new
    /// `registrar.key` file.
    pub registrar_key: Option<String>,
}

/// Creates the state directory; refuses to overwrite an existing configuration.
pub fn init(o: &InitOptions) -> Result<PathBuf, InitError> {
    let config = o.dir.join(CONFIG_FILE);
    check_options(o, &config)?;
    std::fs::create_dir_all(&o.dir).map_err(|x| InitError(format!("{}: {x}", o.dir.display())))?;
    // A named registrar key is opened (PIN, token) before any key or certificate is written.
    let named_registrar_key = match &o.registrar_key {
        Some(uri) => Some((named_key(&config, uri, "registrar_key")?, uri.clone())),
        None => None,
    };
    let (ca_key, ca_key_uri) = match &o.domain_ca_key {
        Some(uri) => (named_key(&config, uri, "domain_ca_key")?, uri.clone()),
        None => new_key(&o.dir, "domain-ca.key")?,
    };
    let ca_cert = pki::create_ca(&o.domain_subject, &ca_key, 3650 * DAY, Some(0))
        .map_err(|x| e("domain CA")(x.to_string()))?;
    write_pem(&o.dir.join("domain-ca.pem"), std::slice::from_ref(&ca_cert))?;
    let ca = CertificateAuthority::new(ca_cert, ca_key).map_err(|x| e("domain CA")(x.to_string()))?;
    let (key, key_uri) = match named_registrar_key {
        Some(named) => named,
        None => new_key(&o.dir, "registrar.key")?,
    };
    let cert = issue_registrar_cert(&ca, key.as_ref(), &o.names)?;
    write_pem(&o.dir.join("registrar.pem"), &[cert])?;
    let manufacturers = manufacturers_section(o)?;
    let text = format!("{}{}", agent_policy_line(o)?, config_text(o, &ca_key_uri, &key_uri, &manufacturers));
    // A PIN written into a key URI makes the configuration a secret: readable by its owner only.
    let secret = [&ca_key_uri, &key_uri].iter().any(|u| redact_pin(u) != **u);
    write_config(&config, &text, secret)?;
    Ok(config)
}

/// What `init` refuses before it writes anything: an existing registrar, and manufacturer
/// names that would not make a plain file name (`manufacturer-<name>.pem` in the state).
fn check_options(o: &InitOptions, config: &Path) -> Result<(), InitError> {
    if config.exists() {
        return Err(InitError(format!("{} exists; refusing to overwrite a registrar", config.display())));
    }
    for (name, _) in &o.manufacturers {
        let plain = (1..=64).contains(&name.len())
            && !name.starts_with('.')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !plain {
            return Err(InitError(format!(
                "manufacturer name {name:?}: use 1 to 64 characters of A-Z a-z 0-9 . _ - (not starting with .)"
            )));
        }
    }
    Ok(())
}

/// A key named by a key URI (relative `file:` paths against the config file's directory).
fn named_key(config: &Path, uri: &str, what: &str) -> Result<Box<dyn Signer>, InitError> {
    load_signer(&RegistrarFile::resolve_key(config, uri)).map_err(|x| e(what)(x.to_string()))
}

/// A new P-256 key in the file `name` of `dir` (0600), and its key URI.
fn new_key(dir: &Path, name: &str) -> Result<(Box<dyn Signer>, String), InitError> {
    let key = generate_key_file(&dir.join(name), Algorithm::Es256).map_err(|x| e(name)(x.to_string()))?;
    Ok((Box::new(key), format!("file:{name}")))
}

/// Copies each manufacturer's anchors into the state and returns their `[[manufacturer]]`
/// tables (or a commented example without any).
fn manufacturers_section(o: &InitOptions) -> Result<String, InitError> {
    let mut text = String::new();
    for (name, file) in &o.manufacturers {
        let target = format!("manufacturer-{name}.pem");
        std::fs::copy(file, o.dir.join(&target))
            .map_err(|x| InitError(format!("{}: {x}", file.display())))?;
        text.push_str(&format!(
            "\n[[manufacturer]]\nname = {}\nidevid_anchors = {}\n\
             # masa_url = \"https://masa.example:9443\"   # override the IDevID's MASA URL\n\
             # masa_anchors = \"masa-tls-ca.pem\"          # anchors for the MASA's TLS (default: idevid_anchors)\n",
            toml_string(name),
            toml_string(&target),
        ));
    }
    if text.is_empty() {
        text = "\n# Add at least one trusted manufacturer:\n# [[manufacturer]]\n# name = \"example\"\n\
                # idevid_anchors = \"manufacturer-ca.pem\"\n"
            .into();
    }
    Ok(text)
}

/// The commented `registrar.toml` (after the agent policy line).
fn config_text(o: &InitOptions, ca_key_uri: &str, key_uri: &str, manufacturers: &str) -> String {
    format!(
        "# brski registrar configuration (written by `brski registrar init`).\n\
         # Relative paths are relative to this file.\n\n\
         # Address the registrar (BRSKI and EST on one TLS port) listens on.\n\
         listen = {}\n\n\
         # Domain CA that issues LDevIDs, and the registrar's own TLS certificate (cmcRA).\n\
         domain_ca_cert = \"domain-ca.pem\"\ndomain_ca_key = {}\n\
         registrar_cert = \"registrar.pem\"\nregistrar_key = {}\n\n\
         # Store (default: the SQLite file registrar.db in the state directory). Registrars that share\n\
         # one PostgreSQL database share pledges, certificates and the audit log.\n\
         # store = \"postgres://brski:secret@db.example/brski\"\n\n\
         # Pledge approval: \"auto\", \"allowlist\" (serials below, or `brski registrar approve`),\n\
         # or \"manual\" (every new pledge waits with 202 until approved).\n\
         approval = \"auto\"\nallowlist = []\n# Seconds a pending pledge is told to wait before retrying.\nretry_after_secs = 5\n\n\
         # Lifetime of issued LDevIDs (days).\nldevid_days = 365\n\
         # MASA audit log after voucher_status: \"enforce\" (refuse EST on a violation), \"warn\", \"ignore\".\n\
         audit_log = \"enforce\"\n\
         # Require RFC 9266 tls-exporter channel binding in EST CSRs.\nrequire_binding = true\n\n\
         # Announce the registrar by DNS-SD over mDNS as _brski-registrar._tcp while it serves, so pledges\n\
         # on the link find it without a URL (`brski registrar serve --no-mdns` turns it off for one run).\n\
         # It is announced where `listen` is reachable: loopback only for a loopback address.\n\
         mdns = true\n\
         # mdns_interface = \"eth0\"                    # announce on this interface only\n\
         # mdns_instance = \"brski-registrar-campus\"   # instance name (default: brski-registrar-<hostname>)\n\
         # mdns_hostname = \"registrar1.local.\"        # address-record host (default: <hostname>-brski.local.)\n\
         {manufacturers}",
        toml_string(&o.listen.to_string()),
        toml_string(ca_key_uri),
        toml_string(key_uri),
    )
}

/// Writes `agent-policy.toml` (commented) and returns the config line that enables it (or a
/// commented one without a trust domain).
fn agent_policy_line(o: &InitOptions) -> Result<String, InitError> {
    let Some(td) = &o.trust_domain else {
        return Ok(
            "# Agent issuance: run `brski registrar init --trust-domain TD` or write an agent policy and\n\
                   # agent_policy = \"agent-policy.toml\"\n\n"
                .into(),
        );
    };
    shared::agent::check_trust_domain(td).map_err(|x| InitError(format!("trust domain: {x}")))?;
    let path = o.dir.join("agent-policy.toml");
    std::fs::write(&path, agent_policy_template(td))
        .map_err(|x| InitError(format!("{}: {x}", path.display())))?;
    Ok("# Agent issuance policy (the /agent/v1 and /owner/v1 endpoints exist only with it).\n\
        agent_policy = \"agent-policy.toml\"\n\n"
        .into())
}

/// The commented agent policy `init` writes.
pub(crate) fn agent_policy_template(trust_domain: &str) -> String {
    format!(
        "# brski agent issuance policy (written by `brski registrar init`). Relative paths are relative\n\
         # to this file. Agent ids look like wimse://{trust_domain}/agent/<name>.\n\n\
         trust_domain = \"{trust_domain}\"\n\
         # spiffe = false               # issue spiffe:// ids instead of wimse://\n\
         # Credential lifetime when asked (seconds) and the largest allowed (at most 86400).\n\
         default_ttl_secs = 3600\nmax_ttl_secs = 3600\n\
         # Owner grants let renewals reuse an approval until then (capped at 30 days).\n\
         grant_cap_secs = 2592000\n\
         # Refuse credentials that are not bound to an owner.\n\
         require_owner = false\n\
         # Agent certificate subject; {{name}}, {{org}} and {{unit}} (from the owner entry) are filled in.\n\
         # subject_template = \"CN={{name}},O={{org}},OU={{unit}}\"\n\n\
         # Which proxies (LDevID serialNumber, '*' = any, 'prefix*') may ask for which agent ids.\n\
         [[proxy]]\nserial = \"*\"\nagents = [\"wimse://{trust_domain}/agent/*\"]\n\
         # max_ttl_secs = 900\n\n\
         # Owners: their public key (PEM: PUBLIC KEY or CERTIFICATE), which ids they may own, with\n\
         # which models (agent-mediated, owner-mediated = a gateway, server-mediated).\n\
         # [[owner]]\n# id = \"mailto:alice@example.com\"\n# kid = \"alice-1\"\n# key = \"owners/alice.pem\"\n\
         # agents = [\"wimse://{trust_domain}/agent/*\"]\n# models = [\"agent-mediated\", \"server-mediated\"]\n\
         # organization = \"Example Corp\"\n# unit = \"Research\"\n\n\
         # TPM quotes in the proxies' evidence are appraised only with this table: the attestation\n\
         # key's certificate must chain to ak_anchors (PEM), carry the EKU tcg-kp-AIKCertificate\n\
         # (2.23.133.8.3) and the proxy's serialNumber; the quote must bind the request; the quoted\n\
         # sha256 PCRs must hold the values below (index 0-23 = 64 hex digits).\n\
         # [attestation]\n# ak_anchors = \"manufacturer-ca.pem\"\n\
         # require_quote = false   # refuse requests whose evidence carries no TPM quote\n\
         # [attestation.pcrs]\n# \"7\" = \"<64 hex digits>\"\n"
    )
}

/// Issues the registrar certificate: cmcRA (RFC 8995 §5.5.4) + serverAuth + clientAuth (it is
/// also the MASA client certificate), SANs for `names`.
pub(crate) fn issue_registrar_cert(
    ca: &CertificateAuthority,
    key: &dyn Signer,
    names: &[String],
) -> Result<Certificate, InitError> {
    let mut profile = Profile::end_entity(825 * DAY);
    profile.extended_key_usage = vec![
        ID_KP_CMC_RA,
        const_oid::db::rfc5280::ID_KP_SERVER_AUTH,
        const_oid::db::rfc5280::ID_KP_CLIENT_AUTH,
    ];
    profile.san =
        names.iter().map(|n| n.parse().map(San::Ip).unwrap_or_else(|_| San::Dns(n.clone()))).collect();
    let subject = pki::parse_name("CN=brski registrar").map_err(|x| e("subject")(x.to_string()))?;
    let der = pki::build_csr(&subject, &[], key).map_err(|x| e("registrar CSR")(x.to_string()))?;
    let csr = pki::Csr::verify_der(&der).map_err(|x| e("registrar CSR")(x.to_string()))?;
    ca.issue(&csr, &profile).map_err(|x| e("registrar certificate")(x.to_string()))
}

/// A TOML basic string: quoted, backslashes and quotes escaped.
/// Writes the configuration (replacing the file); a `secret` one is 0600 even where an older
/// file was wider ([`write_private`]).
fn write_config(path: &Path, text: &str, secret: bool) -> Result<(), InitError> {
    let written = if secret {
        write_private(path, text.as_bytes(), Existing::Replace)
    } else {
        std::fs::write(path, text)
    };
    written.map_err(|x| InitError(format!("{}: {x}", path.display())))
}

fn write_pem(path: &Path, certs: &[Certificate]) -> Result<(), InitError> {
    let mut pem = String::new();
    for c in certs {
        pem.push_str(&pki::cert_to_pem(c).map_err(|x| InitError(x.to_string()))?);
    }
    std::fs::write(path, pem).map_err(|x| InitError(format!("{}: {x}", path.display())))
}

/// Opens the registrar configured by `config_path` (keys, certificates, store).
pub async fn open(config_path: &Path, listen: Option<SocketAddr>) -> Result<Registrar, InitError> {
    let file = RegistrarFile::load(config_path).map_err(|x| InitError(x.to_string()))?;
    let ca_cert_path = RegistrarFile::resolve(config_path, &file.domain_ca_cert);
    let reg_cert_path = RegistrarFile::resolve(config_path, &file.registrar_cert);
    let ca_key = RegistrarFile::resolve_key(config_path, &file.domain_ca_key);
    let reg_key = RegistrarFile::resolve_key(config_path, &file.registrar_key);
    let mut config = file.into_config(config_path).map_err(|x| InitError(x.to_string()))?;
    if let Some(l) = listen {
        config.listen = l;
    }
    let read = |p: &Path, key: &str| {
        crate::config::read_certs(config_path, p, key).map_err(|x| InitError(x.to_string()))
    };
    let ca_cert = read(&ca_cert_path, "domain_ca_cert")?.remove(0);
    let cert = read(&reg_cert_path, "registrar_cert")?.remove(0);
    let ca_signer = load_signer(&ca_key).map_err(|x| e("domain_ca_key")(x.to_string()))?;
    let signer: Arc<dyn Signer> =
        Arc::from(load_signer(&reg_key).map_err(|x| e("registrar_key")(x.to_string()))?);
    let ca = CertificateAuthority::new(ca_cert, ca_signer).map_err(|x| e("domain_ca_key")(x.to_string()))?;
    let store = open_url(&config.store).await.map_err(|x| e(&store_label(&config.store))(x.to_string()))?;
    let agent = match &config.agent_policy {
        Some(p) => Some(open_agent(p, &config.state)?),
        None => None,
    };
    let registrar = Registrar::new(config, store, ca, cert, signer);
    Ok(match agent {
        Some(a) => registrar.with_agent(a),
        None => registrar,
    })
}

/// Loads the agent policy and the WIT key (created on first use in `state`).
fn open_agent(policy: &Path, state: &Path) -> Result<crate::agent::AgentService, InitError> {
    let policy = crate::agent::AgentPolicy::load(policy).map_err(|x| InitError(x.to_string()))?;
    let key =
        crate::agent::AgentService::wit_key_in(state).map_err(|x| InitError(format!("WIT key: {x}")))?;
    crate::agent::AgentService::new(policy, key).map_err(|x| InitError(x.to_string()))
}

/// Opens only the store of the registrar configured by `config_path` (for `list`, `approve`,
/// `deny`, which need no keys and work while the server runs).
pub async fn open_store(config_path: &Path) -> Result<Arc<dyn shared::store::Store>, InitError> {
    let file = RegistrarFile::load(config_path).map_err(|x| InitError(x.to_string()))?;
    let location = file.store_location(config_path, &file.state_dir(config_path));
    open_url(&location).await.map_err(|x| e(&store_label(&location))(x.to_string()))
}

/// The store location for messages: a URL without its password.
fn store_label(location: &str) -> String {
    if !store::is_postgres_url(location) {
        return location.to_string();
    }
    let (scheme, rest) = location.split_once("://").unwrap_or(("postgres", location));
    match rest.split_once('@') {
        Some((user, host)) if !user.contains('/') => {
            let user = user.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}@{host}")
        }
        _ => location.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(dir: &Path, manufacturer: &str, anchors: PathBuf) -> InitOptions {
        InitOptions {
            dir: dir.to_path_buf(),
            domain_subject: "CN=Test Domain CA".into(),
            names: vec!["127.0.0.1".into()],
            listen: "127.0.0.1:8443".parse().unwrap(),
            manufacturers: vec![(manufacturer.into(), anchors)],
            trust_domain: None,
            domain_ca_key: None,
            registrar_key: None,
        }
    }

    /// The name went unescaped into registrar.toml and into a file name: a quote broke the
    /// TOML, a slash wrote outside the state directory. Both are refused before anything is
    /// written; a plain name is written as a TOML string that reads back the same.
    #[test]
    fn manufacturer_names_are_plain_file_names_and_toml_strings() {
        let dir = tempfile::tempdir().unwrap();
        let anchors = dir.path().join("anchors.pem");
        std::fs::write(&anchors, "").unwrap();
        for bad in ["../../escape", "a/b", "x\"\nevil = 1", ".hidden", ""] {
            let state = dir.path().join("bad");
            let err = init(&options(&state, bad, anchors.clone())).unwrap_err();
            assert!(err.0.contains("manufacturer name"), "{bad:?}: {err}");
            assert!(!state.exists(), "{bad:?}: nothing is written");
        }
        let state = dir.path().join("good");
        let config = init(&options(&state, "acme-1.0_x", anchors)).unwrap();
        let file = RegistrarFile::load(&config).unwrap();
        assert_eq!(file.manufacturers[0].name, "acme-1.0_x");
        assert!(state.join("manufacturer-acme-1.0_x.pem").exists());
    }

    #[test]
    fn store_label_hides_the_password() {
        assert_eq!(store_label("postgres://brski:secret@db:5432/brski"), "postgres://brski@db:5432/brski");
        assert_eq!(store_label("postgresql://db/brski"), "postgresql://db/brski");
        assert_eq!(store_label("/var/lib/brski/registrar.db"), "/var/lib/brski/registrar.db");
    }
}
