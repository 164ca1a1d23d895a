//! `brski pledge serve`: the Identity Proxy. Serves the Agent API on a Unix socket for the
//! agents on this host and forwards their credential requests to the registrar over mutual
//! TLS with the LDevID, renewing the LDevID as it ages.

use clap::Args;
use pledge::Attestation;
use pledge::ProxyConfig;
use pledge::{Idevid, PledgeConfig};
use pledge::{PledgeFile, PLEDGE_FILE};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  brski pledge serve --state /var/lib/brski/pledge -v
  brski pledge serve --state /var/lib/brski/pledge --socket /run/brski/agent.sock --socket-group agents
Agents then run: brski agent request --socket /run/brski/agent.sock --id wimse://<trust-domain>/agent/<name>")]
pub(super) struct ServeArgs {
    /// State directory of a bootstrapped pledge (ldevid.key, ldevid.pem, domain-ca.pem,
    /// pledge-status.json; idevid.* to bootstrap again if the LDevID expires).
    #[arg(long)]
    state: PathBuf,
    /// Agent API socket path (default: <state>/agent.sock). Mode 0660.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Group (name or gid) given access to the socket.
    #[arg(long)]
    socket_group: Option<String>,
    /// Also serve the Agent API on this loopback TCP address (e.g. 127.0.0.1:8599); callers
    /// there have no uid/pid in the evidence.
    #[arg(long)]
    tcp_listen: Option<SocketAddr>,
    /// Identity Server (registrar) URL (default: the server of the last bootstrap).
    #[arg(long)]
    registrar: Option<String>,
    /// Timeout of each step towards the registrar, in seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    timeout: u64,
    /// Do not renew the LDevID (simplereenroll at two thirds of its life, a new bootstrap
    /// after it expired).
    #[arg(long)]
    no_renew: bool,
    /// Owner gateway URL for model 2 (owner-mediated) requests.
    #[arg(long, requires = "gateway_pin")]
    gateway: Option<String>,
    /// SHA-256 of the gateway's certificate (hex or base64url; `brski owner init` prints it).
    #[arg(long, value_parser = parse_pin)]
    gateway_pin: Option<[u8; 32]>,
}

fn parse_pin(s: &str) -> Result<[u8; 32], String> {
    let bytes = hex::decode(s.replace(':', "")).ok().or_else(|| shared::b64::decode_url(s).ok());
    bytes
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| "expected 32 bytes as hex or base64url".into())
}

/// Runs the proxy until interrupted (Ctrl-C or SIGTERM).
pub(super) fn run(a: ServeArgs) -> anyhow::Result<ExitCode> {
    tokio::runtime::Runtime::new()?.block_on(serve(a))
}

async fn serve(a: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = ProxyConfig::in_dir(&a.state);
    cfg.socket = a.socket;
    cfg.socket_group = a.socket_group;
    cfg.tcp_listen = a.tcp_listen;
    cfg.registrar = a.registrar.clone();
    cfg.timeout = Duration::from_secs(a.timeout);
    cfg.renew = !a.no_renew;
    cfg.gateway = a.gateway.clone().zip(a.gateway_pin);
    let registrar = match &a.registrar {
        Some(r) => r.clone(),
        None => pledge::registrar_from_status(&a.state)?,
    };
    // pledge.toml (when there) says where the IDevID and the attestation key are.
    let file = a.state.join(PLEDGE_FILE);
    let mut pledge_cfg = match file.exists() {
        true => PledgeFile::load(&file)?.apply(&a.state, &file)?,
        false => PledgeConfig::in_dir(&a.state),
    };
    pledge_cfg.registrar = Some(registrar.clone());
    cfg.attestation = Attestation::from_config(&pledge_cfg).map_err(anyhow::Error::msg)?;
    let idevid = match Idevid::load(&pledge_cfg) {
        Ok(id) => Some(id),
        Err(e) => {
            tracing::warn!(error = %e, "no IDevID: the proxy cannot bootstrap again if the LDevID expires");
            None
        }
    };
    let quote_pcrs = pledge_cfg.quote_pcrs.clone();
    cfg.bootstrap = idevid.as_ref().map(|_| pledge_cfg);
    let mut running = pledge::start_proxy(&cfg, idevid).await?;
    let id = running.proxy.identity();
    let (_, not_after) = id.validity();
    println!("Identity Proxy serving the Agent API");
    println!("  socket:    {}", running.socket.display());
    if let Some(t) = running.tcp {
        println!("  tcp:       {t} (loopback)");
    }
    println!("  server:    {registrar}");
    println!(
        "  LDevID:    {} (until {})",
        id.leaf().tbs_certificate().subject(),
        shared::rfc3339::format_unix(not_after)
    );
    println!("  renewal:   {}", if cfg.renew { "at two thirds of the LDevID's life" } else { "off" });
    if cfg.attestation.is_some() {
        println!("  evidence:  TPM quote of PCRs {quote_pcrs:?} in every request");
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => println!("interrupted; stopping"),
        _ = term.recv() => println!("terminated; stopping"),
        _ = running.wait() => {
            eprintln!("the Agent API listener stopped");
            return Ok(ExitCode::FAILURE);
        }
    }
    drop(running);
    Ok(ExitCode::SUCCESS)
}
