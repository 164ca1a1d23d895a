//! `brski est cacerts|csrattrs|enroll|reenroll|serverkeygen`: a general EST client for any EST
//! server (RFC 7030), with explicit, pinned, implicit or bootstrap trust, Basic or certificate
//! authentication, channel binding, and 202 Retry-After handling.

use super::input::read_certs;
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use est::client::{Enrollment, EstClient, EstConnection};
use est::tls::{client_config, ServerTrust};
use shared::conf::toml_string;
use shared::keys::{Algorithm, Signer, SoftwareKey};
use shared::pki::{self, San};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use x509_cert::Certificate;

#[derive(Debug, Subcommand)]
pub(super) enum EstCommand {
    /// Fetch the CA certificates (GET /cacerts) and write them as PEM.
    Cacerts(CacertsArgs),
    /// Show the CSR attributes the server asks for (GET /csrattrs).
    Csrattrs(CommonArgs),
    /// Generate a key and enroll (POST /simpleenroll); writes key (0600), cert and chain.
    Enroll(EnrollArgs),
    /// Renew or rekey the current certificate (POST /simplereenroll, authenticated with it).
    Reenroll(ReenrollArgs),
    /// Let the server generate the key (POST /serverkeygen); writes key (0600), cert and chain.
    Serverkeygen(ServerkeygenArgs),
    /// Run an EST server: `--config FILE`, or `--dev` (own CA and server certificate in --state).
    Serve(super::est_serve::ServeArgs),
    /// Read a password from stdin and print its argon2 hash for a config file's `users`.
    HashPassword,
    /// Write a commented est.toml for a standalone EST CA (`est serve --config DIR/est.toml`);
    /// the CA and server certificate are created on first start.
    Init(EstInitArgs),
}

/// `brski est init`.
#[derive(Debug, clap::Args)]
pub(super) struct EstInitArgs {
    /// Directory for est.toml and the server's state (created).
    #[arg(long)]
    dir: std::path::PathBuf,
    /// Listen address.
    #[arg(long, default_value = "0.0.0.0:8443")]
    listen: String,
    /// DNS names / IP addresses of the server certificate (repeatable).
    #[arg(long = "name", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
    names: Vec<String>,
    /// Subject of the CA created on first start.
    #[arg(long, default_value = "CN=brski EST CA")]
    ca_subject: String,
}

/// Server, trust and authentication options shared by every EST command.
#[derive(Debug, Args)]
pub(super) struct CommonArgs {
    /// EST server, e.g. https://est.example.com:8443
    #[arg(long)]
    server: String,
    /// CA label (path segment after /.well-known/est/).
    #[arg(long)]
    label: Option<String>,
    /// Explicit trust: PEM file with the EST CA certificate(s).
    #[arg(long, group = "trust")]
    ca: Option<String>,
    /// Trust only a server certificate with this SHA-256 fingerprint (hex).
    #[arg(long, group = "trust")]
    pin: Option<String>,
    /// Implicit trust: the system's CA bundle (SSL_CERT_FILE or /etc/ssl/certs).
    #[arg(long, group = "trust")]
    implicit: bool,
    /// Bootstrap: accept the server provisionally to fetch /cacerts and show fingerprints for a
    /// person to confirm (RFC 7030 §4.1.1). Never the default.
    #[arg(long, group = "trust")]
    insecure_bootstrap: bool,
    /// HTTP Basic user name.
    #[arg(long, requires = "password")]
    user: Option<String>,
    /// HTTP Basic password.
    #[arg(long, requires = "user")]
    password: Option<String>,
    /// Client certificate (PEM chain) for TLS client authentication.
    #[arg(long, requires = "key")]
    cert: Option<String>,
    /// Key URI of the client certificate, e.g. file:client.key
    #[arg(long, requires = "cert")]
    key: Option<String>,
    /// Timeout for each network step, in seconds.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

#[derive(Debug, Args)]
pub(super) struct CacertsArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Write the certificates here (PEM); default stdout.
    #[arg(long)]
    out: Option<PathBuf>,
    /// With --insecure-bootstrap: the server certificate's SHA-256 you confirmed out of band.
    #[arg(long)]
    confirm_fingerprint: Option<String>,
}

