//! `brski pledge bootstrap|status`: a device joining a domain with its IDevID.

use clap::{Args, Subcommand};
use pledge::{bootstrap, Idevid, PledgeConfig};
use shared::signed::Format;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Debug, Subcommand)]
pub enum PledgeCommand {
    /// Join a domain: BRSKI voucher flow with the IDevID, then EST enrollment (or EST only,
    /// when --est-anchor names a trusted EST server certificate).
    Bootstrap(BootstrapArgs),
    /// Print what the pledge holds and when it expires.
    Status(StatusArgs),
    /// Serve the Agent API (Identity Proxy) to local agents after bootstrapping.
    Serve(super::pledge_serve::ServeArgs),
}

#[derive(Debug, Args)]
pub struct BootstrapArgs {
    /// State directory: idevid.key, idevid.pem, manufacturer-ca.pem (as `brski masa idevid`
    /// writes them); the LDevID, domain anchors and voucher are written here.
    #[arg(long)]
    state: PathBuf,
    /// Registrar URL, e.g. https://registrar.example:8443. Without it, registrars are
    /// discovered by mDNS (`_brski-registrar._tcp`) and tried in turn.
    #[arg(long)]
    registrar: Option<String>,
    /// How long mDNS discovery browses for registrars, in seconds (each attempt).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    discovery_timeout: u64,
    /// Voucher format: cms (default), jws or cose.
    #[arg(long, default_value = "cms", value_parser = |s: &str| Format::from_name(s).ok_or("cms, jws or cose"))]
    format: Format,
    /// EST-only: a PEM trust anchor for the EST server (skips BRSKI).
    #[arg(long)]
    est_anchor: Option<PathBuf>,
    /// EST server URL for --est-anchor (default: --registrar).
    #[arg(long)]
    est_server: Option<String>,
    /// Attempts before giving up (fresh nonce each, exponential backoff).
    #[arg(long, default_value_t = 5)]
    max_attempts: u32,
    /// Longest wait for an operator's approval, in seconds.
    #[arg(long, default_value_t = 600)]
    max_wait: u64,
    /// The device clock cannot be trusted: skip expiry checks.
    #[arg(long)]
    untrusted_clock: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// State directory.
    #[arg(long)]
    state: PathBuf,
}

/// Runs a pledge command.
pub fn run(cmd: PledgeCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PledgeCommand::Bootstrap(a) => tokio::runtime::Runtime::new()?.block_on(run_bootstrap(a)),
        PledgeCommand::Serve(a) => super::pledge_serve::run(a),
        PledgeCommand::Status(a) => {
            print!("{}", pledge::files::status_text(&a.state)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn run_bootstrap(a: BootstrapArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = PledgeConfig::in_dir(&a.state);
    cfg.registrar = a.registrar;
    cfg.discovery_timeout = std::time::Duration::from_secs(a.discovery_timeout);
    cfg.format = a.format;
    cfg.est_server_anchor = a.est_anchor;
    cfg.est_server = a.est_server;
    cfg.max_attempts = a.max_attempts.max(1);
    cfg.max_pending_wait = std::time::Duration::from_secs(a.max_wait);
    cfg.trusted_clock = !a.untrusted_clock;
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
