//! `brski masa init|idevid|claim|serve`: the reference MASA (RFC 8995) from the command line.
//! The CLI only parses flags and calls into the `masa` crate; every verb prints what it wrote.

use super::input::read_certs;
use anyhow::{bail, Context};
use clap::{ArgGroup, Args, Subcommand};
use masa::{InitOptions, Masa, Owner};
use masa::{
    CA_CERT_FILE, CA_KEY_FILE, CONFIG_FILE, SIGNER_CERT_FILE, SIGNER_KEY_FILE, STORE_FILE, TLS_CERT_FILE,
    TLS_KEY_FILE,
};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// The `brski masa` verbs.
#[derive(Debug, Subcommand)]
pub(super) enum MasaCommand {
    /// Create a MASA state directory: manufacturer CA, voucher-signing key and certificate, TLS
    /// certificate, masa.toml (commented) and masa.db. Refuses to overwrite an existing one.
    Init(InitArgs),
    /// Mint IDevIDs: one device (--serial) or a batch (--count with --serial-prefix), each as
    /// idevid.key (0600), idevid.pem and manufacturer-ca.pem (the pledge's voucher anchor).
    Idevid(IdevidArgs),
    /// Record which domain owns a device: its domain CA certificate or the SHA-256 of its key.
    Claim(ClaimArgs),
    /// Run the MASA (POST /.well-known/brski/requestvoucher and requestauditlog) over HTTPS.
    Serve(ServeArgs),
}

/// `brski masa init`.
#[derive(Debug, Args)]
pub(super) struct InitArgs {
    /// State directory to create.
    #[arg(long)]
    state: PathBuf,
    /// The MASA URL authority (host:port) written into every IDevID (id-pe-masa-url).
    #[arg(long)]
    url: String,
    /// Address to listen on (config key `listen`).
    #[arg(long, default_value = masa::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Manufacturer name: O= of the manufacturer CA and the IDevIDs.
    #[arg(long, default_value = "brski reference manufacturer")]
    manufacturer: String,
    /// Sign vouchers with this key URI (e.g. an RFC 7512 `pkcs11:` URI) instead of a new
    /// voucher-signer.key; written to masa.toml as `voucher_signer_key`.
    #[arg(long, value_name = "URI")]
    voucher_signer_key: Option<String>,
}

/// `brski masa idevid`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("which").required(true).args(["serial", "count"])))]
pub(super) struct IdevidArgs {
    /// MASA state directory.
    #[arg(long)]
    state: PathBuf,
    /// Serial number of the one device to mint.
    #[arg(long)]
    serial: Option<String>,
    /// Number of devices to mint (serials <prefix>0001, <prefix>0002, ...).
    #[arg(long, requires = "serial_prefix")]
    count: Option<usize>,
    /// Serial number prefix of a batch.
    #[arg(long)]
    serial_prefix: Option<String>,
    /// Output directory (a batch gets one subdirectory per serial).
    #[arg(long)]
    out: PathBuf,
    /// Create the IDevID key and an attestation key (IAK) inside the device's TPM reached through
    /// this TCTI (e.g. `device:/dev/tpmrm0`, `swtpm:host=127.0.0.1,port=2321`) instead of a key
    /// file; writes idevid.key-uri, iak.key-uri and iak.pem. Needs a build with feature `tpm`.
    #[arg(long, value_name = "TCTI", conflicts_with = "count")]
    tpm: Option<String>,
}

/// `brski masa claim`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("owner").required(true).args(["domain_ca", "pubk_sha256"])))]
pub(super) struct ClaimArgs {
    /// MASA state directory.
    #[arg(long)]
    state: PathBuf,
    /// Serial number of the device.
    #[arg(long)]
    serial: String,
    /// The owner's domain CA certificate (PEM).
    #[arg(long)]
    domain_ca: Option<String>,
    /// SHA-256 (hex) of the owner's public key (SubjectPublicKeyInfo).
    #[arg(long)]
    pubk_sha256: Option<String>,
    /// The record expires after this many days (default: never).
    #[arg(long)]
    days: Option<u32>,
}