/// How a new request is made: key type, channel binding, patience with 202 answers.
#[derive(Debug, Args)]
pub(super) struct RequestOptions {
    /// Key type for a new key: p256 (default), p384, ed25519.
    #[arg(long, default_value = "p256")]
    key_type: String,
    /// Do not put the TLS channel binding (RFC 9266 tls-exporter) into the CSR.
    #[arg(long)]
    no_binding: bool,
    /// Longest total wait when the server answers 202 (seconds).
    #[arg(long, default_value_t = 300)]
    max_wait: u64,
}

impl RequestOptions {
    fn algorithm(&self) -> anyhow::Result<Algorithm> {
        Algorithm::from_cli_name(&self.key_type)
            .with_context(|| format!("unknown key type '{}'", self.key_type))
    }
}

#[derive(Debug, Args)]
pub(super) struct EnrollArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    request: RequestOptions,
    /// Subject of the request (RFC 4514), e.g. "CN=device-42,O=Campus".
    #[arg(long)]
    subject: String,
    /// subjectAltName entries: dns:NAME, uri:URI, ip:ADDR, email:ADDR (repeatable).
    #[arg(long = "san")]
    sans: Vec<String>,
    /// Directory for key.pem (0600), cert.pem and chain.pem.
    #[arg(long)]
    out_dir: PathBuf,
}

#[derive(Debug, Args)]
pub(super) struct ServerkeygenArgs {
    #[command(flatten)]
    enroll: EnrollArgs,
    /// Have the server return the key encrypted to the key of the TLS client certificate
    /// (--cert, --key file:...; EC P-256/P-384 for key agreement, and its keyUsage must allow
    /// keyAgreement): the CSR carries SMIMECapabilities and AsymmetricDecryptKeyIdentifier
    /// (RFC 7030 §4.4.1.2); the key is decrypted and checked here.
    #[arg(long)]
    encrypt_to_client_cert: bool,
}

#[derive(Debug, Args)]
pub(super) struct ReenrollArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    request: RequestOptions,
    /// Generate a new key (rekey, of --key-type) instead of renewing with the current one.
    #[arg(long)]
    rekey: bool,
    /// Directory for cert.pem (and key.pem with --rekey).
    #[arg(long)]
    out_dir: PathBuf,
}

