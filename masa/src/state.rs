//! The MASA's state directory and the [`Masa`] every handler shares: the manufacturer CA (the
//! pledges' voucher trust anchor and the IDevID issuer), the voucher-signing key and
//! certificate, the TLS identity, the configuration and the store.
//!
//! Layout of the state directory (`init` creates it; keys are written 0600 and never
//! overwritten):
//!
//! | file | what |
//! |---|---|
//! | `masa.toml` | configuration ([`MasaConfig`]) |
//! | `manufacturer-ca.pem` / `.key` | manufacturer CA (P-256): trust anchor for vouchers, issuer of IDevIDs |
//! | `voucher-signer.pem` / `.key` | voucher-signing certificate (issued by the CA) and key |
//! | `tls.pem` / `.key` | TLS server certificate (127.0.0.1, ::1, localhost, the URL's host) and key |
//! | `masa.db` | SQLite store: minted devices, ownership records, vouchers, audit log |

use crate::config::{url_host, MasaConfig};
use crate::error::{io_error, MasaError};
use der::Decode;
use shared::conf::resolve_key_uri;
use shared::keys::{load_key_file, load_signer, write_key_file, Algorithm, Signer, SoftwareKey};
use shared::pki::{self, create_ca, CertificateAuthority, Profile, San};
use shared::store::Store;
use spki::SubjectPublicKeyInfoOwned;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use store::SqliteStore;
use x509_cert::Certificate;

/// Configuration file name.
pub const CONFIG_FILE: &str = "masa.toml";
/// Manufacturer CA certificate (the pledges' voucher trust anchor).
pub const CA_CERT_FILE: &str = "manufacturer-ca.pem";
/// Manufacturer CA key.
pub const CA_KEY_FILE: &str = "manufacturer-ca.key";
/// Voucher-signing certificate.
pub const SIGNER_CERT_FILE: &str = "voucher-signer.pem";
/// Voucher-signing key.
pub const SIGNER_KEY_FILE: &str = "voucher-signer.key";
/// TLS server certificate.
pub const TLS_CERT_FILE: &str = "tls.pem";
/// TLS server key.
pub const TLS_KEY_FILE: &str = "tls.key";
/// SQLite store.
pub const STORE_FILE: &str = "masa.db";

/// Manufacturer CA lifetime: it must outlive every pledge that trusts it.
const CA_VALIDITY: Duration = Duration::from_secs(100 * 365 * 86_400);
/// Voucher-signing certificate lifetime.
const SIGNER_VALIDITY: Duration = Duration::from_secs(10 * 365 * 86_400);
/// TLS certificate lifetime.
const TLS_VALIDITY: Duration = Duration::from_secs(825 * 86_400);

/// What `init` needs beyond the directory.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The MASA URL authority (`host:port`) for IDevIDs and the TLS certificate.
    pub url: String,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Manufacturer name (`O=` of the CA and the IDevIDs).
    pub manufacturer: String,
    /// The voucher-signing key as a key URI (e.g. `pkcs11:...`), certified by `init` and
    /// written to `masa.toml`; default: a new `voucher-signer.key` file.
    pub voucher_signer_key: Option<String>,
}

impl InitOptions {
    /// Options for a MASA at `url`, listening on 0.0.0.0:9443 (`config::DEFAULT_LISTEN`),
    /// named after brski.
    pub fn new(url: &str) -> Self {
        InitOptions {
            url: url.to_string(),
            listen: SocketAddr::from(([0, 0, 0, 0], 9443)),
            manufacturer: "brski reference manufacturer".to_string(),
            voucher_signer_key: None,
        }
    }
}

/// A running MASA's state, shared by every request.
pub struct Masa {
    dir: PathBuf,
    config: MasaConfig,
    manufacturer: CertificateAuthority,
    signer: Box<dyn Signer>,
    signer_chain: Vec<Certificate>,
    tls_chain: Vec<Certificate>,
    tls_key: SoftwareKey,
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for Masa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Masa({}, {})",
            self.dir.display(),
            self.manufacturer.certificate().tbs_certificate().subject()
        )
    }
}