/// `brski masa serve`.
#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    /// MASA state directory (holding masa.toml).
    #[arg(long, required_unless_present = "config", conflicts_with = "config")]
    state: Option<PathBuf>,
    /// The MASA's masa.toml (its directory is the state directory).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on (overrides config key `listen`).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Issue "logged" vouchers for devices without an ownership record (overrides
    /// `allow_any_owner`; a test-lab policy).
    #[arg(long)]
    allow_any_owner: bool,
    /// Issue nonceless vouchers to registrars authenticated as the owner (overrides `nonceless`).
    #[arg(long)]
    nonceless: bool,
}

/// Runs a `brski masa` verb.
pub(super) fn run(cmd: MasaCommand) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        match cmd {
            MasaCommand::Init(a) => init(a).await,
            MasaCommand::Idevid(a) => idevid(a).await,
            MasaCommand::Claim(a) => claim(a).await,
            MasaCommand::Serve(a) => serve(a).await,
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn init(a: InitArgs) -> anyhow::Result<()> {
    let opts = InitOptions {
        url: a.url,
        listen: a.listen,
        manufacturer: a.manufacturer,
        voucher_signer_key: a.voucher_signer_key.clone(),
    };
    let m = Masa::init(&a.state, &opts).await?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "initialised MASA state in {}", a.state.display())?;
    let files = [
        (CONFIG_FILE, "configuration (commented)"),
        (CA_CERT_FILE, "manufacturer CA: the pledges' voucher trust anchor"),
        (CA_KEY_FILE, "manufacturer CA key (0600)"),
        (SIGNER_CERT_FILE, "voucher-signing certificate"),
        (SIGNER_KEY_FILE, "voucher-signing key (0600)"),
        (TLS_CERT_FILE, "TLS server certificate"),
        (TLS_KEY_FILE, "TLS server key (0600)"),
        (STORE_FILE, "store: devices, owners, vouchers, audit log"),
    ];
    for (name, what) in files {
        if name == SIGNER_KEY_FILE && a.voucher_signer_key.is_some() {
            continue;
        }
        writeln!(out, "  {}  {what}", a.state.join(name).display())?;
    }
    writeln!(
        out,
        "IDevIDs will name the MASA at {} (https://{}/.well-known/brski)",
        m.config().url,
        m.config().url
    )?;
    Ok(())
}

async fn idevid(a: IdevidArgs) -> anyhow::Result<()> {
    let m = Masa::load(&a.state).await?;
    if let (Some(tcti), Some(serial)) = (&a.tpm, &a.serial) {
        return mint_into_tpm(&m, serial, tcti, &a.out).await;
    }
    match (&a.serial, a.count, &a.serial_prefix) {
        (Some(serial), None, _) => {
            let d = m.mint_idevid_to(serial, &a.out).await?;
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "minted IDevID for serial {} ({})",
                d.serial,
                d.idevid.tbs_certificate().subject()
            )?;
            print_device_files(&mut out, &a.out)?;
        }
        (None, Some(count), Some(prefix)) => {
            let mut progress = |done: usize, total: usize, serial: &str| {
                eprint!("\rminted {done}/{total} ({serial})");
                if done == total {
                    eprintln!();
                }
            };
            let serials = m.mint_batch(prefix, count, &a.out, &mut progress).await?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "minted {} IDevIDs under {}", serials.len(), a.out.display())?;
            for s in &serials {
                print_device_files(&mut out, &a.out.join(s))?;
            }
        }
        _ => bail!("give --serial SN, or --count N with --serial-prefix P"),
    }
    Ok(())
}