pub(super) fn run(cmd: EstCommand) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        match cmd {
            EstCommand::Cacerts(a) => cacerts(a).await,
            EstCommand::Csrattrs(a) => csrattrs(a).await,
            EstCommand::Enroll(a) => enroll(a, Op::Enroll, None).await,
            EstCommand::Serverkeygen(a) => serverkeygen(a).await,
            EstCommand::Reenroll(a) => reenroll(a).await,
            EstCommand::Serve(a) => super::est_serve::serve(a).await,
            EstCommand::HashPassword => hash_password_from_stdin(),
            EstCommand::Init(a) => est_init(&a),
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

fn trust(c: &CommonArgs) -> anyhow::Result<ServerTrust> {
    Ok(match (&c.ca, &c.pin, c.implicit, c.insecure_bootstrap) {
        (Some(ca), ..) => ServerTrust::Explicit(read_certs(ca)?),
        (_, Some(pin), ..) => ServerTrust::PinnedSha256(parse_fingerprint(pin)?),
        (_, _, true, _) => ServerTrust::Implicit,
        (_, _, _, true) => ServerTrust::InsecureBootstrap,
        _ => {
            bail!("say how to trust the server: --ca FILE, --pin SHA256, --implicit or --insecure-bootstrap")
        }
    })
}

fn parse_fingerprint(s: &str) -> anyhow::Result<[u8; 32]> {
    let hexstr: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    let bytes = hex::decode(&hexstr).context("fingerprint is not hex")?;
    bytes.try_into().map_err(|_| anyhow::anyhow!("a SHA-256 fingerprint has 32 bytes (64 hex digits)"))
}

pub(super) fn client(
    c: &CommonArgs,
    identity: Option<(Vec<Certificate>, Arc<dyn Signer>)>,
) -> anyhow::Result<EstClient> {
    let identity = match (identity, &c.cert, &c.key) {
        (Some(id), ..) => Some(id),
        (None, Some(cert), Some(key)) => {
            Some((read_certs(cert)?, Arc::from(shared::keys::load_signer(key)?)))
        }
        _ => None,
    };
    let tls = client_config(&trust(c)?, identity)?;
    let mut client =
        EstClient::new(&c.server, c.label.as_deref(), tls)?.with_timeout(Duration::from_secs(c.timeout));
    if let (Some(u), Some(p)) = (&c.user, &c.password) {
        if c.insecure_bootstrap {
            bail!(
                "refusing to send a password over an unauthenticated bootstrap connection (RFC 7030 §4.1.1)"
            );
        }
        client = client.with_basic(u, p);
    }
    Ok(client)
}

async fn cacerts(a: CacertsArgs) -> anyhow::Result<()> {
    let client = client(&a.common, None)?;
    let mut conn = client.connect().await?;
    let certs = conn.cacerts().await?;
    if a.common.insecure_bootstrap {
        confirm_bootstrap(&client, &certs, a.confirm_fingerprint.as_deref())?;
    }
    let pem = certs.iter().map(pki::cert_to_pem).collect::<Result<String, _>>()?;
    match &a.out {
        Some(path) => {
            std::fs::write(path, pem).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {} CA certificate(s) to {}", certs.len(), path.display());
        }
        None => print!("{pem}"),
    }
    Ok(())
}

/// RFC 7030 §4.1.1: a person must confirm a fingerprint before bootstrap results are used:
/// the server certificate's, or a returned CA certificate's (the server certificate must then
/// chain to that CA).
fn confirm_bootstrap(
    client: &EstClient,
    certs: &[Certificate],
    confirmed: Option<&str>,
) -> anyhow::Result<()> {
    let server = client.server_certificate().context("no server certificate seen")?;
    let server_fp = shared::crypto::sha256(&pki::cert_to_der(&server)?);
    eprintln!("server certificate SHA-256: {}", hex::encode(server_fp));
    let mut ca_fps = Vec::new();
    for c in certs {
        let fp = shared::crypto::sha256(&pki::cert_to_der(c)?);
        eprintln!("CA '{}' SHA-256: {}", c.tbs_certificate().subject(), hex::encode(fp));
        ca_fps.push((fp, c));
    }
    let Some(confirmed) = confirmed else {
        bail!("compare a fingerprint above out of band, then re-run with --confirm-fingerprint <SHA-256>");
    };
    let want = parse_fingerprint(confirmed)?;
    if want == server_fp {
        return Ok(());
    }
    let (_, ca) = ca_fps
        .iter()
        .find(|(fp, _)| *fp == want)
        .context("no certificate matches --confirm-fingerprint: do not trust this server")?;
    pki::verify_chain(&server, certs, std::slice::from_ref(*ca), time::OffsetDateTime::now_utc())
        .context("the server certificate does not chain to the confirmed CA")?;
    Ok(())
}

async fn csrattrs(a: CommonArgs) -> anyhow::Result<()> {
    let mut conn = client(&a, None)?.connect().await?;
    let attrs = conn.csrattrs().await?;
    if attrs.is_empty() {
        println!("(no CSR attributes requested)");
    }
    for attr in attrs {
        match attr {
            est::wire::CsrAttr::Oid(oid) => println!("oid       {oid} {}", oid_name(&oid)),
            est::wire::CsrAttr::Attribute(at) => {
                println!("attribute {} {} ({} value(s))", at.oid, oid_name(&at.oid), at.values.len())
            }
            est::wire::CsrAttr::Unknown(_) => println!("unknown entry (ignored)"),
        }
    }
    Ok(())
}

fn oid_name(oid: &const_oid::ObjectIdentifier) -> &'static str {
    const_oid::db::DB.by_oid(oid).unwrap_or("")
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Enroll,
    Reenroll,
    ServerKeygen,
}

