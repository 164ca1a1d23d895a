//! `brski owner init`: a new owner directory. Never overwrites anything.

use crate::config::{self, CERT_FILE, CONFIG_FILE, KEY_FILE, PUBLIC_FILE};
use crate::identity::cert_hash;
use crate::OwnerError;
use const_oid::db::rfc5280::{ID_KP_CLIENT_AUTH, ID_KP_SERVER_AUTH};
use shared::agent::check_owner_id;
use shared::agent::jwk::spki_thumbprint;
use shared::keys::{generate_key_file, Algorithm, Signer, SoftwareKey};
use shared::pki::{self, CertificateAuthority, Profile, San};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use x509_cert::Certificate;

/// What `init` needs.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The owner directory (created).
    pub dir: PathBuf,
    /// The owner id.
    pub id: String,
    /// The key id (default: `owner-` and the first 8 characters of the key's thumbprint).
    pub kid: Option<String>,
    /// P-256 (`Es256`) or Ed25519 (`EdDsa`).
    pub alg: Algorithm,
    /// The trust domain, written to the configuration.
    pub trust_domain: Option<String>,
    /// The Identity Server URL, written to the configuration.
    pub server: Option<String>,
    /// The domain CA file, written to the configuration.
    pub domain_ca: Option<String>,
    /// Validity of the owner certificate.
    pub validity: Duration,
}

/// What `init` wrote.
#[derive(Debug, Clone)]
pub struct InitReport {
    /// The key id.
    pub kid: String,
    /// Files written: key, certificate, public key, configuration.
    pub files: [PathBuf; 4],
    /// b64url SHA-256 of the owner certificate (proxies pin the gateway by it).
    pub cert_sha256: String,
    /// The `[[owner]]` entry for the registrar's `agent-policy.toml`.
    pub policy_snippet: String,
}

/// Creates the owner directory: key (0600), self-signed certificate, public key, config.
pub fn init(o: &InitOptions) -> Result<InitReport, OwnerError> {
    check_owner_id(&o.id)?;
    if !matches!(o.alg, Algorithm::Es256 | Algorithm::EdDsa) {
        return Err(OwnerError::Config("owner keys are p256 or ed25519".into()));
    }
    let files = [KEY_FILE, CERT_FILE, PUBLIC_FILE, CONFIG_FILE].map(|f| o.dir.join(f));
    if let Some(f) = files.iter().find(|f| f.exists()) {
        return Err(OwnerError::Config(format!("{} exists; refusing to overwrite an owner", f.display())));
    }
    if let Some(k) = &o.kid {
        config::check_kid(k).map_err(|e| OwnerError::Config(format!("--kid {e}")))?;
    }
    std::fs::create_dir_all(&o.dir).map_err(OwnerError::io(&o.dir))?;
    let key = Arc::new(generate_key_file(&files[0], o.alg)?);
    let kid = match &o.kid {
        Some(k) => k.clone(),
        None => format!("owner-{}", &spki_thumbprint(&key.public_key_der())?[..8]),
    };
    let cert = self_signed(&key, &kid, &o.id, o.validity)?;
    write_new(&files[1], pki::cert_to_pem(&cert)?.as_bytes())?;
    write_new(&files[2], public_pem(&key.public_key_der())?.as_bytes())?;
    // The configuration resolves relative paths against the owner directory: write the CA
    // file as an absolute path when it exists.
    let domain_ca = o
        .domain_ca
        .as_ref()
        .map(|p| std::fs::canonicalize(p).map(|c| c.display().to_string()).unwrap_or_else(|_| p.clone()));
    let text =
        config::render(&o.id, &kid, o.trust_domain.as_deref(), o.server.as_deref(), domain_ca.as_deref());
    write_new(&files[3], text.as_bytes())?;
    let public = std::fs::canonicalize(&files[2]).unwrap_or_else(|_| files[2].clone());
    let policy_snippet = policy_snippet(&o.id, &kid, &public, o.trust_domain.as_deref());
    Ok(InitReport { kid, cert_sha256: cert_hash(&cert), files, policy_snippet })
}

/// A self-signed end-entity certificate (clientAuth + serverAuth) for `key`, subject
/// `CN=<kid>`, with the owner id as its one URI SAN.
pub fn self_signed(
    key: &Arc<SoftwareKey>,
    kid: &str,
    owner_id: &str,
    validity: Duration,
) -> Result<Certificate, OwnerError> {
    let subject = format!("CN={kid}");
    let anchor = pki::create_ca(&subject, key.as_ref(), validity, None)?;
    let ca = CertificateAuthority::new(anchor, Box::new(key.clone()))?;
    let mut profile = Profile::end_entity(validity);
    profile.extended_key_usage = vec![ID_KP_CLIENT_AUTH, ID_KP_SERVER_AUTH];
    let spki =
        der::Decode::from_der(&key.public_key_der()).map_err(|e| OwnerError::Config(format!("{e}")))?;
    let name = pki::parse_name(&subject)?;
    Ok(ca.issue_for_key(spki, name, &[San::Uri(owner_id.to_string())], &profile)?)
}

fn public_pem(spki_der: &[u8]) -> Result<String, OwnerError> {
    der::pem::encode_string("PUBLIC KEY", der::pem::LineEnding::LF, spki_der)
        .map_err(|e| OwnerError::Config(format!("PEM: {e}")))
}

fn write_new(path: &Path, bytes: &[u8]) -> Result<(), OwnerError> {
    use std::io::Write;
    let mut f =
        std::fs::OpenOptions::new().write(true).create_new(true).open(path).map_err(OwnerError::io(path))?;
    f.write_all(bytes).map_err(OwnerError::io(path))
}

/// The `[[owner]]` entry to paste into the registrar's `agent-policy.toml`.
pub fn policy_snippet(id: &str, kid: &str, public: &Path, trust_domain: Option<&str>) -> String {
    let agents = format!("wimse://{}/agent/*", trust_domain.unwrap_or("<trust-domain>"));
    format!(
        "[[owner]]\nid = {}\nkid = {}\nkey = {}   # or copy the file next to agent-policy.toml and name it\n\
         agents = [{}]\n\
         # models = [\"agent-mediated\", \"owner-mediated\", \"server-mediated\"]   # default: all three\n\
         # organization = \"Example Corp\"\n",
        config::toml_str(id),
        config::toml_str(kid),
        config::toml_str(&public.display().to_string()),
        config::toml_str(&agents),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn init_writes_four_files_once() {
        let dir = tempfile::tempdir().unwrap();
        let o = InitOptions {
            dir: dir.path().join("alice"),
            id: "mailto:alice@example.com".into(),
            kid: None,
            alg: Algorithm::EdDsa,
            trust_domain: Some("campus.example".into()),
            server: None,
            domain_ca: None,
            validity: Duration::from_secs(86400),
        };
        let r = init(&o).unwrap();
        let mode = std::fs::metadata(&r.files[0]).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let id = crate::OwnerIdentity::load(&o.dir).unwrap();
        assert_eq!(id.config.kid, r.kid);
        assert_eq!(pki::certificate_san(&id.cert), vec![San::Uri("mailto:alice@example.com".into())]);
        pki::verify_chain(&id.cert, &[], std::slice::from_ref(&id.cert), time::OffsetDateTime::now_utc())
            .unwrap();
        assert!(r.policy_snippet.contains("kid = \"owner-"));
        assert!(matches!(init(&o), Err(OwnerError::Config(m)) if m.contains("refusing")));
    }
}
