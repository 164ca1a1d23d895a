//! `brski owner init`: a new owner directory. Never overwrites anything.

use crate::config::{self, CERT_FILE, CONFIG_FILE, KEY_FILE, PUBLIC_FILE};
use crate::identity::{cert_hash, open_owner_key};
use crate::OwnerError;
use const_oid::db::rfc5280::{ID_KP_CLIENT_AUTH, ID_KP_SERVER_AUTH};
use shared::agent::check_owner_id;
use shared::agent::jwk::spki_thumbprint;
use shared::conf::toml_string;
use shared::keys::{generate_key_file, redact_pin, write_private, Algorithm, Existing, KeyUri, Signer};
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
    /// P-256 (`Es256`) or Ed25519 (`EdDsa`) for the generated `owner.key` (unused with `key`).
    pub alg: Algorithm,
    /// An existing owner key as a key URI (e.g. `pkcs11:...` for a key in a token) instead of
    /// a new `owner.key`; written to the configuration as `key`. A relative `file:` path is
    /// relative to the current directory and written absolute.
    pub key: Option<String>,
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
    /// Files written: the key (unless `key` named one), certificate, public key, configuration.
    pub files: Vec<PathBuf>,
    /// The owner key's URI, PIN redacted (`file:owner.key` for a generated key).
    pub key_uri: String,
    /// b64url SHA-256 of the owner certificate (proxies pin the gateway by it).
    pub cert_sha256: String,
    /// The `[[owner]]` entry for the registrar's `agent-policy.toml`.
    pub policy_snippet: String,
}

/// Creates the owner directory: key (0600) or the existing key `key` names, self-signed
/// certificate, public key, config.
pub fn init(o: &InitOptions) -> Result<InitReport, OwnerError> {
    let [key_file, cert_file, public_file, config_file] = check_options(o)?;
    // An existing key is opened (PIN, algorithm) before anything is written.
    let existing = match &o.key {
        Some(uri) => {
            let uri = absolute_file_uri(uri)?;
            let key = open_owner_key(&uri)?;
            Some((key, uri))
        }
        None => None,
    };
    std::fs::create_dir_all(&o.dir).map_err(OwnerError::io(&o.dir))?;
    let mut files = Vec::with_capacity(4);
    let (key, key_uri): (Arc<dyn Signer>, Option<String>) = match existing {
        Some((key, uri)) => (key, Some(uri)),
        None => {
            let key = Arc::new(generate_key_file(&key_file, o.alg)?);
            files.push(key_file);
            (key, None)
        }
    };
    let kid = match &o.kid {
        Some(k) => k.clone(),
        None => format!("owner-{}", &spki_thumbprint(&key.public_key_der())?[..8]),
    };
    let cert = self_signed(&key, &kid, &o.id, o.validity)?;
    write_new(&cert_file, pki::cert_to_pem(&cert)?.as_bytes(), false)?;
    files.push(cert_file);
    write_new(&public_file, public_pem(&key.public_key_der())?.as_bytes(), false)?;
    write_config(o, &kid, key_uri.as_deref(), &config_file)?;
    let public = std::fs::canonicalize(&public_file).unwrap_or_else(|_| public_file.clone());
    files.extend([public_file, config_file]);
    let policy_snippet = policy_snippet(&o.id, &kid, &public, o.trust_domain.as_deref());
    let key_uri = redact_pin(key_uri.as_deref().unwrap_or(config::DEFAULT_KEY_URI));
    Ok(InitReport { kid, cert_sha256: cert_hash(&cert), files, key_uri, policy_snippet })
}

/// The checks made before anything is written: a valid owner id, a supported algorithm for a
/// generated key, no owner files in the directory yet, a valid `--kid`. Returns the paths of the
/// key, certificate, public key and configuration files.
fn check_options(o: &InitOptions) -> Result<[PathBuf; 4], OwnerError> {
    check_owner_id(&o.id)?;
    if o.key.is_none() && !matches!(o.alg, Algorithm::Es256 | Algorithm::EdDsa) {
        return Err(OwnerError::Config("owner keys are p256 or ed25519".into()));
    }
    let files = [KEY_FILE, CERT_FILE, PUBLIC_FILE, CONFIG_FILE].map(|f| o.dir.join(f));
    if let Some(f) = files.iter().find(|f| f.exists()) {
        return Err(OwnerError::Config(format!("{} exists; refusing to overwrite an owner", f.display())));
    }
    if let Some(k) = &o.kid {
        config::check_kid(k).map_err(|e| OwnerError::Config(format!("--kid {e}")))?;
    }
    Ok(files)
}

/// Writes the owner configuration (`key_uri`: an existing key's URI; `None` for the generated
/// `owner.key`), 0600 when the URI carries a PIN.
fn write_config(
    o: &InitOptions,
    kid: &str,
    key_uri: Option<&str>,
    config_file: &Path,
) -> Result<(), OwnerError> {
    // The configuration resolves relative paths against the owner directory: write the CA
    // file as an absolute path when it exists.
    let domain_ca = o
        .domain_ca
        .as_ref()
        .map(|p| std::fs::canonicalize(p).map(|c| c.display().to_string()).unwrap_or_else(|_| p.clone()));
    let text = config::render(
        &o.id,
        kid,
        key_uri,
        o.trust_domain.as_deref(),
        o.server.as_deref(),
        domain_ca.as_deref(),
    );
    // A PIN written into the URI makes the configuration a secret: readable by its owner only.
    let secret = key_uri.is_some_and(|u| redact_pin(u) != u);
    write_new(config_file, text.as_bytes(), secret)
}

/// `uri` with a relative `file:` path made absolute against the current directory (the
/// configuration would resolve it against the owner directory).
fn absolute_file_uri(uri: &str) -> Result<String, OwnerError> {
    match uri.parse::<KeyUri>()? {
        KeyUri::File(p) if p.is_relative() => {
            let abs = std::path::absolute(&p).map_err(OwnerError::io(&p))?;
            Ok(format!("file:{}", abs.display()))
        }
        _ => Ok(uri.to_string()),
    }
}

/// A self-signed end-entity certificate (clientAuth + serverAuth) for `key`, subject
/// `CN=<kid>`, with the owner id as its one URI SAN.
pub(crate) fn self_signed(
    key: &Arc<dyn Signer>,
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

/// Writes a new file (never overwriting); a `secret` one 0600 and synced ([`write_private`]).
fn write_new(path: &Path, bytes: &[u8], secret: bool) -> Result<(), OwnerError> {
    use std::io::Write;
    if secret {
        return write_private(path, bytes, Existing::Refuse).map_err(OwnerError::io(path));
    }
    let mut f =
        std::fs::OpenOptions::new().write(true).create_new(true).open(path).map_err(OwnerError::io(path))?;
    f.write_all(bytes).map_err(OwnerError::io(path))
}

/// The `[[owner]]` entry to paste into the registrar's `agent-policy.toml`.
pub(crate) fn policy_snippet(id: &str, kid: &str, public: &Path, trust_domain: Option<&str>) -> String {
    let agents = format!("wimse://{}/agent/*", trust_domain.unwrap_or("<trust-domain>"));
    format!(
        "[[owner]]\nid = {}\nkid = {}\nkey = {}   # or copy the file next to agent-policy.toml and name it\n\
         agents = [{}]\n\
         # models = [\"agent-mediated\", \"owner-mediated\", \"server-mediated\"]   # default: all three\n\
         # organization = \"Example Corp\"\n",
        toml_string(id),
        toml_string(kid),
        toml_string(&public.display().to_string()),
        toml_string(&agents),
    )
}

#[cfg(test)]
mod tests;