async fn serverkeygen(a: ServerkeygenArgs) -> anyhow::Result<()> {
    if !a.encrypt_to_client_cert {
        return enroll(a.enroll, Op::ServerKeygen, None).await;
    }
    let c = &a.enroll.common;
    let (Some(cert_path), Some(key_uri)) = (&c.cert, &c.key) else {
        bail!("--encrypt-to-client-cert encrypts to the TLS client certificate: give --cert and --key");
    };
    let leaf = read_certs(cert_path)?.into_iter().next().context("empty certificate file")?;
    // Decryption needs the key itself (ECDH), so only a key file will do.
    let key = match key_uri.parse::<shared::keys::KeyUri>()? {
        shared::keys::KeyUri::File(path) => shared::keys::load_key_file(&path)?,
        #[allow(unreachable_patterns)]
        _ => bail!("--encrypt-to-client-cert decrypts with the client key itself: give --key file:..."),
    };
    if !matches!(key.algorithm(), Algorithm::Es256 | Algorithm::Es384) {
        bail!(
            "--encrypt-to-client-cert needs an EC P-256 or P-384 client key (key agreement), not {}",
            key.algorithm()
        );
    }
    if key.public_key_der() != pki::spki_der(&leaf) {
        bail!("--key does not belong to the first certificate in --cert");
    }
    let key_id = est::keypackage::RequestedKey::Asymmetric(pki::subject_key_id(&leaf));
    let attributes = est::keypackage::request_attributes(&key_id, &est::keypackage::KeyWrap::ALL)?;
    // Explicit trust: the key package's signer must chain to the --ca certificates; otherwise
    // the client takes the CA certificates /cacerts returns on the authenticated connection.
    let anchors = match &c.ca {
        Some(ca) => read_certs(ca)?,
        None => Vec::new(),
    };
    enroll(a.enroll, Op::ServerKeygen, Some(Encryption { attributes, key, anchors })).await
}

/// A serverkeygen request for the key encrypted to the client (RFC 7030 §4.4.1.2).
struct Encryption {
    /// SMIMECapabilities and AsymmetricDecryptKeyIdentifier for the CSR.
    attributes: Vec<x509_cert::attr::Attribute>,
    /// The client certificate's key, which decrypts.
    key: SoftwareKey,
    /// Anchors for the key package's signer (empty: /cacerts).
    anchors: Vec<Certificate>,
}

async fn enroll(a: EnrollArgs, op: Op, encryption: Option<Encryption>) -> anyhow::Result<()> {
    let alg = a.request.algorithm()?;
    let sans = a.sans.iter().map(|s| parse_san(s)).collect::<anyhow::Result<Vec<_>>>()?;
    let subject = pki::parse_name(&a.subject)?;
    std::fs::create_dir_all(&a.out_dir)?;
    let key_path = a.out_dir.join("key.pem");
    if key_path.exists() {
        bail!("{} already exists; refusing to overwrite a private key", key_path.display());
    }
    // For serverkeygen the CSR key only proves the request; the server generates the real one.
    let key = SoftwareKey::generate(alg)?;
    let client = client(&a.common, None)?;
    let request = Request {
        subject,
        sans,
        key: &key,
        binding: !a.request.no_binding,
        op,
        encryption: encryption.as_ref(),
    };
    let (issued, server_key) = with_retry(&client, Duration::from_secs(a.request.max_wait), &request).await?;
    let written_key = match server_key {
        Some(pkcs8) => SoftwareKey::from_pkcs8_der(&pkcs8)?,
        None => key,
    };
    shared::keys::write_key_file(&key_path, &written_key)?;
    write_outputs(&client, &a.out_dir, &issued).await
}

