//! `brski pledge init|bootstrap|status|serve`: a device joining a domain with its IDevID, and
//! then serving as the Identity Proxy.

use clap::{Args, Subcommand};
use pledge::{bootstrap, Idevid, PledgeConfig};
use pledge::{commented, PledgeFile, PLEDGE_FILE};
use shared::signed::Format;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Debug, Subcommand)]
pub(super) enum PledgeCommand {
    /// Write a commented pledge.toml into the state directory (next to the IDevID files that
    /// `brski masa idevid` wrote); `bootstrap` reads it, flags override its keys.
    Init(InitArgs),
    /// Join a domain: BRSKI voucher flow with the IDevID, then EST enrollment (or EST only,
    /// when --est-anchor names a trusted EST server certificate).
    Bootstrap(BootstrapArgs),
    /// Print what the pledge holds and when it expires.
    Status(StatusArgs),
    /// Serve the Agent API (Identity Proxy) to local agents after bootstrapping.
    Serve(super::pledge_serve::ServeArgs),
}

#[derive(Debug, Args)]
pub(super) struct InitArgs {
    /// State directory (holding idevid.key, idevid.pem, manufacturer-ca.pem).
    #[arg(long)]
    state: PathBuf,
    /// Registrar URL (without it, registrars are discovered by mDNS).
    #[arg(long)]
    registrar: Option<String>,
    /// Voucher format: cms, jws or cose.
    #[arg(long, default_value = "cms", value_parser = |s: &str| Format::from_name(s).ok_or("cms, jws or cose"))]
    format: Format,
}

#[derive(Debug, Args)]
pub(super) struct BootstrapArgs {
    /// State directory: idevid.key, idevid.pem, manufacturer-ca.pem (as `brski masa idevid`
    /// writes them); the LDevID, domain anchors and voucher are written here. Its pledge.toml,
    /// if any, is read (flags override it).
    #[arg(long)]
    state: PathBuf,
    /// A configuration file other than <state>/pledge.toml.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Registrar URL, e.g. https://registrar.example:8443. Without it, registrars are
    /// discovered by mDNS (`_brski-registrar._tcp`) and tried in turn.
    #[arg(long)]
    registrar: Option<String>,
    /// How long mDNS discovery browses for registrars, in seconds (each attempt; default 10).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=3600))]
    discovery_timeout: Option<u64>,
    /// Voucher format: cms (default), jws or cose.
    #[arg(long, value_parser = |s: &str| Format::from_name(s).ok_or("cms, jws or cose"))]
    format: Option<Format>,
    /// EST-only: a PEM trust anchor for the EST server (skips BRSKI).
    #[arg(long)]
    est_anchor: Option<PathBuf>,
    /// EST server URL for --est-anchor (default: --registrar).
    #[arg(long)]
    est_server: Option<String>,
    /// Attempts before giving up (fresh nonce each, exponential backoff; default 5).
    #[arg(long)]
    max_attempts: Option<u32>,
    /// Longest wait for an operator's approval, in seconds (default 600).
    #[arg(long)]
    max_wait: Option<u64>,
    /// The device clock cannot be trusted: skip expiry checks.
    #[arg(long)]
    untrusted_clock: bool,
}

#[derive(Debug, Args)]
pub(super) struct StatusArgs {
    /// State directory.
    #[arg(long)]
    state: PathBuf,
}

/// Runs a pledge command.
pub(super) fn run(cmd: PledgeCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PledgeCommand::Init(a) => init(a),
        PledgeCommand::Bootstrap(a) => tokio::runtime::Runtime::new()?.block_on(run_bootstrap(a)),
        PledgeCommand::Serve(a) => super::pledge_serve::run(a),
        PledgeCommand::Status(a) => {
            print!("{}", pledge::status_text(&a.state)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn init(a: InitArgs) -> anyhow::Result<ExitCode> {
    let path = a.state.join(PLEDGE_FILE);
    if path.exists() {
        anyhow::bail!("{} exists; refusing to overwrite it", path.display());
    }
    std::fs::create_dir_all(&a.state)?;
    std::fs::write(&path, commented(a.registrar.as_deref(), a.format))?;
    println!(
        "wrote {} (edit it, then: brski pledge bootstrap --state {})",
        path.display(),
        a.state.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The configuration: defaults, then the pledge.toml keys, then the flags.
fn config(a: &BootstrapArgs) -> anyhow::Result<PledgeConfig> {
    let path = a.config.clone().unwrap_or_else(|| a.state.join(PLEDGE_FILE));
    let mut cfg = if a.config.is_some() || path.exists() {
        PledgeFile::load(&path)?.apply(&a.state, &path)?
    } else {
        PledgeConfig::in_dir(&a.state)
    };
    if a.registrar.is_some() {
        cfg.registrar = a.registrar.clone();
    }
    if let Some(s) = a.discovery_timeout {
        cfg.discovery_timeout = std::time::Duration::from_secs(s);
    }
    if let Some(f) = a.format {
        cfg.format = f;
    }
    if a.est_anchor.is_some() {
        cfg.est_server_anchor = a.est_anchor.clone();
    }
    if a.est_server.is_some() {
        cfg.est_server = a.est_server.clone();
    }
    if let Some(n) = a.max_attempts {
        cfg.max_attempts = n.max(1);
    }
    if let Some(s) = a.max_wait {
        cfg.max_pending_wait = std::time::Duration::from_secs(s);
    }
    if a.untrusted_clock {
        cfg.trusted_clock = false;
    }
    Ok(cfg)
}

async fn run_bootstrap(a: BootstrapArgs) -> anyhow::Result<ExitCode> {
    let cfg = config(&a)?;
    let id = Idevid::load(&cfg)?;
    println!("pledge {} bootstrapping ({} voucher format)", id.serial, cfg.format);
    let started = Instant::now();
    match bootstrap(&cfg, &id).await {
        Ok(o) => {
            let leaf = o.chain[0].tbs_certificate();
            println!("enrolled ({}) in {:.0?} after {} attempt(s)", o.mode, started.elapsed(), o.attempts);
            match &o.discovered {
                Some(instance) => println!("  server:  {} (discovered by mDNS: \"{instance}\")", o.server),
                None => println!("  server:  {}", o.server),
            }
            println!("  LDevID:  {} (issued by {})", leaf.subject(), leaf.issuer());
            println!("  key:     {}", o.files.key.display());
            println!("  cert:    {}", o.files.cert.display());
            println!("  domain:  {}", o.files.domain_ca.display());
            if let Some(v) = &o.files.voucher {
                println!("  voucher: {}", v.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("bootstrap failed: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