impl Masa {
    /// Creates the state directory `dir`: manufacturer CA, voucher-signing and TLS keys and
    /// certificates, `masa.toml` and `masa.db`. Refuses if any of these files exists.
    pub async fn init(dir: &Path, opts: &InitOptions) -> Result<Masa, MasaError> {
        let mut config = MasaConfig::new(&opts.url, opts.listen, &opts.manufacturer);
        config.voucher_signer_key = opts.voucher_signer_key.clone();
        config.check().map_err(MasaError::Invalid)?;
        refuse_existing(dir)?;
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let host = url_host(&config.url).map_err(MasaError::Invalid)?;
        let name = rdn_value(&config.manufacturer);
        let ca_key = new_key(&dir.join(CA_KEY_FILE))?;
        let ca_cert =
            create_ca(&format!("CN={name} Manufacturer CA,O={name}"), &ca_key, CA_VALIDITY, Some(0))?;
        write_file(&dir.join(CA_CERT_FILE), pki::cert_to_pem(&ca_cert)?.as_bytes())?;
        let ca = CertificateAuthority::new(ca_cert, Box::new(ca_key))?;
        let signer: Box<dyn Signer> = match &config.voucher_signer_key {
            Some(uri) => load_signer(&resolve_key_uri(dir, uri))?,
            None => Box::new(new_key(&dir.join(SIGNER_KEY_FILE))?),
        };
        let signer_cert =
            issue(&ca, &signer, &format!("CN={name} MASA voucher signer,O={name}"), &signer_profile(), &[])?;
        write_file(&dir.join(SIGNER_CERT_FILE), pki::cert_to_pem(&signer_cert)?.as_bytes())?;
        let tls_key = new_key(&dir.join(TLS_KEY_FILE))?;
        let tls_cert = issue(
            &ca,
            &tls_key,
            &format!("CN={},O={name}", rdn_value(&host)),
            &tls_profile(),
            &tls_names(&host),
        )?;
        write_file(&dir.join(TLS_CERT_FILE), pki::cert_to_pem(&tls_cert)?.as_bytes())?;
        write_file(&dir.join(CONFIG_FILE), config.to_commented_toml().as_bytes())?;
        Masa::load(dir).await
    }