#[cfg(feature = "tpm")]
async fn mint_into_tpm(m: &Masa, serial: &str, tcti: &str, out: &Path) -> anyhow::Result<()> {
    let d = m.mint_tpm_device_to(serial, tcti, out).await?;
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "minted IDevID for serial {} ({}) into the TPM at {tcti}",
        d.serial,
        d.idevid.tbs_certificate().subject()
    )?;
    writeln!(stdout, "  IDevID key: {}", d.idevid_key)?;
    writeln!(stdout, "  IAK:        {}", d.iak_key)?;
    for p in masa::tpm_device_files(out) {
        writeln!(stdout, "  {}", p.display())?;
    }
    Ok(())
}

#[cfg(not(feature = "tpm"))]
async fn mint_into_tpm(_m: &Masa, _serial: &str, _tcti: &str, _out: &Path) -> anyhow::Result<()> {
    bail!("--tpm: this brski was built without TPM support (cargo build --features tpm; needs libtss2-dev)")
}

fn print_device_files(out: &mut impl Write, dir: &Path) -> std::io::Result<()> {
    for name in [masa::IDEVID_KEY_FILE, masa::IDEVID_CERT_FILE, masa::ANCHOR_FILE] {
        writeln!(out, "  {}", dir.join(name).display())?;
    }
    Ok(())
}

async fn claim(a: ClaimArgs) -> anyhow::Result<()> {
    let m = Masa::load(&a.state).await?;
    let owner = match (&a.domain_ca, &a.pubk_sha256) {
        (Some(file), None) => {
            let cert = read_certs(file)?.into_iter().next().context("no certificate")?;
            Owner::DomainCa(cert)
        }
        (None, Some(hex)) => Owner::from_sha256_hex(hex)?,
        _ => bail!("give one of --domain-ca FILE and --pubk-sha256 HEX"),
    };
    let expires = a.days.map(|d| time::OffsetDateTime::now_utc() + time::Duration::days(i64::from(d)));
    let r = m.claim(&a.serial, owner, expires).await?;
    let until =
        r.expires.map_or("no expiry".to_string(), |e| format!("until {}", shared::rfc3339::format(&e)));
    println!(
        "recorded owner of serial {}: {} ({until}) in {}",
        r.serial,
        r.owner.describe(),
        a.state.join(STORE_FILE).display()
    );
    Ok(())
}

/// The state directory named by `--state`, or by `--config DIR/masa.toml`.
fn state_dir(a: &ServeArgs) -> anyhow::Result<PathBuf> {
    match (&a.state, &a.config) {
        (Some(s), _) => Ok(s.clone()),
        (None, Some(c)) if c.file_name().is_some_and(|n| n == masa::CONFIG_FILE) => {
            Ok(c.parent().map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".")))
        }
        (None, Some(c)) => anyhow::bail!(
            "{}: the MASA reads its configuration as {} in its state directory",
            c.display(),
            masa::CONFIG_FILE
        ),
        (None, None) => anyhow::bail!("give --state DIR or --config DIR/{}", masa::CONFIG_FILE),
    }
}

async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    let dir = state_dir(&a)?;
    let mut m = Masa::load(&dir).await?;
    let cfg = m.config_mut();
    if let Some(listen) = a.listen {
        cfg.listen = listen;
    }
    cfg.allow_any_owner |= a.allow_any_owner;
    cfg.nonceless |= a.nonceless;
    let m = Arc::new(m);
    let listener = masa::bind(&m).await?;
    let addr = listener.local_addr()?;
    let c = m.config();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "brski MASA on https://{addr}/.well-known/brski (IDevIDs name {})", c.url);
    let _ = writeln!(
        out,
        "  allow_any_owner = {}, nonceless = {}, anchor {}",
        c.allow_any_owner,
        c.nonceless,
        dir.join(CA_CERT_FILE).display()
    );
    let _ = out.flush();
    drop(out);
    masa::serve(m, listener).await?;
    Ok(())
}