async fn reenroll(a: ReenrollArgs) -> anyhow::Result<()> {
    let (Some(cert_path), Some(key_uri)) = (&a.common.cert, &a.common.key) else {
        bail!("reenroll authenticates with the current certificate: give --cert and --key");
    };
    let current = read_certs(cert_path)?;
    let current_key: Arc<dyn Signer> = Arc::from(shared::keys::load_signer(key_uri)?);
    let leaf = current.first().context("empty certificate file")?;
    let subject = leaf.tbs_certificate().subject().clone();
    let sans = pki::certificate_san(leaf);
    std::fs::create_dir_all(&a.out_dir)?;
    let client = client(&a.common, Some((current.clone(), current_key.clone())))?;
    let issued = if a.rekey {
        let alg = a.request.algorithm()?;
        let key_path = a.out_dir.join("key.pem");
        if key_path.exists() {
            bail!("{} already exists; refusing to overwrite a private key", key_path.display());
        }
        let new_key = SoftwareKey::generate(alg)?;
        let request = Request {
            subject,
            sans,
            key: &new_key,
            binding: !a.request.no_binding,
            op: Op::Reenroll,
            encryption: None,
        };
        let (issued, _) = with_retry(&client, Duration::from_secs(a.request.max_wait), &request).await?;
        shared::keys::write_key_file(&key_path, &new_key)?;
        issued
    } else {
        let request = Request {
            subject,
            sans,
            key: current_key.as_ref(),
            binding: !a.request.no_binding,
            op: Op::Reenroll,
            encryption: None,
        };
        with_retry(&client, Duration::from_secs(a.request.max_wait), &request).await?.0
    };
    write_outputs(&client, &a.out_dir, &issued).await
}

/// What to ask for; the CSR is rebuilt on every connection, since channel binding ties it to
/// the TLS session.
struct Request<'a> {
    subject: x509_cert::name::Name,
    sans: Vec<San>,
    key: &'a dyn Signer,
    binding: bool,
    op: Op,
    /// serverkeygen only: ask for the key encrypted to the client certificate.
    encryption: Option<&'a Encryption>,
}

impl Request<'_> {
    fn csr(&self, conn: &EstConnection) -> anyhow::Result<Vec<u8>> {
        let password = conn.channel_binding().filter(|_| self.binding);
        Ok(match (password, self.encryption) {
            (password, Some(enc)) => est::binding::csr_with_binding(
                &self.subject,
                &self.sans,
                self.key,
                password.as_deref(),
                enc.attributes.clone(),
            )?,
            (Some(pw), None) => {
                est::binding::csr_with_challenge_password(&self.subject, &self.sans, self.key, &pw)?
            }
            (None, None) => pki::build_csr(&self.subject, &self.sans, self.key)?,
        })
    }
}

/// Sends the request, following 202 + Retry-After until `max_wait` has passed.
async fn with_retry(
    client: &EstClient,
    max_wait: Duration,
    req: &Request<'_>,
) -> anyhow::Result<(Vec<Certificate>, Option<Vec<u8>>)> {
    let started = Instant::now();
    loop {
        let mut conn = client.connect().await?;
        let csr = req.csr(&conn)?;
        let outcome = match req.op {
            Op::Enroll => conn.simpleenroll(&csr).await?.map(|c| (c, None)),
            Op::Reenroll => conn.simplereenroll(&csr).await?.map(|c| (c, None)),
            Op::ServerKeygen => match req.encryption {
                Some(enc) => conn
                    .serverkeygen_encrypted(&csr, &est::keypackage::Decryptor::Key(&enc.key), &enc.anchors)
                    .await?
                    .map(|k| (k.certs, Some(k.pkcs8))),
                None => conn.serverkeygen(&csr).await?.map(|k| (k.certs, Some(k.pkcs8))),
            },
        };
        match outcome {
            Enrollment::Done(r) => return Ok(r),
            Enrollment::Pending { retry_after } => {
                let waited = started.elapsed();
                if waited + retry_after > max_wait {
                    bail!(
                        "still pending after {}s (server asks to retry in {}s; --max-wait {}s)",
                        waited.as_secs(),
                        retry_after.as_secs(),
                        max_wait.as_secs()
                    );
                }
                eprintln!(
                    "pending approval: retrying in {}s (waited {}s of at most {}s)",
                    retry_after.as_secs(),
                    waited.as_secs(),
                    max_wait.as_secs()
                );
                tokio::time::sleep(retry_after).await;
            }
        }
    }
}