    /// Opens the state directory `dir` that `init` created.
    pub async fn load(dir: &Path) -> Result<Masa, MasaError> {
        let config = MasaConfig::load(&dir.join(CONFIG_FILE))?;
        let ca_cert = read_cert(&dir.join(CA_CERT_FILE))?;
        let manufacturer =
            CertificateAuthority::new(ca_cert.clone(), Box::new(load_key_file(&dir.join(CA_KEY_FILE))?))?;
        let signer: Box<dyn Signer> = match &config.voucher_signer_key {
            Some(uri) => load_signer(&resolve_key_uri(dir, uri))?,
            None => Box::new(load_key_file(&dir.join(SIGNER_KEY_FILE))?),
        };
        let signer_cert = read_cert(&dir.join(SIGNER_CERT_FILE))?;
        check_pair(&signer_cert, signer.as_ref(), SIGNER_CERT_FILE)?;
        let tls_key = load_key_file(&dir.join(TLS_KEY_FILE))?;
        let tls_cert = read_cert(&dir.join(TLS_CERT_FILE))?;
        check_pair(&tls_cert, &tls_key, TLS_CERT_FILE)?;
        let store = SqliteStore::open(&dir.join(STORE_FILE)).await?;
        Ok(Masa {
            dir: dir.to_path_buf(),
            config,
            manufacturer,
            signer,
            signer_chain: vec![signer_cert, ca_cert.clone()],
            tls_chain: vec![tls_cert, ca_cert],
            tls_key,
            store: Arc::new(store),
        })
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configuration.
    pub fn config(&self) -> &MasaConfig {
        &self.config
    }

    /// The configuration, to apply command-line overrides before serving.
    pub fn config_mut(&mut self) -> &mut MasaConfig {
        &mut self.config
    }

    /// The manufacturer CA certificate: the anchor pledges verify vouchers with.
    pub fn manufacturer_ca(&self) -> &Certificate {
        self.manufacturer.certificate()
    }

    /// The manufacturer CA (issuer of IDevIDs).
    pub(crate) fn manufacturer(&self) -> &CertificateAuthority {
        &self.manufacturer
    }

    /// The voucher-signing key.
    pub(crate) fn voucher_signer(&self) -> &dyn Signer {
        self.signer.as_ref()
    }

    /// The voucher-signing certificate, then the manufacturer CA (carried in every voucher).
    pub fn voucher_chain(&self) -> &[Certificate] {
        &self.signer_chain
    }

    /// The TLS server certificate, then the manufacturer CA.
    pub fn tls_chain(&self) -> &[Certificate] {
        &self.tls_chain
    }

    /// The TLS server key.
    pub(crate) fn tls_key(&self) -> &SoftwareKey {
        &self.tls_key
    }

    /// The store (devices, ownership records, vouchers, audit log).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
}

/// The files `init` writes, so that a second `init` refuses before touching anything.
fn refuse_existing(dir: &Path) -> Result<(), MasaError> {
    let files = [
        CONFIG_FILE,
        CA_CERT_FILE,
        CA_KEY_FILE,
        SIGNER_CERT_FILE,
        SIGNER_KEY_FILE,
        TLS_CERT_FILE,
        TLS_KEY_FILE,
        STORE_FILE,
    ];
    match files.iter().map(|f| dir.join(f)).find(|p| p.exists()) {
        Some(p) => Err(MasaError::AlreadyInitialised(p.display().to_string())),
        None => Ok(()),
    }
}

/// A `file:` key URI with a relative path is relative to the state directory `dir`.
/// Generates a P-256 key and writes it (0600, never overwriting).
fn new_key(path: &Path) -> Result<SoftwareKey, MasaError> {
    let key = SoftwareKey::generate(Algorithm::Es256)?;
    write_key_file(path, &key)?;
    Ok(key)
}

fn write_file(path: &Path, data: &[u8]) -> Result<(), MasaError> {
    std::fs::write(path, data).map_err(io_error(path))
}

fn read_cert(path: &Path) -> Result<Certificate, MasaError> {
    let pem = std::fs::read(path).map_err(io_error(path))?;
    let mut certs = pki::certs_from_pem(&pem)
        .map_err(|e| MasaError::Io { path: path.display().to_string(), detail: e.to_string() })?;
    Ok(certs.remove(0))
}

fn check_pair(cert: &Certificate, key: &dyn Signer, name: &str) -> Result<(), MasaError> {
    if pki::spki_der(cert) != key.public_key_der() {
        return Err(MasaError::Config(format!("{name} does not belong to its key")));
    }
    Ok(())
}

/// Issues a certificate for `key` under `profile` with the manufacturer CA.
fn issue(
    ca: &CertificateAuthority,
    key: &dyn Signer,
    subject: &str,
    profile: &Profile,
    san: &[San],
) -> Result<Certificate, MasaError> {
    let spki = SubjectPublicKeyInfoOwned::from_der(&key.public_key_der())
        .map_err(|e| MasaError::Internal(e.to_string()))?;
    Ok(ca.issue_for_key(spki, pki::parse_name(subject)?, san, profile)?)
}

/// The voucher-signing certificate: digitalSignature, no EKU (CMS verifiers such as
/// `openssl cms -verify` then accept it for any purpose).
fn signer_profile() -> Profile {
    let mut p = Profile::end_entity(SIGNER_VALIDITY);
    p.copy_csr_san = false;
    p
}

/// The TLS server certificate: serverAuth.
fn tls_profile() -> Profile {
    let mut p = Profile::end_entity(TLS_VALIDITY);
    p.extended_key_usage = vec![const_oid::db::rfc5280::ID_KP_SERVER_AUTH];
    p.copy_csr_san = false;
    p
}

/// SANs of the TLS certificate: loopback names plus the URL's host.
fn tls_names(host: &str) -> Vec<San> {
    let mut names = vec![
        San::Ip([127, 0, 0, 1].into()),
        San::Ip(std::net::Ipv6Addr::LOCALHOST.into()),
        San::Dns("localhost".into()),
    ];
    let extra = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => San::Ip(ip),
        Err(_) => San::Dns(host.to_ascii_lowercase()),
    };
    if !names.contains(&extra) {
        names.push(extra);
    }
    names
}

/// Escapes a value for an RFC 4514 string.
pub(crate) fn rdn_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
            || (i == 0 && matches!(c, '#' | ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