async fn write_outputs(client: &EstClient, dir: &Path, issued: &[Certificate]) -> anyhow::Result<()> {
    let leaf = issued.first().context("the server returned no certificate")?;
    std::fs::write(dir.join("cert.pem"), pki::cert_to_pem(leaf)?)?;
    let mut chain = issued[1..].to_vec();
    if chain.is_empty() {
        chain = client.connect().await?.cacerts().await?;
    }
    let pem = chain.iter().map(pki::cert_to_pem).collect::<Result<String, _>>()?;
    std::fs::write(dir.join("chain.pem"), pem)?;
    println!(
        "issued '{}' (serial {}), wrote {}",
        leaf.tbs_certificate().subject(),
        hex::encode(leaf.tbs_certificate().serial_number().as_bytes()),
        dir.display()
    );
    Ok(())
}

fn hash_password_from_stdin() -> anyhow::Result<()> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).context("reading the password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        bail!("empty password on stdin");
    }
    println!("{}", est::server::hash_password(password)?);
    Ok(())
}

fn parse_san(s: &str) -> anyhow::Result<San> {
    let (kind, value) =
        s.split_once(':').with_context(|| format!("SAN '{s}': use dns:, uri:, ip: or email:"))?;
    Ok(match kind {
        "dns" => San::Dns(value.into()),
        "uri" => San::Uri(value.into()),
        "email" => San::Email(value.into()),
        "ip" => San::Ip(value.parse().with_context(|| format!("'{value}' is not an IP address"))?),
        _ => bail!("SAN '{s}': use dns:, uri:, ip: or email:"),
    })
}

/// Writes `DIR/est.toml` (refusing to overwrite one).
fn est_init(a: &EstInitArgs) -> anyhow::Result<()> {
    let path = a.dir.join("est.toml");
    if path.exists() {
        anyhow::bail!("{} exists; refusing to overwrite it", path.display());
    }
    std::fs::create_dir_all(&a.dir)?;
    let names = a.names.iter().map(|n| toml_string(n)).collect::<Vec<_>>().join(", ");
    let text = format!(
        "# brski EST server (written by `brski est init`): brski est serve --config {}\n\
         # Relative paths are relative to this file; unknown keys are errors naming the key.\n\n\
         listen = {}\n\
         # Directory of the store (brski.db: every issued certificate, the audit log).\n\
         state = \".\"\n\n\
         [ca]\ncert = \"ca.pem\"\nkey = \"file:ca.key\"\n\
         # The CA is created on first start when the two files above do not exist yet.\n\
         create_subject = {}\n\n\
         [tls]\ncert = \"server.pem\"\nkey = \"file:server.key\"\n\
         # The server certificate is issued from the CA on first start, for these names.\n\
         names = [{names}]\n\n\
         # /.well-known/est/<operation>; add [labels.<name>] sections for more CA labels.\n\
         [labels.default]\nvalidity_days = 365\nextended_key_usage = [\"clientAuth\"]\n\
         auth = \"either\"            # client-cert | basic | either | both\n\
         binding = \"accept\"         # require | accept | ignore (RFC 9266 tls-exporter)\n\
         serverkeygen = false\n\n\
         [labels.default.users]\n\
         # name = \"<argon2 hash from `brski est hash-password`>\"\n",
        path.display(),
        toml_string(&a.listen.to_string()),
        toml_string(&a.ca_subject),
    );
    std::fs::write(&path, text)?;
    println!("wrote {}", path.display());
    println!(
        "add a user: echo -n PASSWORD | brski est hash-password, then a line under [labels.default.users]"
    );
    println!("run it:     brski est serve --config {}", path.display());
    Ok(())
}
